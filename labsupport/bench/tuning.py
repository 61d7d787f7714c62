"""The fast microVM: one kernel, booted untuned and then tuned step by step, all in one run.

Every step keeps the previous ones and changes one thing, so the chart shows
what each change bought::

    untuned      qemu-system-x86_64 -M pc: SeaBIOS, the PCI bus, a compressed
                 kernel, every boot message on the serial port, a big initramfs
    + quiet      the kernel prints almost nothing (each serial byte is emulated)
    + small      an initramfs of busybox alone, not a generic one full of drivers
    + microvm    -M microvm: no PCI, no legacy devices, a minimal firmware
    + vmlinux    the unpacked ELF kernel (PVH entry): no decompression at boot
    + 1 vCPU     no second CPU to bring up (the workload needs one)

The marker is printed by the guest's /init: the moment user space runs.
"""
from __future__ import annotations

import collections
import dataclasses
import gzip
import os
from pathlib import Path
from typing import Optional

from labsupport import ownership
from labsupport.bench.result import BenchResult
from labsupport.bench.runner import Peer, run_peers
from labsupport.kernel.errors import LabError
from labsupport.vm import initramfs
from labsupport.vm.guest_kernel import GuestKernel, fetch_kernel
from labsupport.vm.initramfs import char_device, directory, file, symlink, write_newc
from labsupport.vm.qemu import VM, VMConfig

MARKER = "LAB-USERSPACE"
TUNING_CACHE = ownership.CACHE_DIR / "vm" / "tuning"
#: The driver directories a generic distribution initramfs carries "just in case".
GENERIC_DRIVERS = ("ata", "scsi", "nvme", "md", "net/ethernet/intel", "virtio", "block")
BOOT_TIMEOUT = 60.0
ROUNDS, QUICK_ROUNDS = 5, 2
UNTUNED = "untuned (-M pc)"

INIT = f"""#!/bin/sh
/bin/busybox mount -t proc proc /proc
echo "{MARKER} $(/bin/busybox cut -d' ' -f1 /proc/uptime)"
/bin/busybox poweroff -f
"""


def _modules(kernel: GuestKernel) -> list[initramfs.Entry]:
    """The generic initramfs's ballast: whole driver families from the guest's module tree."""
    members: list[initramfs.Entry] = []
    for family in GENERIC_DRIVERS:
        top = kernel.modules / "kernel" / "drivers" / family
        for path in sorted(top.rglob("*")):
            name = f"lib/modules/{path.relative_to(kernel.modules)}"
            members.append(directory(name) if path.is_dir() else file(name, path.read_bytes()))
    parents = {str(p) for m in members for p in Path(m.name).parents if str(p) != "."}
    return [directory(d) for d in sorted(parents)] + members


def build_initramfs(kernel: GuestKernel, generic: bool) -> Path:
    """A busybox /init that prints the marker and powers off; ``generic`` adds driver ballast."""
    target = TUNING_CACHE / f"{kernel.release}-{'generic' if generic else 'small'}.cpio.gz"
    if target.is_file():
        return target
    members = [directory(d) for d in ("bin", "dev", "proc")]
    members += [char_device("dev/console", 5, 1), file("bin/busybox", initramfs.BUSYBOX.read_bytes(), 0o755),
                symlink("bin/sh", "busybox"), file("init", INIT.encode(), 0o755)]
    if generic:
        members += _modules(kernel)
    TUNING_CACHE.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_bytes(gzip.compress(write_newc(members), compresslevel=6, mtime=0))
    partial.rename(target)
    return target


def steps(kernel: Optional[GuestKernel] = None) -> list[tuple[str, VMConfig]]:
    """The untuned boot and each cumulative change, as (label, config)."""
    kernel = kernel or fetch_kernel()
    untuned = VMConfig(kernel=kernel.vmlinuz, initrd=build_initramfs(kernel, generic=True),
                       machine="pc", base_kernel_args=("console=ttyS0", "panic=-1"),
                       memory_mb=256, cpus=2)
    quiet = dataclasses.replace(untuned, base_kernel_args=(*untuned.base_kernel_args, "quiet"))
    small = dataclasses.replace(quiet, initrd=build_initramfs(kernel, generic=False))
    microvm = dataclasses.replace(small, machine="microvm")
    elf = dataclasses.replace(microvm, kernel=kernel.boot_image)
    one_cpu = dataclasses.replace(elf, cpus=1)
    return [(UNTUNED, untuned), ("+ quiet", quiet), ("+ small initramfs", small),
            ("+ microvm", microvm), ("+ vmlinux (PVH)", elf), ("+ 1 vCPU (tuned)", one_cpu)]


#: Boots that showed no marker within BOOT_TIMEOUT and were launched again, by config.
HUNG: "collections.Counter[VMConfig]" = collections.Counter()


def boot_seconds(config: VMConfig, attempts: int = 2) -> float:
    """Launch to the marker, in seconds; the guest powers itself off, QEMU is reaped.

    Under TCG a guest now and then hangs in early boot, silently (seen once
    in a few hundred boots here, with the TSC rate given). A boot that has
    not reached the marker after BOOT_TIMEOUT - ten times a slow one - is
    killed and launched once more; ``HUNG`` counts them and the report says so.
    """
    for attempt in range(1, attempts + 1):
        with VM.start(config) as vm:
            try:
                return vm.wait_for(MARKER, timeout=BOOT_TIMEOUT).seconds
            except LabError:
                if attempt == attempts or not vm.is_running():
                    raise  # QEMU ended with an error, or it hung again: a real problem
                HUNG[config] += 1
    raise AssertionError("unreachable")


def run(rounds: Optional[int] = None, quick: bool = False, progress: Optional[bool] = None) -> BenchResult:
    """Every step, interleaved round by round, in one run; the untuned boot is the baseline."""
    quick = quick or bool(os.environ.get("LAB_FAST"))
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    peers = [Peer(label, (lambda c=config: boot_seconds(c)), group="boot to user space")
             for label, config in steps()]
    return run_peers(peers, rounds, name="vm-tuning", unit="s", baseline=UNTUNED,
                     title="One kernel, launch to /init: untuned -M pc vs each tuning step",
                     warmup=1 if quick else 1, progress=progress, names_accelerator=True)


def tuned_ratio(result: BenchResult) -> float:
    """Median tuned boot over median untuned boot (the goal: at most 0.7)."""
    last = result.peers[-1].name
    return result.ratio(last, result.find("boot to user space", UNTUNED).name).value


def report(result: BenchResult) -> str:
    hung = sum(HUNG.values())
    retried = f"\n{hung} boot(s) hung silently and were launched again" if hung else ""
    return f"{result}\ntuned / untuned = {tuned_ratio(result):.2f} (goal <= 0.70){retried}"
