"""cgroup v2 device control: a hand-assembled eBPF program, loaded with bpf(2).

cgroup v2 dropped v1's ``devices.allow``/``devices.deny`` files. Instead a
program of type ``BPF_PROG_TYPE_CGROUP_DEVICE`` is attached to the group;
the kernel runs it whenever a process in the group opens (or mknods) a
device node, passing a small context::

    struct bpf_cgroup_dev_ctx {
        __u32 access_type;   /* (access << 16) | type: access r=2 w=4 m=1; type block=1 char=2 */
        __u32 major;
        __u32 minor;
    };

and the program answers 1 (allow) or 0 (deny -> EPERM). runc and systemd
generate such programs from a container's device list; the lab does the same
from a ``DevicePolicy``, writing the instructions out by hand - each is eight
bytes: opcode, two registers, a jump offset and a 32-bit constant.

The program is loaded (``BPF_PROG_LOAD``, license "GPL") and attached to the
group's directory (``BPF_PROG_ATTACH``, type ``BPF_CGROUP_DEVICE``). The
group then holds it: the lab closes its file descriptor, and removing the
group detaches and frees the program. Attaching again without flags replaces
the previous program, so every policy change attaches a fresh one.

Python has no bpf(2) wrapper: the call comes from the lab's kernel gateway
(labsupport.kernel.syscalls); the program's bytes are assembled here.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from labsupport.cgroups.devices import DevicePolicy, DeviceRule
from labsupport.kernel import syscalls
from labsupport.kernel.errors import KernelError, LabError, describe_errno

# bpf(2) commands, program and attach types (include/uapi/linux/bpf.h).
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
_ATTR_SIZE = 128  # enough for the fields used; the kernel wants the rest zero

# Context fields and their constants.
DEV_BLOCK, DEV_CHAR = 1, 2
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}
_KIND = {"b": DEV_BLOCK, "c": DEV_CHAR}

# Opcodes: class | operation | source (K = constant, X = register).
_LDX_W = 0x61       # dst = *(u32 *)(src + off)
_MOV_K = 0xB7       # dst = imm            (64-bit ALU)
_MOV_X = 0xBF       # dst = src
_AND_K = 0x57       # dst &= imm
_RSH_K = 0x77       # dst >>= imm
_JEQ_K = 0x15       # if dst == imm: pc += off
_JNE_K = 0x55       # if dst != imm: pc += off
_EXIT = 0x95        # return r0

R0, R1, R2, R3, R4, R5, R6 = range(7)


@dataclass(frozen=True)
class Insn:
    """One eBPF instruction, with the line of assembly a learner reads."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    text: str = ""

    def encode(self) -> bytes:
        """struct bpf_insn: u8 code; u8 dst:4, src:4; s16 off; s32 imm."""
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)


def _rule_block(rule: DeviceRule, default_allow: bool) -> list[Insn]:
    """Instructions that return the exception's answer when ``rule`` matches, else fall through.

    Every jump goes to the end of the block (the next rule); its offset is
    counted from the instruction after the jump, so it is filled in last.
    """
    checks: list[tuple[int, int, int, str]] = []  # (opcode, register, constant, text)
    checks.append((_JNE_K, R2, _KIND[rule.kind], f"type != {rule.kind}"))
    if rule.major is not None:
        checks.append((_JNE_K, R4, rule.major, f"major != {rule.major}"))
    if rule.minor is not None:
        checks.append((_JNE_K, R5, rule.minor, f"minor != {rule.minor}"))
    bits = sum(ACCESS_BITS[a] for a in rule.access)
    block: list[Insn] = []
    for code, reg, value, text in checks:
        block.append(Insn(code, reg, 0, 0, value, f"if {text} goto next rule"))
    block.append(Insn(_MOV_X, R6, R3, text="r6 = access asked for"))
    if default_allow:
        # A deny exception matches if any asked-for access is in it (as v1 does).
        block.append(Insn(_AND_K, R6, imm=bits, text=f"r6 &= {bits} ({rule.access})"))
        block.append(Insn(_JEQ_K, R6, imm=0, text="if none of it is denied goto next rule"))
    else:
        # An allow exception must cover every access asked for.
        other = 7 & ~bits
        block.append(Insn(_AND_K, R6, imm=other, text=f"r6 &= {other} (not {rule.access})"))
        block.append(Insn(_JNE_K, R6, imm=0, text="if more is asked goto next rule"))
    answer = 0 if default_allow else 1
    block.append(Insn(_MOV_K, R0, imm=answer, text=f"r0 = {answer} ({'deny' if answer == 0 else 'allow'})"))
    block.append(Insn(_EXIT, text="return r0"))
    end = len(block)
    return [Insn(i.code, i.dst, i.src, end - n - 1, i.imm, i.text)
            if i.code in (_JEQ_K, _JNE_K) else i for n, i in enumerate(block)]


