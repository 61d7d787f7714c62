"""The lab's command line: the same functions the notebooks call, for a terminal.

Every command turns a ``LabError`` into one line on stderr and exit code 2,
so a learner never reads a traceback for a mistake they can fix.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from labsupport.kernel.errors import LabError


def _doctor(args: argparse.Namespace) -> int:
    from labsupport.course import doctor as hostcheck

    checks = hostcheck.run_checks()
    print(hostcheck.render_text(checks))
    return 1 if any(c.status == "problem" for c in checks) else 0


def _clean(args: argparse.Namespace) -> int:
    import labsupport

    print(labsupport.clean())
    return 0


def _setup(args: argparse.Namespace) -> int:
    from labsupport.namespaces import rootfs
    from labsupport.vm import debian_image, initramfs

    print(f"busybox root: {rootfs.busybox_root()}")
    kernel, initrd = initramfs.prepare()
    print(f"guest kernel: {kernel}\nguest initramfs: {initrd}")
    print(f"full guest: {debian_image.build()}")
    from labsupport.container import attacks, shim
    from labsupport.process import programs
    print(f"attack probe: {attacks.probe()}")
    print(f"container reaper: {programs.build(shim.REAPER)}")
    return 0


def _vagrant(args: argparse.Namespace) -> int:
    from labsupport.vm import vagrant

    if args.action == "build-box":
        print(f"box {vagrant.BOX_NAME}: {vagrant.ensure_box(rebuild=args.rebuild)}")
    elif args.action == "up":
        vagrant.ensure_box()
        vagrant.Libvirt.start()   # keeps running after this command, until `vagrant down`
        print(vagrant.up())
    elif args.action == "ssh":
        print(vagrant.ssh(" ".join(args.command) or "uptime").output, end="")
    else:
        vagrant.cleanup()
        print("the VM, its libvirtd and its QEMU are gone (the box stays cached)")
    return 0


def _vm(args: argparse.Namespace) -> int:
    from labsupport.vm import background

    if args.action == "boot":
        state = background.boot(args.name, memory_mb=args.memory)
        print(f"{state['name']}: QEMU PID {state['qemu_pid']}, guest ready after "
              f"{state['boot_seconds']:.2f} s ({state['accelerator'].upper()})")
    elif args.action == "ls":
        print(background.table())
    else:
        if not args.name:
            raise LabError("Name the VM to stop, e.g. `vm stop vm1` (`vm ls` lists them).")
        background.stop(args.name)
        print(f"{args.name}: stopped")
    return 0


def _guest_test(args: argparse.Namespace) -> int:
    from labsupport.vm import guest_tests

    result = guest_tests.run_pytest_in_guest(args.module, args.pytest_args)
    if not result.ok:
        print(result.output)
    print(result)
    return 0 if result.ok else 1


def _check(args: argparse.Namespace) -> int:
    from labsupport.course import exercises

    verdict = exercises.check(args.notebook, args.number)
    print(f"exercise {args.notebook}.{args.number} {verdict}")
    return 0 if verdict.passed else 1


def _bench(args: argparse.Namespace) -> int:
    from labsupport import bench
    from labsupport.bench import charts, latest

    if args.export:
        names = [args.benchmark] if args.benchmark else latest.BENCHMARKS
        print("\n".join(latest.export_all(args.export, names)))
        return 0
    if args.benchmark is None:
        raise LabError("Name a benchmark to run, or pass --export DIR to draw the saved ones.")
    if args.benchmark == "suite":
        from labsupport.bench import suite

        print(suite.report(suite.run(quick=args.quick)))
        return 0
    module = bench.benchmark(args.benchmark)
    if args.chart:
        charts.chart_path(args.chart)
    result = module.run(rounds=args.rounds, quick=args.quick)
    print(module.report(result))
    latest.keep(result)
    if args.json:
        print(f"saved {result.save(args.json)}")
    if args.chart:
        print(f"saved {charts.save(charts.bar_chart(result), args.chart)}")
    return 0


def _book(args: argparse.Namespace) -> int:
    from labsupport.course import book

    pages = book.write(args.directory, args.notebooks, fast=not args.full)
    for page in pages:
        print(f"{page.file}" + (f"  ({len(page.errors)} errors: {page.errors[0]})" if page.errors else ""))
    print(f"open {Path(args.directory) / 'index.html'}")
    return 1 if any(page.errors for page in pages) else 0


def _grade(args: argparse.Namespace) -> int:
    from labsupport.course import grading

    scores = grading.grade(args.notebook)
    print(grading.render_text(scores))
    if args.json:
        print(f"saved {grading.save_json(scores, args.json)}")
    if args.csv:
        print(f"saved {grading.save_csv(scores, args.csv)}")
    return 0


def _reset(args: argparse.Namespace) -> int:
    from labsupport.course import grading

    done = grading.reset(args.notebook)
    print("\n".join(done) if done else f"notebook {args.notebook} was already at its start")
    return 0


def _compose(args: argparse.Namespace) -> int:
    from labsupport import compose

    if args.action in ("up", "scale") and not args.what:
        raise LabError("`compose up` needs the compose file, `compose scale` SERVICE=N "
                       "(e.g. web=3); both with -p PROJECT.")
    if args.action == "up":
        print(compose.up(Path(args.what), args.project))
    elif args.action == "scale":
        service, _, count = args.what.partition("=")
        if not count.isdigit():
            raise LabError(f"{args.what!r}: write the service and its replicas as SERVICE=N, e.g. web=3.")
        print(compose.scale(args.project, service, int(count)))
    elif args.action == "ps":
        print(compose.ps(args.project))
    else:
        print("\n".join(compose.down(args.project)) or f"{args.project}: nothing was running")
    return 0


def _image_import(args: argparse.Namespace) -> int:
    from labsupport import images

    print(f"imported {images.import_archive(args.file, name=args.name)}")
    return 0


def _image_ls(args: argparse.Namespace) -> int:
    from labsupport import images

    for image in images.list_images():
        print(f"{image.ref:30} {image.id[:12]}  {len(image.layers)} layers  cmd {' '.join(image.config.cmd)}")
    return 0


def _image_rm(args: argparse.Namespace) -> int:
    from labsupport import images

    print(f"removed {', '.join(images.remove(args.ref))}")
    return 0


def _image_export(args: argparse.Namespace) -> int:
    from labsupport import images

    print(f"wrote {images.export_archive(args.ref, args.file, format=args.format)}")
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
    vm = add("vagrant", _vagrant, "The Vagrant comparison VM on the lab's own libvirt: "
             "build-box (offline), up, ssh COMMAND, down.")
    vm.add_argument("action", choices=("build-box", "up", "ssh", "down"))
    vm.add_argument("command", nargs="*", help="for ssh: the command to run (quote it if it has options)")
    vm.add_argument("--rebuild", action="store_true", help="for build-box: build it again")
    micro = add("vm", _vm, "MicroVMs that keep running after this command: boot [NAME], ls, stop NAME.")
    micro.add_argument("action", choices=("boot", "ls", "stop"))
    micro.add_argument("name", nargs="?", help="the VM's name (boot picks one if none is given)")
    micro.add_argument("--memory", type=int, default=256, metavar="MIB", help="for boot: guest RAM in MiB")
    guest = add("guest-test", _guest_test, "Run a test module inside a VM with its own kernel "
                "(pure cgroup v2), e.g. `guest-test tests/test_cgroups.py`.")
    guest.add_argument("module", help="a test file, relative to the lab's checkout")
    guest.add_argument("pytest_args", nargs=argparse.REMAINDER, help="more arguments for pytest")
    check = add("check", _check, "Check one exercise, e.g. `check 01 2`.")
    check.add_argument("notebook", help="notebook number, e.g. 01")
    check.add_argument("number", type=int, help="exercise number in that notebook")
    grade = add("grade", _grade, "Run every exercise's check (or one notebook's) and print a score table.")
    grade.add_argument("notebook", nargs="?", help="only this notebook, e.g. 03")
    grade.add_argument("--json", metavar="FILE", help="also save the scores as JSON")
    grade.add_argument("--csv", metavar="FILE", help="also save the scores as CSV")
    book = add("book", _book, "Run the course on this host and write it as static HTML pages "
               "(outputs, charts, the machine named on each page) for a class to read without root.")
    book.add_argument("directory", help="where to write index.html and one page per notebook")
    book.add_argument("--notebooks", nargs="+", default=(), metavar="NN",
                      help="only these notebooks, e.g. 00 02 A (default: the whole course)")
    book.add_argument("--full", action="store_true",
                      help="full-length runs (default: LAB_FAST, as the test suite runs them)")
    reset = add("reset", _reset, "Return one notebook's lab state to its start (its boxes, kept "
                "namespaces, groups and exercise directory); nothing else is touched.")
    reset.add_argument("notebook", help="notebook number, e.g. 02")
    from labsupport.bench import BENCHMARKS

    bench = add("bench", _bench, "Measure peers side by side, e.g. `bench namespaces`: "
                "medians, spread and ratios.")
    bench.add_argument("benchmark", nargs="?", choices=(*BENCHMARKS, "suite"),
                       help="what to measure (suite: VMs vs containers, all of it, each result kept)")
    bench.add_argument("--rounds", type=int, metavar="N", help="interleaved rounds (default: the benchmark's own)")
    bench.add_argument("--quick", action="store_true", help="a few rounds: the shape, not figures to quote")
    bench.add_argument("--json", metavar="FILE", help="save every sample and the machine's facts as JSON")
    bench.add_argument("--chart", metavar="FILE", help="save a slide-sized chart (.png or .svg)")
    bench.add_argument("--export", metavar="DIR", help="draw every benchmark's (or the named one's) latest "
                       "saved result as slides (PNG and SVG) into DIR; one never run is run --quick first")
    comp = add("compose", _compose, "Several containers from one TOML compose file (notebook 11): "
               "up FILE, ps, scale SERVICE=N, down - each with -p PROJECT.")
    comp.add_argument("action", choices=("up", "ps", "scale", "down"))
    comp.add_argument("what", nargs="?", help="up: the compose file (.toml); scale: SERVICE=N")
    comp.add_argument("-p", "--project", required=True, help="the project's name (containers PROJECT-SERVICE-N)")
    from labsupport.container.cli import register as register_container_commands

    register_container_commands(add)
    oci = add("oci", _oci, "The lab's runtime behind runc's command line, for engines: "
              "`oci create --bundle DIR ID`, start, state, kill, delete, exec, ps, pause, resume, features.")
    oci.add_argument("oci_args", nargs=argparse.REMAINDER, help="runc's flags and verb")
    image = add("image", lambda args: image.print_help() or 2,
                "Images in the lab's store: import, ls, rm, export (see `image COMMAND --help`).")
    image_commands = image.add_subparsers(dest="image_command", metavar="IMAGE_COMMAND")

    def add_image(name: str, func: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        sub = image_commands.add_parser(name, help=text, description=text)
        sub.set_defaults(func=func)
        return sub

    imp = add_image("import", _image_import, "Import an OCI layout or `docker save` archive; "
                    "every digest and layer entry is checked.")
    imp.add_argument("file", help="the archive (.tar, or .tar.gz)")
    imp.add_argument("--name", metavar="N", help="name[:tag] for the image (default: the archive's own)")
    add_image("ls", _image_ls, "List the images in the store, with their ids and layers.")
    rm = add_image("rm", _image_rm, "Remove an image by name[:tag] or id; unused layers go with it.")
    rm.add_argument("ref", help="name, name:tag or id")
    exp = add_image("export", _image_export, "Write an image as an archive another tool can load.")
    exp.add_argument("ref", help="name, name:tag or id")
    exp.add_argument("file", help="where to write the archive")
    exp.add_argument("--format", choices=["oci", "docker"], default="oci", help="OCI layout (default) or docker save")
    return parser


def _oci(args: argparse.Namespace) -> int:
    from labsupport.container import oci

    return oci.main(args.oci_args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["oci"]:
        # An engine runs this once per verb: straight to the runtime, without the lab's parser.
        from labsupport.container import oci

        return oci.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
