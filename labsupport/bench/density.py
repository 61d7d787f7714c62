"""How many idle instances fit on one host, and how fast they come: containers vs microVMs.

The seed's point - a container is light (경량화), scaled out by adding
copies (스케일아웃), where a VM brings a guest OS along - as one number: how
many fit in a memory budget. Up to N lab containers (busybox sleeping) are
started, four at a time, until N run or 30 s have passed; then a few
microVMs, all left running together. Every instance's PSS is read once all
of them idle, so shared pages are split among all the copies, as they
would be on a busy host.

This benchmark is a batch, not rounds: its question is "start many, then
look", so the containers start first and the VMs after, and every instance
is one sample. Few VMs are started (each holds hundreds of MiB), so how
many VMs fit in a budget is an extrapolation from them, and says so.
Every container and VM is removed at the end, also after an error or an
interrupt.
"""
from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional

from labsupport.bench import instances, machine
from labsupport.bench.result import BenchResult, PeerInfo, number
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONTAINERS, QUICK_CONTAINERS = 100, 10
VMS, QUICK_VMS = 3, 2
DEADLINE = 30.0
STARTERS = 4  # containers started at once
PSS, RSS = "PSS per idle instance", "RSS per idle instance"
CONTAINER, SHIM, MICROVM = "lab container", "lab container + its shim", "microVM"
GIB = 1024.0  # MiB


def _start_containers(count: int, deadline: float, cids: list[str]) -> list[float]:
    """Start containers into ``cids`` (so the caller can remove them whatever happens),
    STARTERS at a time as an orchestrator would; return each start's seconds.

    Much of a start is waiting (the kernel's RCU grace period when a process
    joins a cgroup), and those waits overlap.
    """
    seconds: list[float] = []
    began = time.monotonic()

    def start_one(_: int) -> None:
        if time.monotonic() - began < deadline:
            one = time.monotonic()
            cids.append(instances.start_container())
            seconds.append(time.monotonic() - one)

    with ThreadPoolExecutor(STARTERS) as pool:
        list(pool.map(start_one, range(count)))  # list(): the first error is raised here
    return seconds


def _start_vms(count: int, vms: list) -> list[float]:
    seconds = []
    for _ in range(count):
        vm = instances.start_microvm()
        vms.append(vm)
        seconds.append(time.monotonic() - vm.started)
    return seconds


def run(rounds: Optional[int] = None, quick: bool = False, progress: Optional[bool] = None,
        containers: Optional[int] = None, vms: Optional[int] = None) -> BenchResult:
    """``rounds`` is taken as the number of containers to start (the CLI's --rounds)."""
    quick = quick or bool(os.environ.get("LAB_FAST"))
    want = containers or rounds or (QUICK_CONTAINERS if quick else CONTAINERS)
    want_vms = vms if vms is not None else (QUICK_VMS if quick else VMS)
    if want < 1 or want_vms < 1:
        raise LabError("The density benchmark needs at least one container and one VM to start.")
    facts = machine.facts()
    started = datetime.now(timezone.utc)
    cids: list[str] = []
    running_vms: list = []
    try:
        batch = time.monotonic()
        container_seconds = _start_containers(want, DEADLINE, cids)
        batch = time.monotonic() - batch
        vm_seconds = _start_vms(want_vms, running_vms)
        time.sleep(instances.VM_SETTLE)
        samples: dict[str, list[float]] = {f"{g} / {s}": [] for g in (PSS, RSS)
                                           for s in (CONTAINER, SHIM, MICROVM)}
        for cid in cids:
            own, shim = instances.container_memory(cid)
            for group, own_value, all_value in ((PSS, own.pss, own.pss + shim.pss),
                                                (RSS, own.rss, own.rss + shim.rss)):
                samples[f"{group} / {CONTAINER}"].append(round(own_value, 3))
                samples[f"{group} / {SHIM}"].append(round(all_value, 3))
        for vm in running_vms:
            use = instances.vm_memory(vm)
            samples[f"{PSS} / {MICROVM}"].append(round(use.pss, 3))
            samples[f"{RSS} / {MICROVM}"].append(round(use.rss, 3))
    finally:
        for vm in running_vms:
            vm.stop()
        instances.remove_containers(cids)
    peers = [PeerInfo(f"{g} / {s}", s, g) for g in (PSS, RSS) for s in (CONTAINER, SHIM, MICROVM)]
    return BenchResult(
        name="density", title=f"{len(cids)} idle containers and {len(running_vms)} microVMs on one host",
        unit="MiB", peers=peers, samples=samples, order=[list(samples)], machine=facts,
        started=started.isoformat(timespec="seconds"),
        seconds=round((datetime.now(timezone.utc) - started).total_seconds(), 3),
        names_accelerator=True,
        settings={"rounds": 1, "quick": quick,
                  "method": (f"one batch: {len(cids)} containers started {STARTERS} at a time "
                             f"(at most {DEADLINE:g} s), then {len(running_vms)} microVMs; "
                             "every instance measured once all ran, one sample each"),
                  "containers_wanted": want, "containers_started": len(cids),
                  "deadline_seconds": DEADLINE, "container_batch_seconds": round(batch, 3),
                  "container_start_seconds": [round(s, 4) for s in container_seconds],
                  "vms_started": len(running_vms), "vm_boot_seconds": [round(s, 3) for s in vm_seconds],
                  "microvm_memory_mb": instances.MICROVM_MEMORY_MB})


