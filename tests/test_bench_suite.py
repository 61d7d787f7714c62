"""VMs vs containers: the memory, overhead and density benchmarks, the suite's table, bad input.

The quick runs boot real microVMs and start real containers; each test then
checks the result's shape and what it claims against the host (PSS read
again from /proc, containers and QEMUs really gone afterwards).
"""
from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from labsupport import container
from labsupport.bench import (
    BENCHMARKS,
    benchmark,
    charts,
    density,
    instances,
    memory,
    overhead,
    suite,
)
from labsupport.bench.result import BenchResult
from labsupport.kernel.errors import LabError

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labsupport", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_new_benchmarks_are_registered_and_the_suite_is_a_choice() -> None:
    for name in ("memory", "overhead", "density"):
        assert name in BENCHMARKS and callable(benchmark(name).run) and callable(benchmark(name).report)
    assert set(suite.NAMES) <= set(BENCHMARKS)
    helped = _cli("bench", "--help")
    assert helped.returncode == 0 and "suite" in helped.stdout
    wrong = _cli("bench", "vms-vs-containers")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr and "Traceback" not in wrong.stderr


def test_overhead_reads_the_time_the_box_printed() -> None:
    assert overhead.elapsed("noise\nLAB-ELAPSED 100.250000 101.750000\n") == pytest.approx(1.5)
    with pytest.raises(LabError, match="printed no timing"):
        overhead.elapsed("sh: md5sum: not found")
    # The same script natively: it really does the work and times it.
    done = subprocess.run([overhead.BUSYBOX, "sh", "-c", overhead.script(overhead.cpu_work(8)), "sh", "/"],
                          capture_output=True, text=True, timeout=60)
    assert 0 < overhead.elapsed(done.stdout) < 30


@pytest.fixture(scope="module")
def quick() -> dict[str, BenchResult]:
    """One quick run of each new benchmark, shared by the tests below (about a minute under TCG)."""
    return {"memory": memory.run(quick=True, progress=False),
            "overhead": overhead.run(quick=True, rounds=1, progress=False),
            "density": density.run(quick=True, containers=5, vms=1, progress=False)}


@pytest.mark.slow
def test_memory_weighs_each_idle_instance(quick: dict[str, BenchResult], tmp_path: Path) -> None:
    result = quick["memory"]
    assert result.groups() == [memory.PSS, memory.RSS, memory.DISK]
    pss = {p.series: result.summary(p.name).median for p in result.peers if p.group == memory.PSS}
    rss = {p.series: result.summary(p.name).median for p in result.peers if p.group == memory.RSS}
    assert 0.05 < pss[memory.CONTAINER] < 30 < pss[memory.MICROVM], pss
    assert pss[memory.SHIM] > pss[memory.CONTAINER]
    assert all(pss[s] <= rss[s] * 1.01 for s in pss), "PSS never exceeds RSS"
    assert memory.FULL not in pss, "quick mode leaves the full VM out"
    assert all(len(r) == len(result.peers) for r in result.order), "every peer in every round"
    # The host's side: a container's sleep really weighs what the benchmark says, give or take.
    cid = instances.start_container()
    try:
        time.sleep(instances.CONTAINER_SETTLE)  # as the benchmark lets it settle
        proc = psutil.Process(container.state(cid)["pid"])
        assert proc.name() == "sleep"
        own = proc.memory_full_info().rss / instances.MIB
        assert own == pytest.approx(rss[memory.CONTAINER], rel=0.5)
    finally:
        instances.remove_containers([cid])
    again = BenchResult.load(result.save(tmp_path / "memory.json"))
    assert again.samples == result.samples and again.machine["accelerator"] in ("kvm", "tcg")
    svg = charts.save(charts.bar_chart(again, log=True), tmp_path / "memory.svg").read_text()
    assert again.machine["accelerator"].upper() in svg


@pytest.mark.slow
def test_overhead_ratios_are_finite_and_name_the_accelerator(quick: dict[str, BenchResult]) -> None:
    result = quick["overhead"]
    accel = result.machine["accelerator"]
    assert f"microVM ({accel.upper()})" in result.series()
    ratios = [result.against_baseline(p) for p in result.peers if p.series != overhead.NATIVE]
    assert len(ratios) == 4 and all(math.isfinite(r.value) and r.value > 0 for r in ratios)
    assert ("emulation" in result.caption()) == (accel == "tcg")
    assert result.settings["guest_accelerator"] == accel


@pytest.mark.slow
def test_density_counts_fits_and_leaves_nothing(quick: dict[str, BenchResult]) -> None:
    result = quick["density"]
    assert result.settings["containers_started"] == 5 and result.settings["vms_started"] == 1
    assert len(result.samples[f"{density.PSS} / {density.CONTAINER}"]) == 5
    fits = {f.series: f for f in density.fits(result, 4)}
    assert fits[density.MICROVM].extrapolated and 0 < fits[density.MICROVM].count
    assert fits[density.SHIM].count > fits[density.MICROVM].count
    assert "extrapolated from 1 running" in str(density.fit_table(result, 4))
    assert "one batch" in result.caption()
    with pytest.raises(LabError, match="more than 0 GiB"):
        density.fits(result, 0)
    with pytest.raises(LabError, match="at least one"):
        density.run(containers=1, vms=0, progress=False)


@pytest.mark.slow
def test_density_removes_its_containers_when_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    real_start = instances.start_container

    def recording_start() -> str:
        started.append(real_start())
        return started[-1]

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(instances, "start_container", recording_start)
    monkeypatch.setattr(instances, "start_microvm", interrupted)
    with pytest.raises(KeyboardInterrupt):
        density.run(containers=3, vms=1, progress=False)
    assert len(started) == 3
    left = {c["id"] for c in container.list_containers()}
    assert not left & set(started), "the interrupted run left containers behind"


@pytest.mark.slow
def test_seed_table_is_filled_from_results_only(quick: dict[str, BenchResult]) -> None:
    table = suite.seed_table(quick, budget_gib=4)
    text = str(table)
    assert len(table.rows) == 4 and "스케일아웃" in text and "경량화" in text
    pss = quick["memory"].summary(f"{memory.PSS} / {memory.MICROVM}").median
    assert f"{pss:.0f}" in text or f"{pss:.3g}" in text, "the microVM's measured PSS is in the table"
    assert "not measured (bench containers)" in text and "not measured (bench vms)" in text
    assert quick["memory"].machine["accelerator"].upper() in table.headers[1]
    with pytest.raises(LabError, match="No start-up result"):
        suite.startup(quick)
    # A result older than its code is not reused.
    stale = replace(quick["memory"], started="2000-01-01T00:00:00+00:00")
    assert suite.is_fresh(quick["memory"]) and not suite.is_fresh(stale)
