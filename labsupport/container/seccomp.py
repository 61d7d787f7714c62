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

    load the architecture    -> not this machine's (x86_64, aarch64)? kill the process
    load the call's number   -> on x86_64, an x32 call (bit 30 set)? EPERM
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

#: The calls a profile may deny: every one the gateway knows a number for, on some architecture
#: (labsupport.kernel.syscalls.SYSCALL_NUMBERS); clone and clone3 the filter treats on its own.
SYSCALLS = tuple(sorted({name for table in syscalls.SYSCALL_NUMBERS.values() for name in table}
                        - {"clone", "clone3", "openat2"}))
#: clone's flags that make a new namespace (<linux/sched.h>): a container may make none.
CLONE_NAMESPACE_FLAGS = (syscalls.CLONE_NEWNS | syscalls.CLONE_NEWCGROUP | syscalls.CLONE_NEWUTS
                         | syscalls.CLONE_NEWIPC | syscalls.CLONE_NEWUSER | syscalls.CLONE_NEWPID
                         | syscalls.CLONE_NEWNET)

# Classic BPF opcodes and seccomp's return values (<linux/filter.h>, <linux/seccomp.h>).
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_X32_SYSCALL_BIT = 0x40000000  # x86_64's other ABI: its calls carry this bit
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
DEFAULT = Profile(SYSCALLS)


def _instruction(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)  # struct sock_filter


def program(profile: Profile, arch: str | None = None) -> bytes:
    """The BPF program of ``profile`` for this machine's architecture (or ``arch``), as the bytes
    the kernel takes. A call from another architecture's ABI kills the process: its numbers
    would mean other calls."""
    arch = arch or syscalls.machine()
    numbers = syscalls.SYSCALL_NUMBERS[arch]
    fail = _instruction(_RET_K, _RET_ERRNO | profile.errno)
    code = [_instruction(_LD_W_ABS, _OFFSET_ARCH),
            _instruction(_JEQ_K, syscalls.AUDIT_ARCH[arch], jt=1),
            _instruction(_RET_K, _RET_KILL_PROCESS),
            _instruction(_LD_W_ABS, _OFFSET_NR)]
    if arch == "x86_64":
        code += [_instruction(_JGE_K, _X32_SYSCALL_BIT, jf=1), fail]
    if profile.no_new_namespaces:
        code += [_instruction(_JEQ_K, numbers["clone3"], jf=1),
                 _instruction(_RET_K, _RET_ERRNO | errno.ENOSYS),
                 _instruction(_JEQ_K, numbers["clone"], jf=3),  # not clone: on to the list
                 _instruction(_LD_W_ABS, _OFFSET_ARG0_LOW),     # clone's flags
                 _instruction(_JSET_K, CLONE_NAMESPACE_FLAGS, jf=1), fail,
                 _instruction(_LD_W_ABS, _OFFSET_NR)]          # the number again, for the list
    for name in profile.denied:
        if name in numbers:  # a call this architecture never had needs no denying
            code += [_instruction(_JEQ_K, numbers[name], jf=1), fail]
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
    arch = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[syscalls.machine()]
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch],
            "syscalls": [{"names": list(profile.denied), "action": "SCMP_ACT_ERRNO",
                          "errnoRet": profile.errno}]}
