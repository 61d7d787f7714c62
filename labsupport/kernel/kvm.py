"""KVM's ioctls, raw: a tiny real-mode VM built without QEMU, run in a throw-away process.

The one place in the lab that talks to /dev/kvm. ``labsupport.vm.kvm`` runs
this very file as a script (``python -I kvm.py --real-mode-child``) and reads
the one JSON line it prints: whether three instructions of 16-bit code
(``mov al, 0x42; out 0x10, al; hlt``) ran, and where it stopped if not. Hence
it imports only the standard library and opens its own libc handle - it runs
with no ``labsupport`` package on its path, so it cannot share the gateway's.
The structures and numbers are x86's (real mode has no meaning elsewhere).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import sys
from pathlib import Path

KVM_DEVICE = Path("/dev/kvm")

# ---------------------------------------------------------------------------
# ioctl numbers, computed the way <asm-generic/ioctl.h> does it.
# ---------------------------------------------------------------------------
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    """Encode an ioctl request: direction, payload size, type 'KVMIO', number."""
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _ior(nr: int, size: int) -> int:
    return _ioc(_IOC_READ, nr, size)


def _iow(nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, nr, size)


class KvmUserspaceMemoryRegion(ctypes.Structure):
    """struct kvm_userspace_memory_region (32 bytes)."""

    _fields_ = [
        ("slot", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("guest_phys_addr", ctypes.c_uint64),
        ("memory_size", ctypes.c_uint64),
        ("userspace_addr", ctypes.c_uint64),
    ]


class KvmRegs(ctypes.Structure):
    """struct kvm_regs (144 bytes): the general registers, rip and rflags."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15 "
            "rip rflags"
        ).split()
    ]


class KvmSegment(ctypes.Structure):
    """struct kvm_segment (24 bytes)."""

    _fields_ = [
        ("base", ctypes.c_uint64),
        ("limit", ctypes.c_uint32),
        ("selector", ctypes.c_uint16),
        ("type", ctypes.c_uint8),
        ("present", ctypes.c_uint8),
        ("dpl", ctypes.c_uint8),
        ("db", ctypes.c_uint8),
        ("s", ctypes.c_uint8),
        ("l", ctypes.c_uint8),
        ("g", ctypes.c_uint8),
        ("avl", ctypes.c_uint8),
        ("unusable", ctypes.c_uint8),
        ("padding", ctypes.c_uint8),
    ]


class KvmDtable(ctypes.Structure):
    """struct kvm_dtable (16 bytes): a GDT or IDT register."""

    _fields_ = [
        ("base", ctypes.c_uint64),
        ("limit", ctypes.c_uint16),
        ("padding", ctypes.c_uint16 * 3),
    ]


class KvmSregs(ctypes.Structure):
    """struct kvm_sregs (312 bytes): segments, descriptor tables, control regs."""

    _fields_ = [
        ("cs", KvmSegment), ("ds", KvmSegment), ("es", KvmSegment),
        ("fs", KvmSegment), ("gs", KvmSegment), ("ss", KvmSegment),
        ("tr", KvmSegment), ("ldt", KvmSegment),
        ("gdt", KvmDtable), ("idt", KvmDtable),
        ("cr0", ctypes.c_uint64), ("cr2", ctypes.c_uint64),
        ("cr3", ctypes.c_uint64), ("cr4", ctypes.c_uint64),
        ("cr8", ctypes.c_uint64), ("efer", ctypes.c_uint64),
        ("apic_base", ctypes.c_uint64),
        ("interrupt_bitmap", ctypes.c_uint64 * 4),
    ]


class KvmRunIo(ctypes.Structure):
    """The ``io`` member of kvm_run's exit union (at offset 32)."""

    _fields_ = [
        ("direction", ctypes.c_uint8),
        ("size", ctypes.c_uint8),
        ("port", ctypes.c_uint16),
        ("count", ctypes.c_uint32),
        ("data_offset", ctypes.c_uint64),
    ]


class KvmRunHead(ctypes.Structure):
    """The start of struct kvm_run, enough to read an I/O exit."""

    _fields_ = [
        ("request_interrupt_window", ctypes.c_uint8),
        ("immediate_exit", ctypes.c_uint8),
        ("padding1", ctypes.c_uint8 * 6),
        ("exit_reason", ctypes.c_uint32),
        ("ready_for_interrupt_injection", ctypes.c_uint8),
        ("if_flag", ctypes.c_uint8),
        ("flags", ctypes.c_uint16),
        ("cr8", ctypes.c_uint64),
        ("apic_base", ctypes.c_uint64),
        ("io", KvmRunIo),
    ]


