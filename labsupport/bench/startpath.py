"""Where a container's start goes: the lab's own timeline of every step, over many starts.

``bench containers`` says how long the lab takes from ``run`` to the end of
``/bin/true``; this benchmark says where that time goes. Each start writes a
timeline (labsupport.process.timeline): the caller, the shim and the
container's processes each mark the steps they take, and the time from one
mark to the next is that step's cost. Steps of two processes can overlap
(the shim moves the first process into its cgroup while that process makes
its mounts), so a step's figure is the time until the next thing happened,
anywhere. Removal is timed by the caller, around ``remove``.
"""
from __future__ import annotations

import gc
import os
import statistics
import time
from datetime import datetime, timezone

from labsupport import container
from labsupport.bench import machine
from labsupport.bench.result import BenchResult, PeerInfo
from labsupport.bench.runner import _progress_bar
from labsupport.kernel.tables import Table

ROUNDS = 30
QUICK_ROUNDS = 3
CALLER, SHIM, INSIDE = "the caller", "the shim", "the container's processes"
REMOVE = "remove: unmount the root, delete the state"
SERIES = "lab runtime"

#: The steps, gathered into the parts of a start a slide can show (the step names are the
#: plan's: labsupport.container.plan). A step missing here is counted as "other".
PARTS = {
    "create: the root from the image": "overlay root from the image",
    "create: write the spec and the state": "the lab's state files",
    "start: fork the shim": "fork the shim from the caller",
    "the shim begins": "the lab's state files",
    "create the cgroup and set its limits": "cgroup: create, set limits, join",
    "move the first process into the cgroup": "cgroup: create, set limits, join",
    "make a PID namespace for the next child": "namespaces and hostname",
    "fork the container's first process": "fork the container's first process",
    "die with the parent": "fork the container's first process",
    "unshare the new namespaces": "namespaces and hostname",
    "set the hostname": "namespaces and hostname",
    "make every mount private or slave": "pivot_root into the new root",
    "change the root: pivot_root with the old root detached (chroot without a mount namespace)":
        "pivot_root into the new root",
    "change to the working directory": "pivot_root into the new root",
    "mount a fresh /proc": "/proc, /sys, /dev, mqueue",
    "mount /sys read-only": "/proc, /sys, /dev, mqueue",
    "make a minimal /dev": "/proc, /sys, /dev, mqueue",
    "mount /dev/mqueue": "/proc, /sys, /dev, mqueue",
    "mask paths": "masked and read-only paths",
    "make paths read-only": "masked and read-only paths",
    "make the root read-only": "masked and read-only paths",
    "bring up lo": "network (lo only)",
    "say ready, wait for the host's go-ahead": "wait for the host side (the cgroup join)",
    "wait until it is ready": "wait for the host side (the cgroup join)",
    "give the go-ahead": "wait for the host side (the cgroup join)",
    "set the user and groups": "user and capabilities",
    "drop capabilities": "user and capabilities",
    "set no_new_privs": "user and capabilities",
    "install the seccomp filter": "seccomp filter",
    "exec the program": "exec /bin/true, run it, reap it",
    "start: the caller hears it runs": "tell the caller",
    "hand over to the reaper": "the shim becomes the C reaper (exec)",
    "the reaper records the end": "end: undo the host side, record the exit",
    "undo the host side": "end: undo the host side, record the exit",
    "the shim ends": "end: undo the host side, record the exit",
    REMOVE: "remove: unmount the root, delete the state",
}


def _one_start() -> list[tuple[str, str, float]]:
    """(step, who took it, milliseconds) for one start of /bin/true, its end and its removal."""
    cid = container.run("busybox", ["/bin/true"], network="none")
    try:
        container.wait(cid, 10)
        phases = container.start_phases(cid)
    finally:
        began = time.perf_counter()
        container.remove(cid, force=True)
        removal = (time.perf_counter() - began) * 1000
    shim = next((p.pid for p in phases if p.step == "the shim begins"), -1)
    me = os.getpid()
    steps = [(p.step, CALLER if p.pid == me else SHIM if p.pid == shim else INSIDE, p.ms)
             for p in phases]
    return steps + [(REMOVE, CALLER, removal)]


def run(rounds: int | None = None, quick: bool = False, progress: bool | None = None) -> BenchResult:
    """``rounds`` starts (after one to warm up), each cut into its steps and their parts."""
    quick = quick or bool(os.environ.get("LAB_FAST"))
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    facts = machine.facts()
    started = datetime.now(timezone.utc)
    steps: dict[str, list[float]] = {}
    parts: list[dict[str, float]] = []
    bar = _progress_bar()(total=rounds + 1, desc="Where a container's start goes", unit="start",
                          disable=None if progress is None else not progress, leave=False)
    gc.collect()
    gc.disable()
    try:
        _one_start()
        bar.update()
        for _ in range(rounds):
            parts.append({})
            for step, taker, ms in _one_start():
                steps.setdefault(f"{step} ({taker})", []).append(ms)
                part = PARTS.get(step, "other")
                parts[-1][part] = parts[-1].get(part, 0.0) + ms
            bar.update()
    finally:
        gc.enable()
        bar.close()
    names = list(dict.fromkeys(name for one in parts for name in one))
    samples = {f"{name} / {SERIES}": [one.get(name, 0.0) for one in parts] for name in names}
    return BenchResult(
        name="startpath", title="Where a container's start goes: the lab's runtime, part by part (ms)",
        unit="ms", peers=[PeerInfo(f"{name} / {SERIES}", SERIES, name) for name in names],
        samples=samples, order=[list(samples)] * rounds,
        settings={"rounds": rounds, "warmup": 1,
                  "method": f"{rounds} starts of /bin/true (network none), each cut by its own timeline",
                  "steps": steps, "total_ms_per_start": [sum(one.values()) for one in parts]},
        machine=facts, started=started.isoformat(timespec="seconds"),
        seconds=round((datetime.now(timezone.utc) - started).total_seconds(), 3))


def steps_table(result: BenchResult) -> Table:
    """Every step on its own line, with its median: the detail behind each part."""
    rows = [(step, f"{statistics.median(values):.3g}")
            for step, values in result.settings.get("steps", {}).items()]
    return Table(["step (who takes it)", "median (ms)"], rows, "Each step of a start")


def report(result: BenchResult) -> str:
    totals = sorted(result.settings.get("total_ms_per_start", []))
    middle = f"{totals[len(totals) // 2]:.1f} ms" if totals else "?"
    return (str(result.table()) + f"\nAll steps of one start, median over starts: {middle}\n\n"
            + str(steps_table(result)) + "\n" + result.caption())
