"""How long does a container take to start? ``/bin/true`` in a busybox root, six ways.

Peers, interleaved in one run on the same busybox root, each with its own
PID, mount, UTS, IPC and network namespace (only lo): the lab's runtime
called from a running Python (run, wait for the exit, remove) and from a
cold CLI (``python -m labsupport run --rm --network none``), ``unshare`` +
``chroot`` (the floor: namespaces and a root, nothing else), bubblewrap,
runc and crun.

Two layouts. On the host as it is (``layout="host"``) crun joins only where
it accepts the host's cgroups: version 1.8 refuses a hybrid layout (v1 with
an almost empty v2 mount beside it). So ``layout="v1"`` runs every peer
again in a private mount namespace where that v2 mount is unmounted - crun
included - so the three runtimes meet on equal ground; on a pure v2 or pure
v1 host the two layouts are the same and only the first is needed.

What the lab's runtime adds to the floor, per start: an overlay mount, a
cgroup (joining it waits for one RCU grace period in the kernel, which
unshare and bubblewrap never pay, and runc and crun do), pivot_root, /proc,
/sys and a minimal /dev, masked paths, capabilities, a seccomp filter, and a
shim forked from the caller; ``labsupport.container.start_phases`` shows
where each millisecond of one start went. The cold CLI adds CPython's start
and the lab's imports - the gap to runc and crun, compiled programs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from labsupport import cgroups, container, ownership, process
from labsupport.bench.result import BenchResult
from labsupport.bench.runner import Peer, run_peers
from labsupport.container import runc
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError
from labsupport.namespaces import rootfs

GROUP = "busybox /bin/true"
LAB_PY, LAB_CLI, UNSHARE, BWRAP, RUNC, CRUN = (
    "lab runtime (Python)", "lab runtime (cold CLI)", "unshare+chroot", "bubblewrap", "runc", "crun")
LAYOUTS = ("host", "v1")
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


def _oci_runtime(series: str, program: str, bundle: Path, state: Path) -> Peer:
    """``runc run`` or ``crun run``: the two speak the same command line."""
    counter = iter(range(10**9))

    def trial() -> None:
        cid = f"{bundle.name}-{next(counter)}"
        done = subprocess.run([program, "--root", str(state), "run", "--bundle", str(bundle), cid],
                              stdin=subprocess.DEVNULL, capture_output=True)
        if done.returncode != 0:
            raise LabError(f"{series} failed: {done.stderr.decode(errors='replace').strip()}")
    return Peer(series, trial, GROUP)


def crun_accepts_layout() -> bool:
    """crun 1.8 takes pure v2 or pure v1 cgroups, not v1 with a v2 mount beside them."""
    return cgroups.detect_layout().kind != "hybrid"


def _hide_v2_mount() -> None:
    """In this (private) mount namespace, leave only the v1 trees - the host keeps its v2 mount."""
    found = cgroups.detect_layout().v2_mount
    if found is not None:
        syscalls.umount(found, syscalls.MNT_DETACH)


def run(rounds: int | None = None, quick: bool = False, progress: bool | None = None,
        layout: str = "host") -> BenchResult:
    """Every peer, interleaved. ``layout="v1"`` runs them all in a mount namespace without the
    hybrid v2 mount, crun among them (see the module's help)."""
    if layout not in LAYOUTS:
        raise LabError(f"Unknown layout {layout!r}: choose {' or '.join(LAYOUTS)}.")
    quick = quick or bool(os.environ.get("LAB_FAST"))
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    if layout == "host":
        return _run(rounds, progress, with_crun=crun_accepts_layout(), layout=layout)
    if progress is not False:
        print(f"Running the {layout} layout in a private mount namespace ...", flush=True)
    return process.run_function(_run_without_v2, rounds, timeout=3600, namespaces=["mnt"])


def _run_without_v2(rounds: int) -> BenchResult:
    _hide_v2_mount()
    return _run(rounds, progress=False, with_crun=True, layout="v1")


def _run(rounds: int, progress: bool | None, with_crun: bool, layout: str) -> BenchResult:
    root = rootfs.busybox_root()
    peers = [_lab_python(),
             _command(LAB_CLI, [sys.executable, "-m", "labsupport", "run", "--rm", "--network", "none",
                                        "busybox", "/bin/true"]),
             _command(UNSHARE, ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net",
                                "chroot", str(root), "/bin/true"])]
    if shutil.which("bwrap"):
        peers.append(_command(BWRAP, ["bwrap", "--unshare-all", "--die-with-parent", "--bind", str(root), "/",
                                      "--proc", "/proc", "--dev", "/dev", "/bin/true"]))
    made: list[Path] = []
    parents = runc.lab_cgroup_parents_missing()
    try:
        if runc.available():
            bundle = runc.new_bundle()
            scratch = runc.bundle_for(bundle, ["/bin/true"], network=True)
            made += [bundle, scratch]
            for series, program in ((RUNC, "runc"), (CRUN, "crun")):
                if program == "crun" and not (with_crun and shutil.which("crun")):
                    continue
                state = ownership.temp_dir(f"{program}state")
                made.append(state)
                peers.append(_oci_runtime(series, program, scratch, state))
        where = ("cgroups as the host mounts them" if layout == "host"
                 else "a private mount namespace with only the v1 cgroup trees")
        return run_peers(peers, rounds, name="containers" if layout == "host" else "runtimes",
                         unit="ms", baseline=UNSHARE,
                         title=f"Start /bin/true in a container: the lab's runtime vs its peers ({where})",
                         warmup=1, progress=progress)
    finally:
        for directory in made:
            shutil.rmtree(directory, ignore_errors=True)
        runc.remove_empty(parents)


def report(result: BenchResult) -> str:
    return str(result.table()) + "\n" + result.caption()
