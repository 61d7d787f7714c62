"""VMs vs containers, all of it: start-up, memory, overhead and density, run and kept together.

``python -m labsupport bench suite [--quick]`` runs the benchmarks one after
another and keeps each as its latest result; notebook 13 calls
``load_or_run`` instead, which reuses a kept result while it is newer than
the code that measured it. ``seed_table`` then answers the seed's table of
differences (가상화기술과 컨테이너기술 차이점) with the measured numbers -
no figure in it is typed by hand.
"""
from __future__ import annotations

import importlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from labsupport.bench import latest
from labsupport.bench.result import BenchResult, PeerInfo, number
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table

#: In the order they run: the fast ones first, so a slow VM boot comes last.
NAMES = ("containers", "vms", "memory", "overhead", "density")
HERE = Path(__file__).resolve().parent
#: The code each benchmark's figures depend on, besides its own module.
DEPENDS = {"vms": ("../vm/tuning.py", "../vm/fullvm.py"), "memory": ("instances.py",),
           "overhead": ("instances.py", "../vm/agent.py"), "density": ("instances.py",)}
VAGRANT = "vagrant"


def _module(name: str):
    return importlib.import_module(f"{__package__}.{name}")


def run_one(name: str, quick: bool, progress: Optional[bool] = None) -> BenchResult:
    return _module(name).run(quick=quick, progress=progress)


def run(quick: bool = False, progress: Optional[bool] = None,
        say: Callable[[str], None] = print) -> dict[str, BenchResult]:
    """Every benchmark of the suite, each kept as its latest result."""
    results = {}
    for name in NAMES:
        say(f"{name}: running{' (quick)' if quick else ''}")
        results[name] = run_one(name, quick, progress)
        latest.keep(results[name])
    return results


def code_changed(name: str) -> datetime:
    """When the code behind benchmark ``name`` last changed (UTC)."""
    files = [HERE / f"{name}.py", HERE / "runner.py"] + [HERE / f for f in DEPENDS.get(name, ())]
    newest = max(f.stat().st_mtime for f in files if f.exists())
    return datetime.fromtimestamp(newest, timezone.utc)


def is_fresh(result: BenchResult) -> bool:
    """Measured after its code last changed: still the code's own figures."""
    measured = datetime.fromisoformat(result.started)
    return measured >= code_changed(result.name)


def load_or_run(quick: bool = True, progress: Optional[bool] = None,
                say: Callable[[str], None] = print) -> dict[str, BenchResult]:
    """Each benchmark's kept result if it is fresh, else a new (quick) run, kept in turn.

    The Vagrant figures (``vagrant up`` to SSH, recorded by labsupport.vm.vagrant
    whenever the Vagrant VM is booted) are added when they exist: booting
    Vagrant takes a minute, too long for a notebook cell.
    """
    results = {}
    for name in NAMES:
        kept = latest.latest(name)
        if kept is not None and is_fresh(kept):
            say(f"{name}: kept result of {kept.started[:16].replace('T', ' ')} UTC "
                f"({kept.settings.get('rounds', '?')} rounds)")
            results[name] = kept
        else:
            say(f"{name}: running now{' (quick)' if quick else ''}")
            results[name] = run_one(name, quick, progress)
            latest.keep(results[name])
    vagrant = latest.latest(VAGRANT)
    if vagrant is not None:
        results[VAGRANT] = vagrant
    return results


# -- start-up, side by side --------------------------------------------------------------

def startup(results: dict[str, BenchResult]) -> BenchResult:
    """Every start-up figure in one chart (seconds, log scale): containers, microVM, Debian, Vagrant.

    They come from different benchmarks (each interleaved within itself), so
    this result has no ratios; its caption says which runs it gathers.
    """
    from labsupport.bench import containers, vms

    wanted = [("containers", f"{containers.GROUP} / {containers.LAB_PY}", "lab container: start to exit", 1e-3),
              ("containers", f"{containers.GROUP} / {containers.RUNC}", "runc container: start to exit", 1e-3),
              ("vms", f"{vms.GROUP} / {vms.MICRO_TUNED}", "microVM: launch to /init", 1.0),
              ("vms", f"{vms.GROUP} / {vms.FULL}", "Debian VM: launch to SSH", 1.0),
              (VAGRANT, "up", "Vagrant VM: vagrant up (to SSH)", 1.0)]
    peers, samples, used = [], {}, {}
    for name, peer, label, to_seconds in wanted:
        result = results.get(name)
        if result is None or peer not in result.samples:
            continue
        peers.append(PeerInfo(label, label))  # no group: one row per peer, named on the axis
        samples[peers[-1].name] = [v * to_seconds for v in result.samples[peer]]
        used[name] = result
    if not peers:
        raise LabError("No start-up result is kept yet: run `python -m labsupport bench suite --quick`.")
    method = "gathered from: " + "; ".join(
        f"{name} ({r.settings.get('rounds', len(r.order))} rounds, {r.started[:16].replace('T', ' ')} UTC)"
        for name, r in used.items())
    first = next(iter(used.values()))
    return BenchResult(name="startup", title="Start-up: containers vs VMs (seconds, log scale)",
                       unit="s", peers=peers, samples=samples, order=[list(samples)],
                       settings={"method": method}, machine=first.machine, started=first.started,
                       names_accelerator=True)


# -- the seed's table, measured ---------------------------------------------------------

