"""The lab's command line: the same functions the notebooks call, for a terminal.

Every command turns a ``LabError`` into one line on stderr and exit code 2,
so a learner never reads a traceback for a mistake they can fix.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .errors import LabError


def _doctor(args: argparse.Namespace) -> int:
    from . import hostcheck

    checks = hostcheck.run_checks()
    print(hostcheck.render_text(checks))
    return 1 if any(c.status == "problem" for c in checks) else 0


def _clean(args: argparse.Namespace) -> int:
    from . import ownership

    print(ownership.clean())
    return 0


def _setup(args: argparse.Namespace) -> int:
    from . import rootfs
    from .vm import initramfs

    print(f"busybox root: {rootfs.busybox_root()}")
    kernel, initrd = initramfs.prepare()
    print(f"guest kernel: {kernel}\nguest initramfs: {initrd}")
    return 0


def _guest_test(args: argparse.Namespace) -> int:
    from .vm import guest_tests

    result = guest_tests.run_pytest_in_guest(args.module, args.pytest_args)
    if not result.ok:
        print(result.output)
    print(result)
    return 0 if result.ok else 1


def _check(args: argparse.Namespace) -> int:
    from . import exercises

    verdict = exercises.check(args.notebook, args.number)
    print(f"exercise {args.notebook}.{args.number} {verdict}")
    return 0 if verdict.passed else 1


def _bench(args: argparse.Namespace) -> int:
    from . import bench
    from .bench import charts

    module = bench.benchmark(args.benchmark)
    if args.chart:
        charts.chart_path(args.chart)
    result = module.run(rounds=args.rounds, quick=args.quick)
    print(module.report(result))
    if args.json:
        print(f"saved {result.save(args.json)}")
    if args.chart:
        print(f"saved {charts.save(charts.bar_chart(result), args.chart)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m labsupport",
        description="The virtualization lab: namespaces, cgroups, containers and VMs on a live kernel.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(func=func)
        return sub

    add("doctor", _doctor, "Check this host for what the lab needs, item by item.")
    add("clean", _clean, "Remove everything the lab left on the host (and nothing else); safe to repeat.")
    add("setup", _setup, "Build the lab's cached root filesystems and guest VM kernel (done by ./lab up).")
    guest = add("guest-test", _guest_test, "Run a test module inside a VM with its own kernel "
                "(pure cgroup v2), e.g. `guest-test tests/test_cgroups.py`.")
    guest.add_argument("module", help="a test file, relative to the lab's checkout")
    guest.add_argument("pytest_args", nargs=argparse.REMAINDER, help="more arguments for pytest")
    check = add("check", _check, "Check one exercise, e.g. `check 01 2`.")
    check.add_argument("notebook", help="notebook number, e.g. 01")
    check.add_argument("number", type=int, help="exercise number in that notebook")
    from .bench import BENCHMARKS

    bench = add("bench", _bench, "Measure peers side by side, e.g. `bench namespaces`: "
                "medians, spread and ratios.")
    bench.add_argument("benchmark", choices=BENCHMARKS, help="what to measure")
    bench.add_argument("--rounds", type=int, metavar="N", help="interleaved rounds (default: the benchmark's own)")
    bench.add_argument("--quick", action="store_true", help="a few rounds: the shape, not figures to quote")
    bench.add_argument("--json", metavar="FILE", help="save every sample and the machine's facts as JSON")
    bench.add_argument("--chart", metavar="FILE", help="save a slide-sized chart (.png or .svg)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
