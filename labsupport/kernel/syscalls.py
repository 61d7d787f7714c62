"""The lab's one gateway to the kernel calls Python does not wrap.

Python 3.11 has no ``os.unshare``/``os.setns`` (they arrive in 3.12) and no
Python has mount, umount2, pivot_root, capset or bpf, so these are thin
ctypes calls into libc - through one handle, ``LIBC``, the only one the lab
opens. Each one turns a failing errno into a ``KernelError`` (a ``LabError``)
that names the call, the path and what the error usually means, so a learner
never sees a ctypes traceback. System calls that libc does not wrap are made
by number, and the numbers differ per architecture: ``number`` knows them for
x86_64 and aarch64 and says so plainly anywhere else.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import sys

from labsupport.kernel.errors import KernelError, LabError, describe_errno

#: The C library: the one handle every ctypes call of the lab goes through.
LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
#: mq_* live in librt (glibc folded them into libc in 2.34; librt still exports them).
LIBRT = ctypes.CDLL(ctypes.util.find_library("rt") or "librt.so.1", use_errno=True)

#: The system calls the lab makes by number (libc has no wrapper) or filters with seccomp, per
#: architecture: <asm/unistd_64.h> on x86_64, the generic table of <asm-generic/unistd.h> on
#: aarch64 (a call an architecture never had, such as iopl there, is simply absent).
#: tests/test_syscalls.py holds these to the kernel headers where they are installed.
SYSCALL_NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {
        "ptrace": 101, "uselib": 134, "ustat": 136, "sysfs": 139, "pivot_root": 155, "acct": 163,
        "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
        "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176,
        "quotactl": 179, "lookup_dcookie": 212, "clock_settime": 227, "mbind": 237,
        "set_mempolicy": 238, "get_mempolicy": 239, "kexec_load": 246, "add_key": 248,
        "request_key": 249, "keyctl": 250, "unshare": 272, "move_pages": 279,
        "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304,
        "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311,
        "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "clone": 56, "clone3": 435, "openat2": 437,
    },
    "aarch64": {
        "ptrace": 117, "pivot_root": 41, "acct": 89, "settimeofday": 170, "mount": 40,
        "umount2": 39, "swapon": 224, "swapoff": 225, "reboot": 142, "init_module": 105,
        "delete_module": 106, "quotactl": 60, "lookup_dcookie": 18, "clock_settime": 112,
        "mbind": 235, "set_mempolicy": 237, "get_mempolicy": 236, "kexec_load": 104,
        "add_key": 217, "request_key": 218, "keyctl": 219, "unshare": 97, "move_pages": 239,
        "perf_event_open": 241, "name_to_handle_at": 264, "open_by_handle_at": 265,
        "clock_adjtime": 266, "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271,
        "kcmp": 272, "finit_module": 273, "kexec_file_load": 294, "bpf": 280, "userfaultfd": 282,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "clone": 220, "clone3": 435, "openat2": 437,
    },
}
#: What seccomp reports as a call's architecture (<linux/audit.h>).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def machine() -> str:
    """This machine's architecture, if the lab knows its numbers; one plain sentence if not."""
    name = platform.machine()
    if name not in SYSCALL_NUMBERS:
        raise LabError(f"The lab knows system call numbers for {' and '.join(SYSCALL_NUMBERS)}, "
                       f"not for {name}: run it on one of those.")
    return name


def number(call: str, arch: str | None = None) -> int:
    """The number of a system call on this machine's architecture - never a wrong one."""
    return SYSCALL_NUMBERS[arch or machine()][call]

# Namespace flags, as in <linux/sched.h>.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: The names the lab uses for namespaces, as in /proc/PID/ns/.
NAMESPACE_FLAGS: dict[str, int] = {
    "mnt": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
}

# mount(2) flags, as in <sys/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

# umount2(2) flags.
MNT_DETACH = 2

# prctl(2) options used by the runner.
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