def _median(results: dict[str, BenchResult], name: str, peer: str) -> Optional[float]:
    result = results.get(name)
    if result is None or peer not in result.samples:
        return None
    return result.summary(peer).median


def _show(value: Optional[float], unit: str, missing: str) -> str:
    return f"{number(value)} {unit}" if value is not None else f"not measured ({missing})"


def figures(results: dict[str, BenchResult], budget_gib: float = 4) -> dict[str, Optional[float]]:
    """The handful of medians the seed's table needs, by a short key (None: not measured)."""
    from labsupport.bench import containers, density, memory, overhead, vms

    fits = ({f.series: f.count for f in density.fits(results["density"], budget_gib)}
            if "density" in results else {})
    ratio: dict[str, Optional[float]] = {}
    if "overhead" in results:
        result = results["overhead"]
        for peer in result.peers:
            base = result.against_baseline(peer)
            if base is not None:
                kind = "cpu" if peer.group.startswith("CPU") else "io"
                who = "container" if peer.series == overhead.CONTAINER else "vm"
                ratio[f"{kind}_{who}"] = base.value
    return {
        "container_start_ms": _median(results, "containers", f"{containers.GROUP} / {containers.LAB_PY}"),
        "microvm_boot_s": _median(results, "vms", f"{vms.GROUP} / {vms.MICRO_TUNED}"),
        "full_vm_ssh_s": _median(results, "vms", f"{vms.GROUP} / {vms.FULL}"),
        "vagrant_up_s": _median(results, VAGRANT, "up"),
        "container_pss": _median(results, "memory", f"{memory.PSS} / {memory.CONTAINER}"),
        "container_shim_pss": _median(results, "memory", f"{memory.PSS} / {memory.SHIM}"),
        "microvm_pss": _median(results, "memory", f"{memory.PSS} / {memory.MICROVM}"),
        "full_vm_pss": _median(results, "memory", f"{memory.PSS} / {memory.FULL}"),
        "container_disk": _median(results, "memory", f"{memory.DISK} / {memory.CONTAINER}"),
        "microvm_disk": _median(results, "memory", f"{memory.DISK} / {memory.MICROVM}"),
        "full_vm_disk": _median(results, "memory", f"{memory.DISK} / {memory.FULL}"),
        "fit_containers": fits.get(density.SHIM), "fit_microvms": fits.get(density.MICROVM),
        **{k: ratio.get(k) for k in ("cpu_container", "cpu_vm", "io_container", "io_vm")},
    }


def seed_table(results: dict[str, BenchResult], budget_gib: float = 4) -> Table:
    """The seed's VM-vs-container table, each claim next to what this machine measured."""
    f = figures(results, budget_gib)
    accel = next((r.machine.get("accelerator", "?") for r in results.values()), "?").upper()

    def show(key: str, unit: str, bench: str) -> str:
        return _show(f[key], unit, f"bench {bench}")

    def times(key: str, bench: str) -> str:
        return f"×{f[key]:.2f}" if f[key] is not None else f"not measured (bench {bench})"

    rows = [
        ["게스트OS필요 / 게스트os ㄴㄴ (guest OS needed / none)",
         f"a kernel boots first: microVM to /init {show('microvm_boot_s', 's', 'vms')}, "
         f"Debian to SSH {show('full_vm_ssh_s', 's', 'vms')}, vagrant up {show('vagrant_up_s', 's', 'vagrant')}",
         f"the host's kernel runs it: start to exit {show('container_start_ms', 'ms', 'containers')}"],
        ["스케일업 / 스케일아웃 (scale up / scale out)",
         f"{f['fit_microvms'] if f['fit_microvms'] is not None else '?'} microVMs fit in "
         f"{budget_gib:g} GiB (extrapolated); each copy boots a kernel",
         f"{f['fit_containers'] if f['fit_containers'] is not None else '?'} containers "
         f"(with the lab's shim) fit in {budget_gib:g} GiB"],
        ["유휴자원을 사용할 수 없다 / 있어 (idle resources: kept / shared)",
         f"idle PSS: microVM {show('microvm_pss', 'MiB', 'memory')}, Debian VM "
         f"{show('full_vm_pss', 'MiB', 'memory')} - guest RAM QEMU touched stays with it",
         f"idle PSS: {show('container_pss', 'MiB', 'memory')} (with the lab's shim "
         f"{show('container_shim_pss', 'MiB', 'memory')}) - free memory stays the host's"],
        ["경량화 (lightweight)",
         f"on disk {show('microvm_disk', 'MiB', 'memory')} (microVM) / "
         f"{show('full_vm_disk', 'MiB', 'memory')} (Debian); the same work: CPU "
         f"{times('cpu_vm', 'overhead')}, I/O {times('io_vm', 'overhead')} of native"
         + (" - TCG emulation, not virtualization" if accel == "TCG" else ""),
         f"on disk {show('container_disk', 'MiB', 'memory')} (busybox image); the same work: CPU "
         f"{times('cpu_container', 'overhead')}, I/O {times('io_container', 'overhead')} of native"],
    ]
    return Table(["the seed says (VM / container)", f"VM, measured here ({accel})",
                  "container, measured here"], rows,
                 "가상화기술과 컨테이너기술 차이점 - measured on this machine")


def report(results: dict[str, BenchResult]) -> str:
    parts = [_module(name).report(results[name]) for name in NAMES if name in results]
    return "\n\n".join(parts + [str(seed_table(results))])