def assemble(policy: DevicePolicy) -> list[Insn]:
    """The whole program for a policy: read the context, one block per exception, the default."""
    program = [
        Insn(_LDX_W, R2, R1, 0, text="r2 = ctx->access_type"),
        Insn(_MOV_X, R3, R2, text="r3 = r2"),
        Insn(_AND_K, R2, imm=0xFFFF, text="r2 &= 0xffff (device type)"),
        Insn(_RSH_K, R3, imm=16, text="r3 >>= 16 (access: r=2 w=4 m=1)"),
        Insn(_LDX_W, R4, R1, 4, text="r4 = ctx->major"),
        Insn(_LDX_W, R5, R1, 8, text="r5 = ctx->minor"),
    ]
    for rule in policy.exceptions:
        program += _rule_block(rule, policy.default_allow)
    answer = 1 if policy.default_allow else 0
    program.append(Insn(_MOV_K, R0, imm=answer, text=f"r0 = {answer} (the default)"))
    program.append(Insn(_EXIT, text="return r0"))
    return program


def listing(program: list[Insn]) -> str:
    """The program as numbered lines of assembly with the raw bytes beside them."""
    return "\n".join(f"{n:3d}: {insn.encode().hex(' ')}   {insn.text}"
                     for n, insn in enumerate(program))


# -- the system call -----------------------------------------------------------

def _bpf(command: int, attr: ctypes.Array) -> int:
    return syscalls.bpf(command, attr, _ATTR_SIZE)


def load(program: list[Insn]) -> int:
    """BPF_PROG_LOAD: the verifier checks the program; returns its file descriptor."""
    code = ctypes.create_string_buffer(b"".join(i.encode() for i in program))
    license_text = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(16384)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(program),
                     ctypes.addressof(code), ctypes.addressof(license_text),
                     1, len(log), ctypes.addressof(log))
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except KernelError as err:
        verdict = log.value.decode(errors="replace").strip().splitlines()
        why = f" - the verifier said: {verdict[-1]}" if verdict else ""
        hint = " (loading BPF needs root: CAP_BPF and CAP_SYS_ADMIN)" if err.errno == errno.EPERM else ""
        raise LabError(f"The kernel refused the device program: {describe_errno(err.errno)}"
                       f"{why}{hint}.") from None


def attach(group: Path, program_fd: int) -> None:
    """BPF_PROG_ATTACH the program to a v2 group, replacing the one attached before."""
    fd = os.open(group, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        # target_fd, attach_bpf_fd, attach_type, attach_flags (0: one program, replaceable)
        struct.pack_into("<IIII", attr, 0, fd, program_fd, BPF_CGROUP_DEVICE, 0)
        _bpf(BPF_PROG_ATTACH, attr)
    except KernelError as err:
        raise LabError(f"Cannot attach the device program to {group}: "
                       f"{describe_errno(err.errno)} - is it a cgroup v2 directory?") from None
    finally:
        os.close(fd)


def attached_programs(group: Path) -> list[int]:
    """BPF_PROG_QUERY: the IDs of device programs attached to the group (what bpftool shows)."""
    fd = os.open(group, os.O_RDONLY | os.O_DIRECTORY)
    ids = (ctypes.c_uint32 * 8)()
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    # target_fd, attach_type, query_flags, attach_flags (out), prog_ids, prog_cnt (in/out)
    struct.pack_into("<IIIIQI", attr, 0, fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), len(ids))
    try:
        _bpf(BPF_PROG_QUERY, attr)
    except KernelError as err:
        raise LabError(f"Cannot list the programs of {group}: {describe_errno(err.errno)}.") from None
    finally:
        os.close(fd)
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:count])


def apply(group: Path, policy: DevicePolicy) -> None:
    """Assemble, load and attach the policy's program."""
    fd = load(assemble(policy))
    try:
        attach(group, fd)
    finally:
        os.close(fd)  # the group keeps the program alive from here on