# What an errno usually means for each call, in a learner's words.
_HINTS: dict[tuple[str, int], str] = {
    ("unshare", errno.EPERM): "creating namespaces needs root (CAP_SYS_ADMIN), and no seccomp "
    "filter that forbids it",
    ("unshare", errno.EINVAL): "a user namespace cannot be made by a multi-threaded "
    "process such as a Jupyter kernel; the lab does this in a child process",
    ("unshare", errno.ENOSPC): "the limit in /proc/sys/user/max_*_namespaces is reached",
    ("setns", errno.EBADF): "the namespace file descriptor is not open",
    ("setns", errno.EINVAL): "the file is not a namespace, or not of the kind asked for",
    ("prctl(PR_SET_SECCOMP)", errno.EACCES): "a seccomp filter needs no_new_privs set first "
    "(or CAP_SYS_ADMIN)",
    ("prctl(PR_SET_SECCOMP)", errno.EINVAL): "the filter is malformed, or this kernel was built "
    "without seccomp filters",
    ("mount", errno.ENOENT): "the mount point or the source does not exist",
    ("mount", errno.ENODEV): "this kernel does not know that filesystem type",
    ("mount", errno.EBUSY): "something is already mounted there or it is in use",
    ("mount", errno.EINVAL): "the flags do not fit this mount (is the target a mount point?)",
    ("mount", errno.EPERM): "mounting needs root (CAP_SYS_ADMIN in this mount namespace)",
    ("umount2", errno.EINVAL): "that path is not a mount point",
    ("umount2", errno.EBUSY): "a process is still using it; MNT_DETACH unmounts lazily",
    ("umount2", errno.ENOENT): "the path does not exist",
    ("pivot_root", errno.EINVAL): "the new root must be a mount point in a private mount "
    "namespace, and the old root must sit below it",
    ("pivot_root", errno.EBUSY): "the new or old root is busy (already the root?)",
    ("pivot_root", errno.ENOENT): "the new root or the put-old directory does not exist",
    ("sethostname", errno.EPERM): "changing the hostname needs root in this UTS namespace",
    ("sethostname", errno.EINVAL): "a hostname is at most 64 bytes",
    ("chroot", errno.ENOENT): "the new root directory does not exist",
}


def fail(call: str, err: int, subject: str = "", hint: str | None = None) -> KernelError:
    """The one-sentence error for a failed call: what, on what, why, and what it usually means."""
    hint = hint or _HINTS.get((call, err))
    where = f" on {subject}" if subject else ""
    text = f"{call}{where} failed: {describe_errno(err)}"
    return KernelError(f"{text} - {hint}." if hint else f"{text}.", call, err)


def check(result: int, call: str, subject: str = "") -> int:
    """A libc call's result, or - when it is -1 - the KernelError its errno stands for."""
    if result == -1:
        raise fail(call, ctypes.get_errno(), subject)
    return result


