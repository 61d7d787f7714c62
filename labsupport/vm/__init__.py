"""Virtual machines: a real guest kernel under QEMU, next to the lab's containers.

One face whatever runs the guest - KVM where it really works, QEMU's TCG
emulation elsewhere - and every figure is labelled with the accelerator::

    from labsupport import vm
    kernel = vm.fetch_kernel()              # Debian's kernel, unpacked in the cache
    config = vm.guest_config(kernel)        # boots over the host's root, read-only
    with vm.VM.start(config) as machine:
        print(machine.wait_for(vm.READY_MARKER, timeout=60))   # 2.5 s (TCG): ...
        print(machine.memory())                                # RSS / PSS / USS (TCG)

    vm.run_in_guest("uname -r > /mnt/labshare/out")          # .files["out"]
    vm.run_pytest_in_guest("tests/test_cgroups.py")          # the same tests, pure cgroup v2
"""
from __future__ import annotations

from labsupport.vm import initramfs
from labsupport.vm.guest_kernel import GuestKernel, fetch_kernel
from labsupport.vm.guest_tests import GuestRun, GuestTestRun, run_in_guest, run_pytest_in_guest
from labsupport.vm.initramfs import EXIT_MARKER, FAILED_MARKER, READY_MARKER, guest_config
from labsupport.vm.qemu import (
    VM,
    MemoryUse,
    Reached,
    Share,
    VMConfig,
    host_tsc_khz,
    usable_accelerator,
)

__all__ = [
    "initramfs", "GuestKernel", "fetch_kernel", "guest_config", "GuestRun", "GuestTestRun",
    "run_in_guest", "run_pytest_in_guest", "EXIT_MARKER", "FAILED_MARKER", "READY_MARKER",
    "VM", "MemoryUse", "Reached", "Share", "VMConfig", "host_tsc_khz", "usable_accelerator",
]
