"""What a container's first process does to itself after pivot_root, before exec.

labsupport.process has already made the namespaces, set propagation, mounted
/proc and the bundle's mounts in the new root, and pivoted into it (old root
detached). What is left is what runc adds on top, in this order - each step
needs the rights the next one drops:

    /sys (read-only) -> a minimal /dev -> maskedPaths -> readonlyPaths
    -> read-only root (if asked) -> user -> capabilities -> no_new_privs
    -> seccomp -> exec

Capabilities have no wrapper in the standard library; capset and prctl are
called here through ctypes, the one place in the lab that changes them.
"""
from __future__ import annotations

import ctypes
import os
import stat
import sys
from pathlib import Path
from typing import Sequence

from labsupport import ownership
from labsupport.container import seccomp
from labsupport.container.spec import Spec
from labsupport.kernel import syscalls

_libc = ctypes.CDLL(None, use_errno=True)

CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
                "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
                "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
                "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
                "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
                "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
                "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")
_PR_CAPBSET_DROP = 24
_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAP_VERSION_3 = 0x20080522

#: The device nodes runc creates: (name, char major, minor). Nothing that reaches hardware.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
           ("tty", 5, 0))
_MS_NOATIME = 1024


def capability_mask(names: Sequence[str]) -> int:
    """The bit mask of capability names (with or without the CAP_ prefix)."""
    mask = 0
    for name in names:
        short = name.upper().removeprefix("CAP_")
        if short not in CAPABILITIES:
            raise ValueError(f"unknown capability {name}")
        mask |= 1 << CAPABILITIES.index(short)
    return mask


def capability_names(mask: int) -> list[str]:
    return [f"CAP_{name}" for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]


def _prctl(option: int, arg: int, arg3: int = 0) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities(keep: int) -> None:
    """Bounding set first (PR_CAPBSET_DROP needs CAP_SETPCAP, which we still hold), ambient
    cleared, then effective/permitted/inheritable set to ``keep`` with one capset."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for bit in range(last + 1):
        if not keep >> bit & 1:
            _prctl(_PR_CAPBSET_DROP, bit)
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        word = keep >> (32 * i) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = data[i].inheritable = word
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _mount_sys() -> None:
    # A sysfs is mounted for the container's own network namespace; read-only as runc does.
    Path("/sys").mkdir(exist_ok=True)
    syscalls.mount("sysfs", "/sys", "sysfs", syscalls.MS_RDONLY | syscalls.MS_NOSUID
                   | syscalls.MS_NODEV | syscalls.MS_NOEXEC)


def _minimal_dev(spec: Spec) -> None:
    """A tmpfs /dev with six character devices, pts, shm and the usual links - not the host's /dev.

    In a user namespace no device node can be made: the shim had the tmpfs
    and the host's six devices bound in before pivot_root, as rootless runc does.
    """
    if "user" not in spec.namespaces:
        Path("/dev").mkdir(exist_ok=True)
        syscalls.mount("tmpfs", "/dev", "tmpfs", syscalls.MS_NOSUID, "mode=755,size=65536k")
        for name, major, minor in DEVICES:
            os.mknod(f"/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(f"/dev/{name}", 0o666)  # mknod obeys the umask
    os.mkdir("/dev/pts")
    syscalls.mount("devpts", "/dev/pts", "devpts", syscalls.MS_NOSUID | syscalls.MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=620")
    os.symlink("pts/ptmx", "/dev/ptmx")
    os.mkdir("/dev/shm")
    syscalls.mount("shm", "/dev/shm", "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV
                   | syscalls.MS_NOEXEC, "mode=1777,size=65536k")
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{link}")


def _mask(paths: Sequence[str]) -> None:
    """Files: /dev/null bound on top; directories: an empty read-only tmpfs. Missing ones are fine."""
    for path in paths:
        if os.path.isdir(path):
            syscalls.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY)
        elif os.path.lexists(path):
            syscalls.mount("/dev/null", path, None, syscalls.MS_BIND)


def _make_readonly(paths: Sequence[str]) -> None:
    # A bind mount's flags change only with a second, remounting call.
    for path in paths:
        if os.path.exists(path):
            syscalls.mount(path, path, None, syscalls.MS_BIND | syscalls.MS_REC)
            syscalls.mount(None, path, None, syscalls.MS_BIND | syscalls.MS_REMOUNT
                           | syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV
                           | syscalls.MS_NOEXEC)


def prepare_filesystem(spec: Spec) -> None:
    """Every mount of the container, after pivot_root; none of them reaches the host (private/slave)."""
    if "user" not in spec.namespaces:
        # In a user namespace the kernel refuses a new sysfs while the host's has mounts on
        # top of it it would uncover; the container goes without /sys rather than get the host's.
        _mount_sys()
    _minimal_dev(spec)
    _mask(spec.masked_paths)
    _make_readonly(spec.readonly_paths)
    if spec.root_readonly:
        syscalls.mount(None, "/", None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY)


def _environment(spec: Spec) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in spec.env if "=" in item)
    env[ownership.MARKER_ENV] = "1"  # clean() must find the container's processes
    return env


def adopt_identity(spec: Spec) -> None:
    """User, capabilities, no_new_privs and seccomp of the container's process, in that order:
    setuid would clear the capabilities (KEEPCAPS keeps them), and a seccomp filter needs
    no_new_privs (or the CAP_SYS_ADMIN just dropped) - so it comes last, just before exec."""
    _prctl(_PR_SET_KEEPCAPS, 1)
    if "user" not in spec.namespaces:  # in one, setgroups is switched off before the maps are written
        os.setgroups([])
    os.setresgid(spec.gid, spec.gid, spec.gid)
    os.setresuid(spec.uid, spec.uid, spec.uid)
    drop_capabilities(capability_mask(spec.capabilities))
    if spec.no_new_privileges:
        syscalls.set_no_new_privs()
    if spec.seccomp is not None:
        seccomp.install(spec.seccomp)


def become_process(spec: Spec, argv: Sequence[str] | None = None) -> None:
    """The container's identity, then exec: the last steps, shared by start and exec."""
    adopt_identity(spec)
    try:
        os.chdir(spec.cwd)
    except OSError:
        os.chdir("/")
    args = list(argv or spec.args)
    try:
        os.execvpe(args[0], args, _environment(spec))
    except OSError as err:
        os.write(2, f"cannot run {args[0]!r} in the container: {os.strerror(err.errno or 0)}\n".encode())
        os._exit(127)


def run_init(spec: Spec, log_fd: int, ready_w: int, go_r: int) -> None:
    """The container's first process (runs as labsupport.process's target, after pivot_root).

    It says "ready" once its mounts are made, then waits for the runtime to
    finish the host side (network, published ports) before exec - so the
    program never runs without its network.
    """
    prepare_filesystem(spec)
    if "net" in spec.namespaces:
        from labsupport import net  # the shim forked this process with net imported: no cost here
        net.loopback_up_here()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.write(ready_w, b"r")
    os.close(ready_w)
    if os.read(go_r, 1) != b"g":
        os._exit(1)
    os.close(go_r)
    become_process(spec)


def run_exec(spec: Spec, argv: Sequence[str]) -> None:
    """A process joining a running container (``docker exec``): same user, caps and no_new_privs."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(sys.stdout.fileno(), 1)
    os.dup2(sys.stderr.fileno(), 2)
    become_process(spec, argv)