def _b(path: str | os.PathLike | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def namespace_flags(names: "list[str] | tuple[str, ...] | set[str] | frozenset[str]") -> int:
    """Turn ``["uts", "pid"]`` into the CLONE_NEW* bit mask, refusing unknown names."""
    flags = 0
    for name in names:
        if name not in NAMESPACE_FLAGS:
            known = ", ".join(NAMESPACE_FLAGS)
            raise LabError(f"Unknown namespace {name!r}: choose from {known}.")
        flags |= NAMESPACE_FLAGS[name]
    return flags


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (see unshare(2))."""
    if hasattr(os, "unshare"):  # Python 3.12+
        try:
            os.unshare(flags)
        except OSError as err:
            raise fail("unshare", err.errno or 0, "") from None
        return
    check(LIBC.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0, subject: str = "") -> None:
    """Join the namespace that ``fd`` (an open /proc/PID/ns/* file) refers to."""
    if hasattr(os, "setns"):  # Python 3.12+
        try:
            os.setns(fd, nstype)
        except OSError as err:
            raise fail("setns", err.errno or 0, subject) from None
        return
    check(LIBC.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", subject)


def mount(source: str | os.PathLike | None, target: str | os.PathLike,
          fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    """mount(2): attach a filesystem, or change a mount's flags or propagation."""
    result = LIBC.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags),
                         None if data is None else data.encode())
    check(result, "mount", os.fspath(target))


def umount(target: str | os.PathLike, flags: int = 0) -> None:
    """umount2(2): detach a mount (``MNT_DETACH`` for a lazy unmount)."""
    check(LIBC.umount2(_b(target), ctypes.c_int(flags)), "umount2", os.fspath(target))


def pivot_root(new_root: str | os.PathLike, put_old: str | os.PathLike) -> None:
    """pivot_root(2): make ``new_root`` the root and move the old one to ``put_old``.

    Unlike chroot it changes the root of the whole mount namespace, so the old
    root can then be unmounted and nothing is left to escape back to.
    """
    result = LIBC.syscall(ctypes.c_long(number("pivot_root")), _b(new_root), _b(put_old))
    check(result, "pivot_root", os.fspath(new_root))


def sethostname(name: str) -> None:
    """sethostname(2): set the hostname of the current UTS namespace."""
    raw = name.encode()
    check(LIBC.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", name)


def chroot(path: str | os.PathLike) -> None:
    """chroot(2) with the lab's error message (``os.chroot`` would raise OSError)."""
    try:
        os.chroot(path)
    except OSError as err:
        raise fail("chroot", err.errno or 0, os.fspath(path)) from None


def set_parent_death_signal(signum: int) -> None:
    """Ask the kernel to send ``signum`` to us when our parent dies.

    This is how a child of a Jupyter kernel dies with it even on SIGKILL.
    """
    check(LIBC.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signum), 0, 0, 0), "prctl")


def set_dumpable(dumpable: bool = True) -> None:
    """Make this process dumpable (or not): who may open its /proc/PID files and ptrace it.

    A process that changed its uid (root dropping to an ordinary user) is made
    non-dumpable, and its /proc/self/uid_map then belongs to the host's root:
    it could not write its own user namespace's maps; a forked copy that changed
    uid has to ask to be dumpable again. The other way round, a helper about to
    join a container makes itself non-dumpable first: then root inside cannot
    open its /proc/PID/fd or /proc/PID/mem (CVE-2019-5736 went through /proc).
    """
    check(LIBC.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(1 if dumpable else 0), 0, 0, 0), "prctl")


def set_process_name(name: str) -> None:
    """Name this process as ps and top show it (its comm, at most 15 bytes).

    A forked Python keeps its parent's name; the lab's supervisors rename
    themselves so a learner running ``ps`` sees what they are.
    """
    check(LIBC.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0), "prctl")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def set_seccomp_filter(program: bytes) -> None:
    """Install a seccomp filter: ``program`` is classic BPF, 8 bytes per instruction.

    Needs no_new_privs (or CAP_SYS_ADMIN); it binds this thread and every
    process it starts from now on, and can never be taken off.
    """
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    check(LIBC.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog), 0, 0),
           "prctl(PR_SET_SECCOMP)")


def set_no_new_privs() -> None:
    """Forbid gaining privileges through exec (setuid binaries, file caps)."""
    check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0), "prctl")


# -- capabilities ----------------------------------------------------------------

PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAP_VERSION_3 = 0x20080522


def prctl(option: int, arg: int = 0, arg3: int = 0, what: str = "prctl") -> None:
    """prctl(2) with whole-number arguments (keep capabilities, drop one from the bounding set ...)."""
    check(LIBC.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), 0, 0), what)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2): this thread's three capability sets, as 64-bit masks (two 32-bit words each)."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = effective >> (32 * i) & 0xFFFFFFFF
        data[i].permitted = permitted >> (32 * i) & 0xFFFFFFFF
        data[i].inheritable = inheritable >> (32 * i) & 0xFFFFFFFF
    check(LIBC.capset(ctypes.byref(header), data), "capset")


# -- bpf -------------------------------------------------------------------------

def bpf(command: int, attr: ctypes.Array, size: int) -> int:
    """bpf(2): ``attr`` is the union bpf_attr, packed by the caller; returns what the call returns."""
    result = LIBC.syscall(ctypes.c_long(number("bpf")), ctypes.c_int(command), attr, ctypes.c_uint(size))
    if result < 0:
        raise fail("bpf", ctypes.get_errno())
    return result


# -- paths inside a root that is not ours ----------------------------------------

#: openat2's resolve flags (<linux/openat2.h>).
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open ``path`` below ``dirfd`` with the kernel resolving it under ``resolve``'s
    rules - with RESOLVE_IN_ROOT, "/" and ".." and every symbolic link stop at ``dirfd``."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = LIBC.syscall(ctypes.c_long(number("openat2")), ctypes.c_int(dirfd), _b(path),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    return check(fd, "openat2", path)


_IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def _directory_in_root(root_fd: int, parent: str) -> int:
    """An O_PATH descriptor of ``parent`` inside the root, each missing directory made by name."""
    where = root_fd
    walked = ""
    for part in [p for p in parent.split("/") if p]:
        walked = f"{walked}/{part}"
        try:
            found = openat2(root_fd, walked, os.O_PATH | os.O_DIRECTORY, 0, _IN_ROOT)
        except KernelError as err:
            if err.errno != errno.ENOENT:
                raise
            os.mkdir(part, 0o755, dir_fd=where)  # one name in its parent: never follows a link
            found = openat2(root_fd, walked, os.O_PATH | os.O_DIRECTORY, 0, _IN_ROOT)
        if where != root_fd:
            os.close(where)
        where = found
    return where


def open_in_root(root: str | os.PathLike, path: str, flags: int, mode: int = 0o644,
                 make: str | None = None) -> int:
    """Open ``path`` as the container sees it, the kernel keeping every step inside ``root``.

    ``make`` is "dir" or "file" to create the last component (and its parents) if missing.
    A descriptor is what the caller then uses - to write, or to mount on through
    /proc/self/fd/N - so no link swapped in afterwards can redirect it.
    """
    inner = path.strip("/")
    parent, _, name = inner.rpartition("/")
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    where = root_fd
    try:
        where = _directory_in_root(root_fd, parent) if (make and parent) else root_fd
        if make == "dir" and name:
            try:
                os.mkdir(name, 0o755, dir_fd=where)
            except FileExistsError:
                pass
        elif make == "file" and name:
            try:
                os.close(openat2(root_fd, inner, os.O_WRONLY | os.O_CREAT, mode, _IN_ROOT))
            except KernelError as err:
                if err.errno != errno.EISDIR:
                    raise
        # openat2 refuses a mode unless it may create (classic open ignored it)
        return openat2(root_fd, inner or ".", flags, mode if flags & os.O_CREAT else 0, _IN_ROOT)
    finally:
        if where != root_fd:
            os.close(where)
        os.close(root_fd)


def write_in_root(root: str | os.PathLike, path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` (as the container sees it, e.g. /etc/hosts) in a root someone else built.

    A plain write from the host would follow the root's symbolic links: an image whose
    /etc/hosts points at the host's /etc/shadow would have real root overwrite that. Here
    the kernel resolves every component inside ``root`` (a link to /etc/shadow means the
    root's own /etc/shadow), and a missing parent directory is made by name, in its parent.
    """
    parent = path.strip("/").rpartition("/")[0]
    if parent:
        os.close(open_in_root(root, parent, os.O_PATH | os.O_DIRECTORY, make="dir"))
    fd = open_in_root(root, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


# -- network devices ----------------------------------------------------------------

IFF_UP = 0x1
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914  # the same on every architecture the lab knows


def loopback_up() -> None:
    """Switch on lo in the calling process's own network namespace, without netlink.

    For a container's first process, already in its namespace and its new root:
    one ioctl on a socket (what ``ifconfig lo up`` does) - no pyroute2, no thread,
    and no module to import from a root that has no Python.
    """
    sock = LIBC.socket(2, 2, 0)  # AF_INET, SOCK_DGRAM: any socket will do for the ioctl
    check(sock, "socket", "AF_INET")
    try:
        request = ctypes.create_string_buffer(b"lo", 40)  # struct ifreq: name[16], then flags
        check(LIBC.ioctl(sock, SIOCGIFFLAGS, request), "ioctl", "SIOCGIFFLAGS lo")
        flags = int.from_bytes(request.raw[16:18], sys.byteorder) | IFF_UP
        request[16:18] = flags.to_bytes(2, sys.byteorder)
        check(LIBC.ioctl(sock, SIOCSIFFLAGS, request), "ioctl", "SIOCSIFFLAGS lo")
    finally:
        os.close(sock)
