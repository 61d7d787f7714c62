"""Idle instances to measure: a lab container, a microVM, the full Debian VM - and what they cost.

What an instance "uses" is the memory of all its processes on the host:
PSS (proportional set size) splits every shared page among the processes
that map it, so PSS figures add up across instances without counting the
shared busybox or QEMU binary once per copy; RSS counts every page each
process touches, shared or not. Both come from /proc/PID/smaps_rollup
(psutil's ``memory_full_info``).

A container's processes are its program and its children; the lab's
runtime adds a supervisor per container (the shim, a Python process, as
containerd-shim is for Docker), reported apart so neither is hidden.
A VM's process is QEMU: its guest's RAM, the translation cache (TCG) and
QEMU itself.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import psutil

from labsupport import container
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.vm import VM, fetch_kernel, guest_config
from labsupport.vm.initramfs import FAILED_MARKER, READY_MARKER

MIB = 2 ** 20
#: How long an instance idles before it is measured: boot-time work (page
#: faults, the guest's first timers) settles, as it would on a real host.
CONTAINER_SETTLE, VM_SETTLE = 0.3, 2.0
MICROVM_MEMORY_MB = 256


@dataclass(frozen=True)
class Memory:
    """RSS and PSS in MiB, summed over a set of processes."""

    rss: float
    pss: float

    def __add__(self, other: "Memory") -> "Memory":
        return Memory(self.rss + other.rss, self.pss + other.pss)


def with_descendants(pids: Iterable[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            found.add(pid)
            found.update(child.pid for child in proc.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return found


def memory_of(pids: Iterable[int]) -> Memory:
    """RSS and PSS of these processes, summed (a process that ended meanwhile counts 0)."""
    rss = pss = 0
    for pid in set(pids):
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        pss += info.pss
    return Memory(rss / MIB, pss / MIB)


# -- containers ---------------------------------------------------------------------

def start_container() -> str:
    """An idle lab container: busybox sleeping, as a service waiting for work does. Its own
    network namespace with only lo (``--network none``): a veth and an address add kernel
    memory, which no PSS shows, and a bridge plugs one container at a time."""
    return container.run("busybox", ["sleep", "100000"], network="none")


def container_memory(cid: str) -> tuple[Memory, Memory]:
    """(the container's own processes, the lab's shim that supervises it)."""
    state = container.state(cid)
    if state.get("status") != "running":
        raise LabError(f"The container {cid} is not running, so it cannot be measured.")
    own = with_descendants([state["pid"]])
    shim = with_descendants([state["shim_pid"]]) - own if state.get("shim_pid") else set()
    return memory_of(own), memory_of(shim)


def remove_containers(cids: Iterable[str]) -> None:
    """Remove every container given, going on past any that fails; one already gone
    (a clean-up elsewhere removed it) is fine."""
    errors = []
    for cid in cids:
        try:
            container.remove(cid, force=True)
        except LabError as err:
            if any(c.get("id") == cid for c in container.list_containers()):
                errors.append(str(err))
    if errors:
        raise LabError(f"Some containers could not be removed: {errors[0]}")


def idle_container_memory() -> tuple[Memory, Memory]:
    cid = start_container()
    try:
        time.sleep(CONTAINER_SETTLE)
        return container_memory(cid)
    finally:
        remove_containers([cid])


# -- VMs ----------------------------------------------------------------------------

def start_microvm(memory_mb: int = MICROVM_MEMORY_MB) -> VM:
    """A microVM idling at its shell (the lab's initramfs guest without a script to run)."""
    machine = VM.start(guest_config(fetch_kernel(), memory_mb=memory_mb))
    try:
        machine.wait_for(READY_MARKER, timeout=120, fail_on=(FAILED_MARKER,))
    except BaseException:
        machine.stop()
        raise
    return machine


def vm_memory(machine: VM) -> Memory:
    use = machine.memory()
    return Memory(use.rss / MIB, use.pss / MIB)


def idle_microvm_memory() -> Memory:
    with start_microvm() as machine:
        time.sleep(VM_SETTLE)
        return vm_memory(machine)


def idle_full_vm_memory() -> Memory:
    from labsupport.vm import fullvm

    with fullvm.boot() as guest:
        time.sleep(VM_SETTLE)
        return vm_memory(guest.vm)


# -- disk -----------------------------------------------------------------------------

def disk_mib(paths: Iterable[Path]) -> float:
    """Space the files (and directory trees) take on the host's disk, in MiB."""
    total = 0
    for path in paths:
        for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
            if not item.is_symlink() and item.exists():
                total += item.stat().st_blocks * 512
    return total / MIB


def container_disk() -> float:
    """The busybox image's layers: all that a container needs beyond the host's kernel."""
    from labsupport import images

    images.build_busybox_base()
    return disk_mib(images.get("busybox").layers)


def microvm_disk() -> float:
    """The guest kernel and the initramfs; its root is the host's own, shared over 9p."""
    kernel = fetch_kernel()
    config = guest_config(kernel)
    return disk_mib([Path(config.kernel), Path(config.initrd)])


def full_vm_disk() -> float | None:
    """The Debian disk image, its kernel and initrd; None if it was never built here."""
    from labsupport.vm import debian_image

    image = debian_image.cached()
    return None if image is None else disk_mib([image.path, image.kernel, image.initrd])


# -- what the host sees ---------------------------------------------------------------

def _smaps_pss(pid: int) -> str:
    """The Rss and Pss lines of /proc/PID/smaps_rollup: where psutil's figures come from."""
    try:
        lines = open(f"/proc/{pid}/smaps_rollup").read().splitlines()
    except OSError:
        return "(gone)"
    return ", ".join(" ".join(line.split()) for line in lines if line.startswith(("Rss:", "Pss:")))


def host_view(cid: str, vm: dict) -> Table:
    """A running container and a background microVM (``labsupport.vm.background`` state), as
    the host sees them: processes, which kernel runs the work, memory, reserved RAM."""
    box = container.state(cid)
    box_pids = sorted(with_descendants([box["pid"]]))
    guest_kernel = Path(vm["console"]).read_text(errors="replace").split(READY_MARKER)[-1].split()[:1]
    rows = [
        ["host PIDs of the instance", ", ".join(map(str, box_pids)), str(vm["qemu_pid"])],
        ["what the host's ps shows", ", ".join(psutil.Process(p).name() for p in box_pids),
         f"{psutil.Process(vm['qemu_pid']).name()} (the guest's processes are invisible)"],
        ["kernel that runs the work", f"the host's own: {os.uname().release}",
         f"its own guest kernel: {guest_kernel[0] if guest_kernel else '?'}"],
        ["/proc/PID/smaps_rollup", _smaps_pss(box["pid"]), _smaps_pss(vm["qemu_pid"])],
        ["memory set aside up front", "none (a cgroup limit only caps it)",
         f"{vm['memory_mb']} MiB of guest RAM (-m)"],
    ]
    return Table(["", f"container {box['name']}", f"microVM {vm['name']}"], rows,
                 "One container and one VM, seen from the host")