# -- how many fit ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Fit:
    series: str
    pss_mib: float
    count: int
    measured: int  # how many were really running when measured
    extrapolated: bool


def fits(result: BenchResult, budget_gib: float) -> list[Fit]:
    """How many idle instances of each kind fit in ``budget_gib`` of memory, by median PSS."""
    if budget_gib <= 0:
        raise LabError("A memory budget must be more than 0 GiB.")
    measured = {CONTAINER: result.settings["containers_started"],
                SHIM: result.settings["containers_started"], MICROVM: result.settings["vms_started"]}
    found = []
    for series in (CONTAINER, SHIM, MICROVM):
        pss = result.summary(f"{PSS} / {series}").median
        count = int(budget_gib * GIB // pss)
        found.append(Fit(series, pss, count, measured[series], count > measured[series]))
    return found


def fit_table(result: BenchResult, budget_gib: float) -> Table:
    table = Table(["instance", "median PSS (MiB)", f"fit in {budget_gib:g} GiB", "how known"],
                  caption=f"Idle instances that fit in {budget_gib:g} GiB of memory "
                          f"({result.machine.get('accelerator', '?').upper()})")
    for fit in fits(result, budget_gib):
        how = (f"extrapolated from {fit.measured} running" if fit.extrapolated
               else f"measured: {fit.measured} ran together")
        table.rows.append([fit.series, number(fit.pss_mib), fit.count, how])
    return table


def fit_chart(result: BenchResult, budget_gib: float) -> "Figure":
    """Bars of how many fit in the budget; whiskers from the spread of per-instance PSS."""
    from labsupport.bench import charts

    samples = {s: [budget_gib * GIB / v for v in result.samples[f"{PSS} / {s}"]]
               for s in (CONTAINER, SHIM, MICROVM)}
    derived = dataclasses.replace(
        result, title=f"How many idle instances fit in {budget_gib:g} GiB "
                      f"(VMs: extrapolated from {result.settings['vms_started']})",
        unit="instances", peers=[PeerInfo(s, s) for s in samples],
        samples=samples, baseline="")
    return charts.bar_chart(derived, log=True)


def how_fast(result: BenchResult) -> str:
    """How many instances came up, and in how long."""
    s = result.settings
    return (f"{s['containers_started']} of {s['containers_wanted']} containers started in "
            f"{s['container_batch_seconds']:.1f} s (limit {s['deadline_seconds']:g} s); "
            f"{s['vms_started']} microVMs booted in {sum(s['vm_boot_seconds']):.1f} s "
            f"({str(result.machine.get('accelerator', '?')).upper()}).")


def report(result: BenchResult) -> str:
    return f"{result}\n{how_fast(result)}\n{fit_table(result, 4)}"
