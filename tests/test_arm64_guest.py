"""The kernel-facing tests once more, inside an aarch64 guest: the lab as an ARM laptop runs it.

Learners on Apple Silicon run the lab in an arm64 Debian VM. Nothing on
this x86_64 host would show a wrong system call number or a seccomp filter
for the wrong architecture, so this test boots Debian's arm64 kernel under
QEMU's TCG (every ARM instruction translated to x86 code) over an arm64
Debian userland built offline into the lab cache (``labsupport.vm.foreign``:
first stage here, second stage inside the guest), and runs this checkout's
own tests there with the guest's Python 3.11 and aarch64 wheels.

The guest's count is printed next to the host's for the same modules, and
kept, with every step's wall time, in /var/cache/labsupport/vm/foreign/
for the closing notes.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from labsupport.kernel import hoststate
from labsupport.vm import foreign, guest_tests

pytestmark = [
    pytest.mark.slow, pytest.mark.timeout(5400),
    # Not yet in the default run: its last run here stopped at one failing test inside the guest
    # (138 of 141 passed) that is not diagnosed yet, and building the userland from scratch costs
    # 11-19 minutes. LAB_ARM64=1 runs it (sudo LAB_ARM64=1 ./lab test tests/test_arm64_guest.py).
    pytest.mark.skipif(not os.environ.get("LAB_ARM64"),
                       reason="the aarch64 guest run is opt-in (LAB_ARM64=1) until its last "
                              "failure inside the guest is fixed"),
]

ARCH = "aarch64"
#: The kernel-facing modules: system call numbers (checked against the guest's own C
#: headers), namespaces, mounts and pivot_root, PID and user namespaces, networking,
#: cgroups, images, the container runtime and its attacks, seccomp included.
MODULES = ("tests/test_syscalls.py", "tests/test_pivot_root.py", "tests/test_namespaces.py",
           "tests/test_mounts.py", "tests/test_pid_namespace.py", "tests/test_userns.py",
           "tests/test_net.py", "tests/test_cgroups.py", "tests/test_images.py",
           "tests/test_container.py", "tests/test_attacks.py")
#: Tests that need what this guest cannot have, and why (deselected here and in the host's
#: count alike, so the two counts still compare the same tests).
GUEST_CANNOT = {
    "tests/test_userns.py::test_root_inside_cannot_reach_what_the_host_owns":
        "the guest's / is an overlay over 9p, not a disk: there is no disk to be refused, and "
        "overlayfs may be mounted inside a user namespace (EINVAL for no layers, not EPERM)",
    "tests/test_cgroups.py::test_cpu_quota_caps_a_busy_loop_at_a_fifth_of_a_core[v2]":
        "a CPU share measured against the wall clock: under TCG on a shared host the guest's "
        "CPU accounting and its clock drift apart (0.20 in one run, 0.97 in another); the "
        "quota itself (cpu.max) is checked by the test before it measures",
    "tests/test_attacks.py::test_clean_spares_a_strangers_cgroup_link_and_namespace_named_like_the_labs":
        "its `ip netns add` is the first on a freshly booted guest, and iproute2 then mounts "
        "/run/netns and leaves it: the residue check flags that mount (on a host where a "
        "namespace was ever made, the mount already exists)",
}
DESELECT = tuple(arg for test in GUEST_CANNOT for arg in ("--deselect", test))
#: Stop at the first failure (-x): under TCG a broken guest should not cost an hour.
PYTEST_ARGS = ("-x", "-q", "-o", "addopts=", "--timeout=900", *DESELECT)
REPORT = foreign.FOREIGN_CACHE / f"{ARCH}-tests.json"
#: The notebooks whose lessons hang on architecture-dependent calls: chroot and its escape
#: (pivot_root), PID namespaces, mounts, cgroups, and the whole container with seccomp.
NOTEBOOKS = ("01_chroot", "04_pid", "05_mount", "08_cgroups", "10_container")


def _record(key: str, summary: dict) -> None:
    """Keep this run's figures in the cache, next to the other test's, for the closing notes."""
    try:
        kept = json.loads(REPORT.read_text())
    except (OSError, ValueError):
        kept = {}
    kept[key] = summary
    REPORT.write_text(json.dumps(kept, indent=1) + "\n")


def test_the_kernel_facing_tests_pass_inside_an_aarch64_guest() -> None:
    started = time.monotonic()
    userland = foreign.build(ARCH)
    wheels = foreign.wheels(ARCH)
    build_seconds = time.monotonic() - started
    on_the_host = guest_tests.collected_on_the_host(MODULES, DESELECT)
    result = guest_tests.run_pytest_in_guest(MODULES, PYTEST_ARGS, arch=ARCH, boot_timeout=600,
                                             run_timeout=5000, memory_mb=2048)
    summary = {
        "modules": list(MODULES), "host_collected": on_the_host,
        "deselected_in_both": GUEST_CANNOT,
        "guest": {"tests": result.tests, "passed": result.passed, "failures": result.failures,
                  "errors": result.errors, "skipped": result.skipped,
                  "machine": result.machine, "kernel": result.kernel_release,
                  "boot_seconds": round(result.boot_seconds, 1),
                  "test_seconds": round(result.test_seconds, 1)},
        "userland_build_steps": userland.steps, "wheels_fetch_seconds": wheels.seconds,
        "userland_and_wheels_ready_seconds": round(build_seconds, 1),
    }
    _record("kernel-facing tests", summary)
    print(f"\n{ARCH} guest: {result}\nhost: {on_the_host} tests collected in the same modules "
          f"(both without the {len(GUEST_CANNOT)} the guest cannot run: {list(GUEST_CANNOT)})\n"
          f"userland: {userland}; wheels fetched in {wheels.seconds:.0f} s")
    report = f"{result}\n{result.output[-8000:]}"
    # The guest really was an ARM machine, running Debian's arm64 kernel.
    assert result.machine == ARCH, report
    assert result.kernel_release == userland.kernel_release, report
    # The tests the host collects ran there, and none failed. Some are parametrized by the
    # machine's cgroup layout (hybrid here, pure v2 in the guest), so the counts may differ by
    # those cases: both are printed and kept; a guest that skipped a module would fall far short.
    assert on_the_host > 0 and result.tests >= on_the_host - 3, report
    assert result.failures == 0 and result.errors == 0 and result.exit_code == 0, report
    assert not [p for p in hoststate.processes().values() if p.name.startswith("qemu-system-aar")]


def test_the_notebooks_run_top_to_bottom_inside_an_aarch64_guest() -> None:
    selection = "runs_top_to_bottom and (" + " or ".join(NOTEBOOKS) + ")"
    module = "tests/test_notebooks.py"
    on_the_host = guest_tests.collected_on_the_host([module], ("-k", selection))
    result = guest_tests.run_pytest_in_guest(module, ("-x", "-q", "-o", "addopts=", "-k", selection),
                                             arch=ARCH, boot_timeout=600, run_timeout=5000,
                                             memory_mb=2048)
    _record("notebooks", {"notebooks": list(NOTEBOOKS), "host_collected": on_the_host,
                          "guest": {"tests": result.tests, "passed": result.passed,
                                    "failures": result.failures, "errors": result.errors,
                                    "machine": result.machine,
                                    "test_seconds": round(result.test_seconds, 1)}})
    print(f"\n{ARCH} guest: {result}\nhost: {on_the_host} notebooks selected")
    report = f"{result}\n{result.output[-8000:]}"
    assert result.machine == ARCH, report
    assert result.tests == on_the_host == len(NOTEBOOKS), report
    assert result.failures == 0 and result.errors == 0 and result.exit_code == 0, report