assert ctypes.sizeof(KvmUserspaceMemoryRegion) == 32
assert ctypes.sizeof(KvmRegs) == 144
assert ctypes.sizeof(KvmSregs) == 312

KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, ctypes.sizeof(KvmUserspaceMemoryRegion))
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, ctypes.sizeof(KvmRegs))
KVM_SET_REGS = _iow(0x82, ctypes.sizeof(KvmRegs))
KVM_GET_SREGS = _ior(0x83, ctypes.sizeof(KvmSregs))
KVM_SET_SREGS = _iow(0x84, ctypes.sizeof(KvmSregs))

KVM_API_VERSION = 12
EXIT_REASONS = {
    0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG",
    5: "HLT", 6: "MMIO", 7: "IRQ_WINDOW_OPEN", 8: "SHUTDOWN",
    9: "FAIL_ENTRY", 10: "INTR", 17: "INTERNAL_ERROR",
}
KVM_EXIT_IO, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR = 2, 5, 17
KVM_EXIT_IO_OUT = 1

GUEST_CODE_ADDR = 0x1000
GUEST_PORT = 0x10
GUEST_VALUE = 0x42
# mov al, 0x42 ; out 0x10, al ; hlt
GUEST_CODE = bytes([0xB0, GUEST_VALUE, 0xE6, GUEST_PORT, 0xF4])
MAX_EXITS = 16


# ---------------------------------------------------------------------------
# The child: builds and runs the real-mode VM, prints one JSON line.
# ---------------------------------------------------------------------------
class _ProbeStop(Exception):
    """Raised inside the child to end the probe at a named stage."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(detail)
        self.stage = stage
        self.detail = detail


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _ioctl(libc: ctypes.CDLL, fd: int, request: int, arg: object, stage: str) -> int:
    """ioctl that turns -1 into a _ProbeStop naming the stage and the errno."""
    result = libc.ioctl(fd, ctypes.c_ulong(request), arg)
    if result < 0:
        err = ctypes.get_errno()
        raise _ProbeStop(stage, f"{os.strerror(err)} ({err})")
    return result


def _set_up_real_mode_vm(libc: ctypes.CDLL, kvm_fd: int, guest_memory: mmap.mmap,
                         fds: list[int]) -> int:
    """Create a VM with one page of guest memory holding GUEST_CODE; return the vcpu fd.

    Every fd it opens is appended to ``fds`` so the caller can close them.
    """
    api = _ioctl(libc, kvm_fd, KVM_GET_API_VERSION, None, "KVM_GET_API_VERSION")
    if api != KVM_API_VERSION:
        raise _ProbeStop("KVM_GET_API_VERSION", f"API version {api}, expected {KVM_API_VERSION}")
    vm_fd = _ioctl(libc, kvm_fd, KVM_CREATE_VM, ctypes.c_ulong(0), "KVM_CREATE_VM")
    fds.append(vm_fd)

    guest_memory.write(GUEST_CODE)
    host_addr = ctypes.addressof(ctypes.c_char.from_buffer(guest_memory))
    region = KvmUserspaceMemoryRegion(
        slot=0, flags=0, guest_phys_addr=GUEST_CODE_ADDR,
        memory_size=mmap.PAGESIZE, userspace_addr=host_addr,
    )
    _ioctl(libc, vm_fd, KVM_SET_USER_MEMORY_REGION, ctypes.byref(region),
           "KVM_SET_USER_MEMORY_REGION")
    vcpu_fd = _ioctl(libc, vm_fd, KVM_CREATE_VCPU, ctypes.c_ulong(0), "KVM_CREATE_VCPU")
    fds.append(vcpu_fd)
    return vcpu_fd


def _point_vcpu_at_code(libc: ctypes.CDLL, vcpu_fd: int) -> None:
    """Real mode, CS base 0, rip at the code; rflags bit 1 is reserved and must be set."""
    sregs = KvmSregs()
    _ioctl(libc, vcpu_fd, KVM_GET_SREGS, ctypes.byref(sregs), "KVM_GET_SREGS")
    sregs.cs.base = 0
    sregs.cs.selector = 0
    _ioctl(libc, vcpu_fd, KVM_SET_SREGS, ctypes.byref(sregs), "KVM_SET_SREGS")
    regs = KvmRegs()
    regs.rip = GUEST_CODE_ADDR
    regs.rflags = 0x2
    _ioctl(libc, vcpu_fd, KVM_SET_REGS, ctypes.byref(regs), "KVM_SET_REGS")


def _run_until_halt(libc: ctypes.CDLL, vcpu_fd: int, run: mmap.mmap) -> list[str]:
    """KVM_RUN until HLT; return the exits seen, e.g. ['IO out port 0x10 value 0x42', 'HLT']."""
    exits: list[str] = []
    for _ in range(MAX_EXITS):
        _ioctl(libc, vcpu_fd, KVM_RUN, None, "KVM_RUN")
        exits.append(_describe_exit(run))
        if exits[-1] == "HLT":
            return exits
        if not exits[-1].startswith("IO "):
            raise _ProbeStop("KVM_RUN", f"unexpected exit {exits[-1]} after {exits[:-1]}")
    raise _ProbeStop("KVM_RUN", f"no HLT after {MAX_EXITS} exits: {exits}")


def _describe_exit(run: mmap.mmap) -> str:
    """Read kvm_run's exit: 'HLT', or 'IO out port 0x10 value 0x42' for a port write."""
    head = KvmRunHead.from_buffer_copy(run[: ctypes.sizeof(KvmRunHead)])
    if head.exit_reason == KVM_EXIT_INTERNAL_ERROR:
        # The union then starts with a u32 suberror; 1 is KVM's instruction emulator giving up.
        suberror = int.from_bytes(run[32:36], sys.byteorder)
        return "INTERNAL_ERROR (emulation failure)" if suberror == 1 else (
            f"INTERNAL_ERROR (suberror {suberror})")
    if head.exit_reason != KVM_EXIT_IO:
        return EXIT_REASONS.get(head.exit_reason, f"exit {head.exit_reason}")
    io = head.io
    # The port's data lives inside the same mapping, data_offset bytes from its start.
    value = run[io.data_offset]
    direction = "out" if io.direction == KVM_EXIT_IO_OUT else "in"
    return f"IO {direction} port {io.port:#x} value {value:#x}"


