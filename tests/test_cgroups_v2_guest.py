"""tests/test_cgroups.py once more, inside a VM whose kernel mounts pure cgroup v2.

The lab's reference host mounts cgroups in the hybrid layout, most learners'
machines mount pure v2: the host run proves one code path, this run the
other. The guest is Debian's own kernel under QEMU, booted over the host's
root (read-only, with a throwaway tmpfs on top), so it runs this very
checkout with this very interpreter. pytest's JUnit report comes back
through a shared directory.
"""
from __future__ import annotations

import pytest

from labsupport import cgroups
from labsupport.kernel import hoststate
from labsupport.vm import fetch_kernel, guest_tests

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

MODULE = "tests/test_cgroups.py"


def test_the_cgroup_tests_pass_inside_a_pure_v2_guest() -> None:
    host_layout = cgroups.detect_layout()
    result = guest_tests.run_pytest_in_guest(MODULE)
    report = f"{result}\n{result.output[-6000:]}"
    # Inside: the guest's own kernel, one cgroup2 mount and nothing else, every controller on it.
    assert result.kernel_release == fetch_kernel().release, report
    assert result.pure_v2, report
    assert {"cpuset", "cpu", "io", "memory", "pids"} <= set(result.cgroup_controllers), report
    # Every test of the module ran there, on the v2 back ends, and none failed.
    assert result.tests == guest_tests.collected_on_the_host([MODULE]) > 0, report
    assert result.failures == 0 and result.errors == 0 and result.exit_code == 0, report
    assert "[v2]" in result.output and "[v1]" not in result.output, report
    # Outside: the host's own layout is as it was, and QEMU is gone.
    assert cgroups.detect_layout() == host_layout
    assert not [p for p in hoststate.processes().values() if p.name.startswith("qemu-system")]
