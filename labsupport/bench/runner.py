"""Run peers side by side, round by round, so that noise hits every peer alike.

Timing one tool for a minute and then another for a minute compares two
different minutes of a shared machine: a neighbour's burst, a warm page
cache or a CPU frequency step can favour either. So every round runs every
peer once, in an order shuffled per round (with a fixed seed, so a run can
be repeated), and a peer's ``i``-th sample is always from round ``i``.
Each peer is warmed up first (page cache, lazy imports, first-use
allocations), and those trials are thrown away.

A peer's trial is a callable doing one trial. If it returns None, the
runner times it with ``perf_counter_ns``; if it returns a number, that is
the measurement (a boot time read from a guest's console, a memory size).
"""
from __future__ import annotations

import gc
import os
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Optional, Sequence

from labsupport.bench import machine
from labsupport.bench.result import BenchResult, PeerInfo
from labsupport.kernel.errors import LabError

#: Nanoseconds per unit, for peers the runner times itself.
TIME_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

Trial = Callable[[], Optional[float]]


@dataclass(frozen=True)
class Peer:
    """One contender: ``series`` says who (e.g. "unshare(1)"), ``group`` says doing what
    (e.g. "net"); a chart draws groups as rows and series as colours."""

    series: str
    trial: Trial
    group: str = ""

    @property
    def name(self) -> str:
        return f"{self.group} / {self.series}" if self.group else self.series


def schedule(count: int, rounds: int, seed: int = 0) -> list[list[int]]:
    """For each round, the order in which to run peers ``0..count-1``: each exactly
    once, shuffled afresh per round by a generator seeded with ``seed``."""
    rng = random.Random(seed)
    order = []
    for _ in range(rounds):
        one_round = list(range(count))
        rng.shuffle(one_round)
        order.append(one_round)
    return order


def measure(peer: Peer, unit: str) -> float:
    """One trial of ``peer``, in ``unit``: its own figure, or its duration."""
    start = time.perf_counter_ns()
    try:
        value = peer.trial()
    except Exception as err:
        raise LabError(f"The peer {peer.name!r} failed: {err}") from err
    elapsed = time.perf_counter_ns() - start
    if value is not None:
        return float(value)
    if unit not in TIME_UNITS:
        raise LabError(f"The peer {peer.name!r} returned no figure, so it must be timed, "
                       f"but {unit!r} is not a unit of time ({', '.join(TIME_UNITS)}).")
    return elapsed / TIME_UNITS[unit]


def _progress_bar() -> type:
    """tqdm's notebook widget inside IPython, its plain bar elsewhere.

    ``tqdm.auto`` finds out by importing IPython, which nearly doubles this
    process - and every peer that forks it (the lab's runner) would pay for
    that in every trial. Inside IPython it is loaded already, and free.
    """
    if "IPython" in sys.modules:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm


def _rss_mib() -> float:
    """This process's resident memory: a fork's cost grows with it, so results record it."""
    with open("/proc/self/statm") as statm:
        return round(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20, 1)


def _check(peers: Sequence[Peer], rounds: int, baseline: str) -> None:
    names = [p.name for p in peers]
    if not peers:
        raise LabError("A benchmark needs at least one peer to run.")
    if len(set(names)) != len(names):
        raise LabError(f"Two peers share a name ({', '.join(names)}): give each its own.")
    if rounds < 1:
        raise LabError(f"A benchmark needs at least one round, not {rounds}.")
    if baseline and baseline not in {p.series for p in peers}:
        raise LabError(f"The baseline {baseline!r} is none of the peers' series.")


def run_peers(peers: Sequence[Peer], rounds: int, *, name: str, title: str, unit: str = "ms",
              baseline: str = "", warmup: int = 1, seed: int = 0,
              progress: bool | None = None, names_accelerator: bool = False,
              higher_is_better: bool = False) -> BenchResult:
    """Warm every peer up, then run ``rounds`` interleaved rounds; return every sample.

    ``progress``: None shows a bar in a terminal or a notebook but not in a
    log file, True always, False never (tests).
    """
    _check(peers, rounds, baseline)
    facts = machine.facts()  # before timing: the accelerator probe starts a process
    rss = _rss_mib()
    started = datetime.now(timezone.utc)
    samples: dict[str, list[float]] = {p.name: [] for p in peers}
    order = schedule(len(peers), rounds, seed)
    bar = _progress_bar()(total=len(peers) * (warmup + rounds), desc=title, unit="trial",
               disable=None if progress is None else not progress, leave=False)
    # The collector would pause whichever peer is unlucky enough to trigger it.
    gc.collect()
    gc.disable()
    try:
        for _ in range(warmup):
            for peer in peers:
                measure(peer, unit)
                bar.update()
        for one_round in order:
            for index in one_round:
                samples[peers[index].name].append(measure(peers[index], unit))
                bar.update()
    finally:
        gc.enable()
        bar.close()
    return BenchResult(
        name=name, title=title, unit=unit,
        peers=[PeerInfo(p.name, p.series, p.group) for p in peers], samples=samples,
        order=[[peers[i].name for i in one_round] for one_round in order], baseline=baseline,
        settings={"rounds": rounds, "warmup": warmup, "seed": seed, "runner_rss_mib": rss},
        machine=facts,
        started=started.isoformat(timespec="seconds"),
        seconds=round((datetime.now(timezone.utc) - started).total_seconds(), 3),
        names_accelerator=names_accelerator, higher_is_better=higher_is_better)
