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
import time
from datetime import datetime, timezone

from labsupport import container
from labsupport.bench import machine
from labsupport.bench.result import BenchResult, PeerInfo
from labsupport.bench.runner import _progress_bar

ROUNDS = 30
QUICK_ROUNDS = 3
CALLER, SHIM, INSIDE = "the caller", "the shim", "the container's processes"
REMOVE = "remove: unmount the root, delete the state"


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
    """``rounds`` starts (after one to warm up), each cut into its steps."""
    quick = quick or bool(os.environ.get("LAB_FAST"))
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    facts = machine.facts()
    started = datetime.now(timezone.utc)
    who: dict[str, str] = {}
    samples: dict[str, list[float]] = {}
    bar = _progress_bar()(total=rounds + 1, desc="Where a container's start goes", unit="start",
                          disable=None if progress is None else not progress, leave=False)
    gc.collect()
    gc.disable()
    try:
        _one_start()
        bar.update()
        for _ in range(rounds):
            for step, taker, ms in _one_start():
                who.setdefault(step, taker)
                samples.setdefault(f"{step} / {who[step]}", []).append(ms)
            bar.update()
    finally:
        gc.enable()
        bar.close()
    # A step every start took once; a rare one (a retry) would skew the medians.
    kept = {name: values for name, values in samples.items() if len(values) == rounds}
    peers = [PeerInfo(name, name.rsplit(" / ", 1)[1], name.rsplit(" / ", 1)[0]) for name in kept]
    totals = [sum(values[i] for values in kept.values()) for i in range(rounds)]
    return BenchResult(
        name="startpath", title="Where a container's start goes: each step of the lab's runtime (ms)",
        unit="ms", peers=peers, samples=kept, order=[list(kept)] * rounds,
        settings={"rounds": rounds, "warmup": 1, "total_ms_per_start": totals,
                  "command": "container.run('busybox', ['/bin/true'], network='none'), wait, remove"},
        machine=facts, started=started.isoformat(timespec="seconds"),
        seconds=round((datetime.now(timezone.utc) - started).total_seconds(), 3))


def report(result: BenchResult) -> str:
    totals = sorted(result.settings.get("total_ms_per_start", []))
    middle = f"{totals[len(totals) // 2]:.1f} ms" if totals else "?"
    return (str(result.table()) + f"\nAll steps of one start, median over starts: {middle}\n"
            + result.caption())
