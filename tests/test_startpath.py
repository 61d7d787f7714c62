"""Where a start goes: the timeline every start writes, and the benchmarks built on it.

The timeline is checked against the container's own plan (every step the plan
names is marked, each process's marks come in the plan's order) and against
the caller's clock (the steps add up to the time the caller saw pass).
"""
from __future__ import annotations

import time

import pytest

from labsupport import cgroups, container
from labsupport.bench import runtimes, startpath
from labsupport.container import plan as plans


def test_every_step_of_the_plan_is_marked_in_order_and_the_steps_add_up() -> None:
    began = time.monotonic()
    cid = container.run("busybox", ["/bin/true"], network="none")
    try:
        container.wait(cid, 10)
        seen = (time.monotonic() - began) * 1000
        phases = container.start_phases(cid)
        plan = container.plan_of(cid)
    finally:
        container.remove(cid, force=True)
    steps = [p.step for p in phases]
    for part in (plans.HOST, plans.BEFORE_PIVOT, plans.AFTER_PIVOT):
        wanted = plan.names(part)
        assert set(wanted) <= set(steps), f"unmarked steps: {set(wanted) - set(steps)}"
        marked = [s for s in steps if s in wanted]
        assert marked == wanted, "a process took its steps in another order than the plan's"
    total = sum(p.ms for p in phases)
    # From the first mark (in create) to the caller hearing the end: within what the caller saw.
    assert 0.5 * seen < total <= seen + 1, (total, seen)


def test_the_startpath_benchmark_cuts_each_start_into_the_same_steps() -> None:
    result = startpath.run(rounds=2, progress=False)
    assert result.peers and all(len(result.samples[p.name]) == 2 for p in result.peers)
    assert "other" not in result.groups(), "a step of the plan has no part in startpath.PARTS"
    steps = result.settings["steps"]
    assert f"start: fork the shim ({startpath.CALLER})" in steps
    assert f"create the cgroup and set its limits ({startpath.SHIM})" in steps
    assert f"install the seccomp filter ({startpath.INSIDE})" in steps
    assert f"{startpath.REMOVE} ({startpath.CALLER})" in steps
    for i in range(2):
        assert sum(result.samples[p.name][i] for p in result.peers) == \
            pytest.approx(result.settings["total_ms_per_start"][i])
    assert "All steps of one start" in startpath.report(result)


@pytest.mark.slow
def test_runc_and_crun_meet_the_lab_on_the_same_cgroup_trees() -> None:
    """On a hybrid host crun runs only with the v2 mount hidden - in a private mount namespace,
    so the host keeps its mount (the residue check would see it go)."""
    result = runtimes.run(rounds=1, progress=False)
    series = {p.series for p in result.peers}
    assert {"lab runtime (Python)", "runc", "crun"} <= series
    assert all(len(values) == 1 and values[0] > 0 for values in result.samples.values())
    if cgroups.detect_layout().kind == "hybrid":
        assert "hybrid" not in result.caption(), "the peers ran on the host's hybrid layout"
