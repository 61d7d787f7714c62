"""How long does a container take to start? ``/bin/true`` in a busybox root, five ways.

Peers, interleaved in one run on the same busybox root, each with its own
PID, mount, UTS, IPC and network namespace (only lo): the lab's runtime
called from a running Python (run, wait for the exit, remove) and from a
cold CLI (``python -m labsupport run --rm --network none``), ``unshare`` +
``chroot`` (the floor: namespaces and a root, nothing else), bubblewrap, and
runc. crun is left out: version 1.8 refuses this host's hybrid cgroup layout
(v1 with an almost empty v2 mount), and hiding the v2 mount from it would
measure a different set-up from the others'.

What the lab's runtime adds to the floor, per start: an overlay mount, a
cgroup (joining it waits for one RCU grace period in the kernel - 6 to 15 ms
here - which unshare and bubblewrap never pay, and runc does), pivot_root,
/proc, /sys and a minimal /dev, masked paths, capabilities, a seccomp filter,
and a shim forked from the caller. The cold CLI adds CPython's start and the
lab's imports, about 0.1 s - the gap to runc, a compiled program.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from labsupport import container, ownership, process
from labsupport.bench.result import BenchResult
from labsupport.bench.runner import Peer, run_peers
from labsupport.container import runc
from labsupport.kernel.errors import LabError
from labsupport.namespaces import rootfs

GROUP = "busybox /bin/true"
LAB_PY, LAB_CLI, UNSHARE, BWRAP, RUNC = ("lab runtime (Python)", "lab runtime (cold CLI)",
                                         "unshare+chroot", "bubblewrap", "runc")
ROUNDS = 30
QUICK_ROUNDS = 3
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def _command(series: str, argv: list[str]) -> Peer:
    env = process.command_env({"PYTHONPATH": _PACKAGE_PARENT})

    def trial() -> None:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        if done.returncode != 0:
            raise LabError(f"{series} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    return Peer(series, trial, GROUP)


def _lab_python() -> Peer:
    def trial() -> None:
        cid = container.run("busybox", ["/bin/true"], network="none")
        try:
            container.wait(cid, 10)
        finally:
            container.remove(cid, force=True)
    return Peer(LAB_PY, trial, GROUP)


def _runc(bundle: Path, state: Path) -> Peer:
    counter = iter(range(10**9))

    def trial() -> None:
        cid = f"{bundle.name}-{next(counter)}"
        done = subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), cid],
                              stdin=subprocess.DEVNULL, capture_output=True)
        if done.returncode != 0:
            raise LabError(f"runc failed: {done.stderr.decode(errors='replace').strip()}")
    return Peer(RUNC, trial, GROUP)


def run(rounds: int | None = None, quick: bool = False, progress: bool | None = None) -> BenchResult:
    quick = quick or bool(os.environ.get("LAB_FAST"))
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    root = rootfs.busybox_root()
    peers = [_lab_python(),
             _command(LAB_CLI, [sys.executable, "-m", "labsupport", "run", "--rm", "--network", "none",
                                        "busybox", "/bin/true"]),
             _command(UNSHARE, ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net",
                                "chroot", str(root), "/bin/true"])]
    if shutil.which("bwrap"):
        peers.append(_command(BWRAP, ["bwrap", "--unshare-all", "--die-with-parent", "--bind", str(root), "/",
                                      "--proc", "/proc", "--dev", "/dev", "/bin/true"]))
    bundle = scratch = state = None
    parents = runc.lab_cgroup_parents_missing()
    try:
        if runc.available():
            bundle = runc.new_bundle()
            scratch = runc.bundle_for(bundle, ["/bin/true"], network=True)
            state = ownership.temp_dir("runcstate")
            peers.append(_runc(scratch, state))
        return run_peers(peers, rounds, name="containers", unit="ms", baseline=UNSHARE,
                         title="Start /bin/true in a container: the lab's runtime vs its peers",
                         warmup=1, progress=progress)
    finally:
        for directory in (bundle, scratch, state):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
        runc.remove_empty(parents)


def report(result: BenchResult) -> str:
    return str(result.table()) + "\n" + result.caption()
