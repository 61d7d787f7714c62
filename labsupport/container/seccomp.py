"""seccomp: a filter the kernel runs on every system call a process makes.

Capabilities decide what root inside a container *may* do; seccomp takes
whole system calls away, so a bug in one of them (a kernel's largest attack
surface) cannot be reached at all. Docker applies a default profile to every
container; the lab's runtime does the same with a short deny-list: the calls
a container has no business making - new namespaces (``unshare``, ``setns``,
and ``clone`` asking for one), mounts, kernel modules, keyrings, ``bpf``,
``io_uring``, ``ptrace``, the clock, reboot.

Two calls need more than a yes or no. ``clone`` makes threads and processes
(every program needs it) but also new namespaces: the filter reads its flags
argument and refuses only the CLONE_NEW* bits. ``clone3`` passes its flags in
memory the filter cannot read, so - as Docker does - it fails with ENOSYS,
"no such call", and the C library falls back to ``clone``.

The filter is a small classic-BPF program, built here instruction by
instruction so a learner can read it::

    load the architecture    -> not x86_64? kill the process
    load the call's number   -> an x32 call (bit 30 set)? EPERM
    clone3?                  -> ENOSYS
    clone?                   -> load its flags: any CLONE_NEW* bit? EPERM
    for each denied call     -> this number? EPERM
    otherwise                -> allow

It is installed with ``prctl(PR_SET_SECCOMP)`` after ``no_new_privs``, the
last step before exec, and stays for the process and all its children.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError

#: x86_64 numbers of the calls a profile may deny (from <asm/unistd_64.h>; they never change).
SYSCALLS = {
    "ptrace": 101, "uselib": 134, "ustat": 136, "sysfs": 139, "pivot_root": 155, "acct": 163,
    "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
    "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176,
    "quotactl": 179, "lookup_dcookie": 212, "clock_settime": 227, "mbind": 237,
    "set_mempolicy": 238, "get_mempolicy": 239, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "move_pages": 279, "perf_event_open": 298,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
}
#: Calls the filter looks at more closely than by number (x86_64).
NR_CLONE, NR_CLONE3 = 56, 435
#: clone's flags that make a new namespace (<linux/sched.h>): a container may make none.
CLONE_NAMESPACE_FLAGS = (syscalls.CLONE_NEWNS | syscalls.CLONE_NEWCGROUP | syscalls.CLONE_NEWUTS
                         | syscalls.CLONE_NEWIPC | syscalls.CLONE_NEWUSER | syscalls.CLONE_NEWPID
                         | syscalls.CLONE_NEWNET)

# Classic BPF opcodes and seccomp's return values (<linux/filter.h>, <linux/seccomp.h>).
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0_LOW = 0, 4, 16  # the low half of args[0] (little-endian)


@dataclass(frozen=True)
class Profile:
    """Which calls fail, and with which errno; every other call is allowed."""

    denied: tuple[str, ...]
    errno: int = errno.EPERM
    #: Refuse clone's CLONE_NEW* flags, and clone3 with ENOSYS (a profile without namespaces).
    no_new_namespaces: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.errno < 4096:
            # SECCOMP_RET_ERRNO with 0 makes the call "succeed" without running: a deny rule
            # that reads as an allow. Above 4095 the kernel keeps only the low bits.
            raise LabError(f"A seccomp errno of {self.errno} would not refuse the call: use one "
                           "from 1 to 4095, such as 1 (EPERM).")
        unknown = [name for name in self.denied if name not in SYSCALLS]
        if unknown:
            raise LabError(f"The seccomp profile names {', '.join(unknown)}, which this lab cannot "
                           f"deny (it knows: {', '.join(sorted(SYSCALLS))}).")


#: The lab's default, after Docker's: what a container never needs, denied with EPERM.
DEFAULT = Profile(tuple(SYSCALLS))


def _instruction(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)  # struct sock_filter


def program(profile: Profile) -> bytes:
    """The BPF program of ``profile``, as the bytes the kernel takes."""
    fail = _instruction(_RET_K, _RET_ERRNO | profile.errno)
    code = [_instruction(_LD_W_ABS, _OFFSET_ARCH),
            _instruction(_JEQ_K, _AUDIT_ARCH_X86_64, jt=1),
            _instruction(_RET_K, _RET_KILL_PROCESS),
            _instruction(_LD_W_ABS, _OFFSET_NR),
            _instruction(_JGE_K, _X32_SYSCALL_BIT, jf=1), fail]
    if profile.no_new_namespaces:
        code += [_instruction(_JEQ_K, NR_CLONE3, jf=1),
                 _instruction(_RET_K, _RET_ERRNO | errno.ENOSYS),
                 _instruction(_JEQ_K, NR_CLONE, jf=3),           # not clone: on to the list
                 _instruction(_LD_W_ABS, _OFFSET_ARG0_LOW),      # clone's flags
                 _instruction(_JSET_K, CLONE_NAMESPACE_FLAGS, jf=1), fail,
                 _instruction(_LD_W_ABS, _OFFSET_NR)]           # the number again, for the list
    for name in profile.denied:
        code += [_instruction(_JEQ_K, SYSCALLS[name], jf=1), fail]
    code.append(_instruction(_RET_K, _RET_ALLOW))
    return b"".join(code)


def install(profile: Profile) -> None:
    """Filter every later call of this (single-threaded) process and its children.

    The kernel wants no_new_privs first: a filter must not be able to fool
    a setuid program into misbehaving.
    """
    syscalls.set_seccomp_filter(program(profile))


def mode(pid: int | str = "self") -> str:
    """What /proc/PID/status says: 'disabled', 'strict' or 'filter (N filters)'."""
    fields = dict(line.split(":\t", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    kind = {"0": "disabled", "1": "strict", "2": "filter"}.get(fields.get("Seccomp", "").strip(), "unknown")
    count = fields.get("Seccomp_filters", "").strip()
    return f"{kind} ({count} filter{'s' if count != '1' else ''})" if kind == "filter" and count else kind


def from_oci(data: Any) -> Profile:
    """``linux.seccomp`` of a config.json, in the form a deny-list takes; anything else
    (an allow-list, argument rules, other actions) is refused by name."""
    if not isinstance(data, dict):
        raise LabError("config.json field linux.seccomp must be an object.")
    if data.get("defaultAction", "SCMP_ACT_ALLOW") != "SCMP_ACT_ALLOW":
        raise LabError(f"linux.seccomp.defaultAction {data.get('defaultAction')!r} is an allow-list "
                       "(as Docker's own profile): this lab runtime supports deny-lists only - "
                       "defaultAction SCMP_ACT_ALLOW with SCMP_ACT_ERRNO rules - or run it under runc.")
    names: list[str] = []
    codes = set()
    for rule in data.get("syscalls", []):
        if not isinstance(rule, dict) or rule.get("action") != "SCMP_ACT_ERRNO" or rule.get("args"):
            raise LabError("Each linux.seccomp.syscalls rule must be {\"names\": [...], \"action\": "
                           "\"SCMP_ACT_ERRNO\"} without args: this lab runtime supports only that.")
        names += [str(n) for n in rule.get("names", [])]
        code = rule.get("errnoRet", errno.EPERM)
        if not isinstance(code, int) or isinstance(code, bool):
            raise LabError("linux.seccomp.syscalls[].errnoRet must be a whole number such as 1 (EPERM).")
        codes.add(code)
    if len(codes) > 1:
        raise LabError("The linux.seccomp rules ask for different errnoRet values: use one for all.")
    return Profile(tuple(dict.fromkeys(names)), codes.pop() if codes else errno.EPERM,
                   no_new_namespaces=False)


#: The annotation that carries what a deny-list cannot say: clone's namespace flags refused, clone3
#: ENOSYS. OCI rules compare arguments to values; "any of these bits set" is not one of their tests.
NO_NEW_NAMESPACES = "org.labsupport.seccomp.no-new-namespaces"


def to_oci(profile: Profile) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": list(profile.denied), "action": "SCMP_ACT_ERRNO",
                          "errnoRet": profile.errno}]}
