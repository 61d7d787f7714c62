"""The VM start-up benchmark: interleaved, labelled with the accelerator, saved with machine facts."""
from __future__ import annotations

import pytest

from labsupport import bench
from labsupport.bench import BenchResult, charts, vms


def test_vms_is_registered_for_the_command_line() -> None:
    assert bench.benchmark("vms") is vms


@pytest.mark.slow
def test_microvm_startup_is_measured_interleaved_and_labelled(tmp_path) -> None:
    result = vms.run(rounds=2, progress=False, full=False)
    assert result.names_accelerator and result.machine["accelerator"] in ("kvm", "tcg")
    assert set(result.samples) == {f"{vms.GROUP} / {vms.MICRO_UNTUNED}", f"{vms.GROUP} / {vms.MICRO_TUNED}"}
    assert all(len(s) == 2 and 0.1 < min(s) < 120 for s in result.samples.values())
    assert len({tuple(r) for r in result.order}) >= 1 and all(len(r) == 2 for r in result.order)
    again = BenchResult.load(result.save(tmp_path / "vms.json"))
    assert again.samples == result.samples and again.machine == result.machine
    svg = charts.save(charts.bar_chart(again), tmp_path / "vms.svg")
    assert "TCG" in svg.read_text() or "KVM" in svg.read_text()
