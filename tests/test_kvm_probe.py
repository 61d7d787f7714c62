"""probe_accelerator: runs a real-mode guest through /dev/kvm in a child process.

Nothing of the kernel is mocked. The assertions tie the verdict to facts read
independently (/dev/kvm, /sys/module/kvm_pvm), so on the reference machine
(kvm_pvm) they demand "tcg", and on a laptop with working KVM they demand "kvm".
"""
from __future__ import annotations

import ctypes
import importlib
import os
import time
from pathlib import Path

import pytest

from labsupport.vm.kvm import AcceleratorProbe, probe_accelerator, run_real_mode_guest_in_child

kvm = importlib.import_module("labsupport.kernel.kvm")  # the raw ioctls and structures

PVM_LOADED = Path("/sys/module/kvm_pvm").exists()
KVM_PRESENT = Path("/dev/kvm").exists()
CAN_OPEN_KVM = KVM_PRESENT and os.access("/dev/kvm", os.R_OK | os.W_OK)


def test_structures_have_the_kernels_sizes() -> None:
    assert ctypes.sizeof(kvm.KvmUserspaceMemoryRegion) == 32
    assert ctypes.sizeof(kvm.KvmRegs) == 144
    assert ctypes.sizeof(kvm.KvmSregs) == 312
    assert kvm.KvmRegs.rip.offset == 128 and kvm.KvmRegs.rflags.offset == 136
    assert kvm.KvmRunHead.exit_reason.offset == 8 and kvm.KvmRunHead.io.offset == 32


def test_ioctl_numbers_match_linux_kvm_h() -> None:
    # Values as the C preprocessor computes them from <linux/kvm.h> on x86_64.
    assert kvm.KVM_GET_API_VERSION == 0xAE00
    assert kvm.KVM_CREATE_VM == 0xAE01
    assert kvm.KVM_GET_VCPU_MMAP_SIZE == 0xAE04
    assert kvm.KVM_CREATE_VCPU == 0xAE41
    assert kvm.KVM_SET_USER_MEMORY_REGION == 0x4020AE46
    assert kvm.KVM_RUN == 0xAE80
    assert kvm.KVM_GET_REGS == 0x8090AE81
    assert kvm.KVM_SET_REGS == 0x4090AE82
    assert kvm.KVM_GET_SREGS == 0x8138AE83
    assert kvm.KVM_SET_SREGS == 0x4138AE84


@pytest.fixture(scope="module")
def probe() -> tuple[AcceleratorProbe, float]:
    started = time.monotonic()
    result = probe_accelerator()
    return result, time.monotonic() - started


def test_probe_is_fast(probe: tuple[AcceleratorProbe, float]) -> None:
    assert probe[1] < 3.0


def test_probe_reports_the_facts(probe: tuple[AcceleratorProbe, float]) -> None:
    result = probe[0]
    assert result.kvm_device == KVM_PRESENT
    assert result.pvm == PVM_LOADED
    assert set(result.cpu_flags) <= {"vmx", "svm", "hypervisor"}
    assert result.accelerator in ("kvm", "tcg")
    assert result.reason.endswith(".") and "\n" not in result.reason


def test_verdict_follows_the_rule(probe: tuple[AcceleratorProbe, float]) -> None:
    result = probe[0]
    if PVM_LOADED or not KVM_PRESENT:
        assert result.accelerator == "tcg"
    if result.accelerator == "kvm":
        assert result.guest_ran and result.kvm_device and not result.pvm
    if not result.guest_ran:
        assert result.accelerator == "tcg"
    if PVM_LOADED:
        assert "PVM" in result.reason and "TCG" in result.reason


def test_a_guest_that_ran_did_exactly_the_port_write_and_halt(
        probe: tuple[AcceleratorProbe, float]) -> None:
    result = probe[0]
    if result.guest_ran:
        assert result.detail == "IO out port 0x10 value 0x42, then HLT"


@pytest.mark.skipif(not CAN_OPEN_KVM, reason="no usable /dev/kvm to run a guest on")
def test_child_reaches_the_guest_or_names_the_failing_stage() -> None:
    report = run_real_mode_guest_in_child(timeout=3.0)
    assert report["stage"] == "done" or report["detail"]
    if report["guest_ran"]:
        assert report["exits"] == ["IO out port 0x10 value 0x42", "HLT"]


def _children_running_the_probe() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"--real-mode-child" in cmdline:
            found.append(int(entry.name))
    return found


def test_timeout_kills_and_reaps_the_child() -> None:
    # A timeout shorter than Python's start-up forces the hang path for real.
    report = run_real_mode_guest_in_child(timeout=0.001)
    assert report["guest_ran"] is False
    assert "did not halt" in report["detail"]
    assert _children_running_the_probe() == []


def test_boot_check_runs_only_when_kvm_passed_and_gets_the_last_word() -> None:
    calls: list[int] = []

    def boot_fails() -> tuple[bool, str]:
        calls.append(1)
        return False, "A stock kernel did not boot under QEMU with KVM."

    result = probe_accelerator(boot_check=boot_fails)
    assert result.accelerator == "tcg"
    if calls:  # KVM passed the real-mode test on a non-PVM host
        assert result.boot_check is False
        assert result.reason == "A stock kernel did not boot under QEMU with KVM."
    else:
        assert result.boot_check is None
        assert PVM_LOADED or not result.guest_ran or not KVM_PRESENT


def test_missing_device_means_tcg_without_running_anything(tmp_path: Path) -> None:
    result = probe_accelerator(kvm_device=tmp_path / "no-kvm", pvm_module=tmp_path / "no-pvm")
    assert (result.accelerator, result.kvm_device, result.guest_ran) == ("tcg", False, False)
    assert "no /dev/kvm" in result.reason