def run_real_mode_guest() -> dict:
    """Run the real-mode guest in THIS process; return a JSON-able report.

    Call it only in a throw-away process (``probe_accelerator`` does): KVM_RUN
    may never return on a broken accelerator.
    """
    libc = _libc()
    libc.ioctl.restype = ctypes.c_int
    fds: list[int] = []
    maps: list[mmap.mmap] = []
    report: dict = {"stage": "open /dev/kvm", "exits": [], "guest_ran": False}
    try:
        kvm_fd = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        fds.append(kvm_fd)
        guest_memory = mmap.mmap(-1, mmap.PAGESIZE)
        maps.append(guest_memory)
        vcpu_fd = _set_up_real_mode_vm(libc, kvm_fd, guest_memory, fds)
        size = _ioctl(libc, kvm_fd, KVM_GET_VCPU_MMAP_SIZE, None, "KVM_GET_VCPU_MMAP_SIZE")
        run = mmap.mmap(vcpu_fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        maps.append(run)
        _point_vcpu_at_code(libc, vcpu_fd)
        exits = _run_until_halt(libc, vcpu_fd, run)
        report["exits"] = exits
        expected_io = f"IO out port {GUEST_PORT:#x} value {GUEST_VALUE:#x}"
        report["guest_ran"] = exits == [expected_io, "HLT"]
        report["stage"] = "done"
        report["detail"] = ", then ".join(exits)
    except _ProbeStop as stop:
        report["stage"] = stop.stage
        report["detail"] = stop.detail
    except OSError as err:
        report["stage"] = "open /dev/kvm" if not fds else "mmap"
        report["detail"] = f"{err.strerror} ({err.errno})"
    finally:
        for m in reversed(maps):
            m.close()
        for fd in reversed(fds):
            os.close(fd)
    return report


if __name__ == "__main__" and sys.argv[1:] == ["--real-mode-child"]:
    print(json.dumps(run_real_mode_guest()), flush=True)
