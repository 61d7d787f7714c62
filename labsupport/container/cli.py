"""The container commands of ``python -m labsupport``: run, ps, exec, stop, kill, rm, logs, inspect.

They read and write the same state directories as the notebooks, so a
container started in one is visible in the other.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Callable

from labsupport.container import runtime, store

Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _follow(container_id: str) -> int:
    """Print the log as it grows until the container exits (``docker run`` in the foreground)."""
    printed = 0
    while True:
        ended = runtime.has_exited(container_id, within=0.1)
        text = runtime.logs(container_id)
        sys.stdout.write(text[printed:])
        sys.stdout.flush()
        printed = len(text)
        if ended:
            code = store.state(container_id).get("exit_code")
            return code if isinstance(code, int) and code >= 0 else 128 - (code or 0)


def _seccomp(options: list[str]) -> bool:
    """Docker's ``--security-opt seccomp=unconfined`` turns the default filter off."""
    for option in options:
        if option != "seccomp=unconfined":
            raise runtime.LabError(f"--security-opt {option}: this lab knows only seccomp=unconfined.")
    return not options


def _run(args: argparse.Namespace) -> int:
    if args.bundle:
        container_id = runtime.run_bundle(args.bundle, name=args.name, publish=args.publish)
    else:
        if not args.image:
            raise runtime.LabError("Name an image to run (e.g. busybox), or give --bundle DIR.")
        container_id = runtime.run(args.image, args.cmd, name=args.name, publish=args.publish,
                                   memory=args.memory, cpus=args.cpus, pids=args.pids,
                                   network=args.network, seccomp=_seccomp(args.security_opt),
                                   device_read_bps=args.device_read_bps,
                                   device_write_bps=args.device_write_bps, userns=args.userns_remap,
                                   device_rules=args.device_cgroup_rule)
    if args.detach:
        print(container_id)
        return 0
    code = _follow(container_id)
    if args.rm:
        runtime.remove(container_id, force=True)
    return code


def _ps(args: argparse.Namespace) -> int:
    print(runtime.ps_table(all_=args.all))
    return 0


def _exec(args: argparse.Namespace) -> int:
    result = runtime.exec_in(args.id, args.cmd)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


def _stop(args: argparse.Namespace) -> int:
    for ref in args.ids:
        runtime.stop(ref, grace=args.time)
        print(ref)
    return 0


def _kill(args: argparse.Namespace) -> int:
    signum = getattr(signal, args.signal if args.signal.startswith("SIG") else f"SIG{args.signal}", None)
    if signum is None:
        raise runtime.LabError(f"Unknown signal {args.signal!r}: use a name such as TERM or KILL.")
    runtime.kill(args.id, signum)
    return 0


def _rm(args: argparse.Namespace) -> int:
    for ref in args.ids:
        runtime.remove(ref, force=args.force)
        print(ref)
    return 0


def _logs(args: argparse.Namespace) -> int:
    sys.stdout.write(runtime.logs(args.id))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    print(json.dumps(runtime.inspect(args.id), indent=1))
    return 0


def register(add: Add) -> None:
    """Add the container commands to the lab's parser (called by labsupport.cli)."""
    run = add("run", _run, "Run a container from an image (or an OCI bundle with --bundle DIR), "
              "e.g. `run --name web -d -p 127.0.0.1:8080:80 busybox httpd -f -p 80`.")
    run.add_argument("--name", help="a unique name (default: box-<id>)")
    run.add_argument("-d", "--detach", action="store_true", help="print the id and return at once")
    run.add_argument("-p", "--publish", action="append", default=[], metavar="[127.0.0.1:]HOST:PORT",
                     help="publish a container port on the host's loopback (repeatable)")
    run.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 64M")
    run.add_argument("--cpus", type=float, metavar="N", help="CPU quota in cores, e.g. 0.5")
    run.add_argument("--pids", type=int, metavar="N", help="the most processes inside at once")
    run.add_argument("--network", default="bridge", choices=runtime.NETWORKS,
                     help="bridge (default: an address, names, ports), none (only lo) or host")
    for direction in ("read", "write"):
        run.add_argument(f"--device-{direction}-bps", action="append", default=[], metavar="DEVICE:RATE",
                         help=f"cap {direction}s from a block device, e.g. /dev/loop0:1M (bytes/s)")
    run.add_argument("--device-cgroup-rule", action="append", default=[], metavar="'c 10:237 rw'",
                     help="let the container open more devices than Docker's default list "
                          "('a *:* rwm': all of them)")
    run.add_argument("--userns-remap", action="store_true",
                     help="root inside is uid 100000 outside (dockerd --userns-remap)")
    run.add_argument("--security-opt", action="append", default=[], metavar="seccomp=unconfined",
                     help="run without the default seccomp filter")
    run.add_argument("--rm", action="store_true", help="remove the container when it exits (foreground)")
    run.add_argument("--bundle", metavar="DIR", help="an OCI bundle: DIR/config.json and its root "
                     "(as `runc spec` writes it, with terminal false)")
    run.add_argument("image", nargs="?", help="image name[:tag], e.g. busybox")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (default: the image's)")
    ps = add("ps", _ps, "List the lab's containers (all of them; --running for the running ones).")
    ps.add_argument("--running", dest="all", action="store_false", help="only running containers")
    ex = add("exec", _exec, "Run a command inside a running container, e.g. `exec web ps`.")
    ex.add_argument("id", help="container id, id prefix or name")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="the command and its arguments")
    st = add("stop", _stop, "Stop containers: SIGTERM, then SIGKILL after a grace period.")
    st.add_argument("ids", nargs="+", help="container ids or names")
    st.add_argument("-t", "--time", type=float, default=10, help="seconds before SIGKILL (default 10)")
    kl = add("kill", _kill, "Send a signal to a container's first process (default KILL).")
    kl.add_argument("id", help="container id or name")
    kl.add_argument("-s", "--signal", default="KILL", help="signal name, e.g. TERM")
    rm = add("rm", _rm, "Remove stopped containers (their root and state).")
    rm.add_argument("ids", nargs="+", help="container ids or names")
    rm.add_argument("-f", "--force", action="store_true", help="stop a running one first")
    lg = add("logs", _logs, "Print what a container's program wrote (stdout and stderr).")
    lg.add_argument("id", help="container id or name")
    ins = add("inspect", _inspect, "Print a container's state and config.json as JSON.")
    ins.add_argument("id", help="container id or name")
