"""What a container's first process does to itself after pivot_root, before exec.

labsupport.process has already made the namespaces, set propagation, mounted
/proc and the bundle's mounts in the new root, and pivoted into it (old root
detached). What is left is what runc adds on top. The container's plan
(labsupport.container.plan) orders these steps - each needs the rights the
next one drops:

    /sys (read-only) -> a minimal /dev -> /dev/mqueue -> maskedPaths -> readonlyPaths
    -> read-only root (if asked) -> lo up -> ready, wait for the go-ahead
    -> user -> capabilities -> no_new_privs -> seccomp -> exec

``ACTIONS`` says what each step does; ``run_steps`` takes the plan's steps in
the plan's order.

Capabilities have no wrapper in the standard library; capset and prctl come
from the lab's kernel gateway (labsupport.kernel.syscalls).
"""
from __future__ import annotations

import os
import select
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from labsupport import ownership
from labsupport.container import seccomp
from labsupport.container import spec as specs
from labsupport.container.spec import Spec
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError
from labsupport.process import timeline

CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
                "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
                "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
                "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
                "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
                "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
                "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")

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
            raise LabError(f"There is no capability {name!r}: write names such as CAP_NET_RAW "
                           "(capabilities(7) lists them).")
        mask |= 1 << CAPABILITIES.index(short)
    return mask


def capability_names(mask: int) -> list[str]:
    return [f"CAP_{name}" for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]


def drop_capabilities(keep: int) -> None:
    """Bounding set first (PR_CAPBSET_DROP needs CAP_SETPCAP, which we still hold), ambient
    cleared, then effective and permitted set to ``keep`` with one capset - and inheritable
    to nothing: a program with inheritable file capabilities would otherwise gain them at
    exec (CVE-2022-24769; Docker and runc leave the set empty since)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    # A set cannot grow: "ALL" means all that this process holds (a host may lack some itself).
    status = Path("/proc/self/status").read_text()
    held = int(status.split("CapPrm:")[1].split()[0], 16)
    keep &= held
    # After setuid away from root, KEEPCAPS kept the permitted set but the kernel emptied the
    # effective one - and dropping from the bounding set needs CAP_SETPCAP in effect: take it back.
    syscalls.capset(held, held, 0)
    for bit in range(last + 1):
        if not keep >> bit & 1:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, bit, what="prctl(PR_CAPBSET_DROP)")
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL, what="prctl(PR_CAP_AMBIENT)")
    syscalls.capset(keep, keep, 0)


#: What each system mount gets when the bundle does not say (runc's own defaults).
DEFAULT_OPTIONS = {
    "/proc": ["nosuid", "nodev", "noexec"],
    "/sys": ["nosuid", "nodev", "noexec", "ro"],
    "/dev": ["nosuid", "mode=755", "size=65536k"],
    "/dev/pts": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=620"],
    "/dev/shm": ["nosuid", "nodev", "noexec", "mode=1777", "size=65536k"],
    "/dev/mqueue": ["nosuid", "nodev", "noexec"],
}
_NO_DEVICES = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC


def _mount_system(spec: Spec, destination: str, kind: str, source: str) -> None:
    """Mount one of the kernel's file systems at ``destination`` with the bundle's options."""
    given = spec.system_mounts.get(destination)
    flags, data = specs.mount_flags(given.options if given else DEFAULT_OPTIONS[destination])
    os.makedirs(destination, exist_ok=True)
    syscalls.mount(given.source if given else source, destination, kind, flags, data or None)


def _mount_sys(spec: Spec) -> None:
    # A sysfs is mounted for the container's own network namespace; read-only as runc does.
    _mount_system(spec, "/sys", "sysfs", "sysfs")


def _proc_as_given(spec: Spec) -> None:
    """/proc was mounted before pivot_root with the lab's options: now with the bundle's."""
    flags, data = specs.mount_flags(spec.system_mounts["/proc"].options)
    syscalls.mount(None, "/proc", None, syscalls.MS_REMOUNT | flags, data or None)


def _mount_cgroups(spec: Spec) -> None:
    """/sys/fs/cgroup as runc makes it: on cgroup v1, a tmpfs with one directory per hierarchy,
    each showing the container's own group (read-only if asked); on v2, one cgroup2 mount.

    Without a cgroup namespace a fresh mount shows the host's whole tree, so it is
    mounted aside first and only the container's own group is bound into place.
    """
    given = spec.system_mounts["/sys/fs/cgroup"]
    read_only = "ro" in given.options
    own_namespace = "cgroup" in spec.namespaces
    groups = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
    v1 = [(controllers, path) for number, controllers, path in groups if number != "0" and controllers]
    if not v1:
        _mount_cgroup("/sys/fs/cgroup", "cgroup2", None, groups[0][2], own_namespace, read_only)
        return
    syscalls.mount("tmpfs", "/sys/fs/cgroup", "tmpfs", _NO_DEVICES, "mode=755")
    for controllers, path in v1:
        target = f"/sys/fs/cgroup/{controllers.removeprefix('name=')}"
        os.mkdir(target)
        _mount_cgroup(target, "cgroup", controllers, path, own_namespace, read_only)


def _mount_cgroup(target: str, kind: str, controllers: str | None, group: str, own_namespace: bool,
                  read_only: bool) -> None:
    if own_namespace or group == "/":
        syscalls.mount(kind, target, kind, _NO_DEVICES | (syscalls.MS_RDONLY if read_only else 0), controllers)
        return
    aside = "/sys/fs/cgroup/.lab-aside"
    os.mkdir(aside)
    try:
        syscalls.mount(kind, aside, kind, _NO_DEVICES, controllers)
        syscalls.mount(f"{aside}{group}", target, None, syscalls.MS_BIND)
        syscalls.umount(aside, syscalls.MNT_DETACH)
    finally:
        os.rmdir(aside)
    if read_only:
        syscalls.mount(None, target, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY | _NO_DEVICES)


def _minimal_dev(spec: Spec) -> None:
    """A tmpfs /dev with six character devices, pts, shm and the usual links - not the host's /dev.

    In a user namespace no device node can be made: the shim had the tmpfs
    and the host's six devices bound in before pivot_root, as rootless runc does.
    """
    if "user" not in spec.namespaces:
        _mount_system(spec, "/dev", "tmpfs", "tmpfs")
        for name, major, minor in DEVICES:
            os.mknod(f"/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(f"/dev/{name}", 0o666)  # mknod obeys the umask
    if spec.wants_mount("/dev/pts"):
        _mount_system(spec, "/dev/pts", "devpts", "devpts")
        os.symlink("pts/ptmx", "/dev/ptmx")
    if spec.wants_mount("/dev/shm"):
        _mount_system(spec, "/dev/shm", "tmpfs", "shm")
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{link}")


def _mount_mqueue(spec: Spec) -> None:
    """POSIX message queues of the container's own IPC namespace, where programs look for them."""
    _mount_system(spec, "/dev/mqueue", "mqueue", "mqueue")


def _make_devices(spec: Spec) -> None:
    """linux.devices: each node made as asked, with its owner and mode (the umask left out)."""
    kinds = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    for node in spec.devices:
        os.makedirs(os.path.dirname(node.path), exist_ok=True)
        if os.path.lexists(node.path):
            os.unlink(node.path)  # the bundle's node wins over the runtime's default one
        os.mknod(node.path, node.mode | kinds[node.kind], os.makedev(node.major, node.minor))
        os.chmod(node.path, node.mode)
        os.chown(node.path, node.uid, node.gid)


def _mount_others(spec: Spec) -> None:
    """The bundle's kernel file systems at other places (a second proc, a sysfs ...), in its order."""
    for mount in spec.system_mounts.values():
        if mount.destination not in DEFAULT_OPTIONS and mount.destination != "/sys/fs/cgroup":
            flags, data = specs.mount_flags(mount.options)
            os.makedirs(mount.destination, exist_ok=True)
            syscalls.mount(mount.source, mount.destination, mount.type, flags, data or None)


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


@dataclass
class Inside:
    """What the container's first process (or an exec'd one) carries through its steps."""

    spec: Spec
    argv: list[str]
    log_fd: int = -1    # the container's log, for stdout and stderr (-1: keep the stdio it has)
    ready_w: int = -1   # "ready" goes here ...
    go_r: int = -1      # ... and the host's go-ahead comes from here (a pipe, or a start fifo)


def _make_root_readonly(inside: Inside) -> None:
    syscalls.mount(None, "/", None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY)


def _bring_up_lo(inside: Inside) -> None:
    syscalls.loopback_up()


def _wait_for_go(inside: Inside) -> None:
    """Say "ready" once the mounts are made, then wait while the host side (network, published
    ports) is set up - so the program never runs without its network."""
    if inside.log_fd >= 0:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(inside.log_fd, 1)
        os.dup2(inside.log_fd, 2)
    os.write(inside.ready_w, b"r")
    os.close(inside.ready_w)
    # select, then read: a start fifo is opened without waiting for a writer, and a read on it
    # would return "end of file" at once; select waits until `start` has written.
    select.select([inside.go_r], [], [])
    if os.read(inside.go_r, 1) != b"g":
        os._exit(1)
    os.close(inside.go_r)


def _set_user(inside: Inside) -> None:
    """setuid would clear the capabilities: KEEPCAPS keeps them for the next step to drop."""
    spec = inside.spec
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1, what="prctl(PR_SET_KEEPCAPS)")
    if "user" not in spec.namespaces:  # in one, setgroups is switched off before the maps are written
        os.setgroups(list(spec.additional_gids))
    elif spec.additional_gids:
        raise LabError("process.user.additionalGids cannot be set in a user namespace whose "
                       "setgroups is denied: remove them.")
    if spec.umask is not None:
        os.umask(spec.umask)
    os.setresgid(spec.gid, spec.gid, spec.gid)
    os.setresuid(spec.uid, spec.uid, spec.uid)


def _set_sysctls(spec: Spec) -> None:
    # Written through the container's own /proc: the keys the spec parser lets through belong
    # to the container's IPC, network or UTS namespace, so the host's values stay as they were.
    for key, value in spec.sysctl.items():
        Path("/proc/sys", *key.split(".")).write_text(value)


def _set_rlimits(spec: Spec) -> None:
    import resource
    for kind, soft, hard in spec.rlimits:
        try:
            resource.setrlimit(getattr(resource, kind), (soft, hard))
        except (ValueError, OSError) as err:
            raise LabError(f"process.rlimits {kind} {soft}:{hard} cannot be set here ({err}; "
                           "fs.nr_open caps RLIMIT_NOFILE): ask for less.") from None


def _exec(inside: Inside) -> None:
    try:
        os.chdir(inside.spec.cwd)
    except OSError:
        os.chdir("/")
    args = inside.argv or list(inside.spec.args)
    try:
        os.execvpe(args[0], args, _environment(inside.spec))
    except OSError as err:
        os.write(2, f"cannot run {args[0]!r} in the container: {os.strerror(err.errno or 0)}\n".encode())
        os._exit(127)


#: What each of the plan's after-pivot_root steps does (labsupport.container.plan orders them).
ACTIONS: dict[str, Callable[[Inside], None]] = {
    "give /proc the bundle's options": lambda inside: _proc_as_given(inside.spec),
    "mount /sys read-only": lambda inside: _mount_sys(inside.spec),
    "mount the cgroup file system": lambda inside: _mount_cgroups(inside.spec),
    "make a minimal /dev": lambda inside: _minimal_dev(inside.spec),
    "mount /dev/mqueue": lambda inside: _mount_mqueue(inside.spec),
    "make the bundle's device nodes": lambda inside: _make_devices(inside.spec),
    "mount the bundle's other kernel file systems": lambda inside: _mount_others(inside.spec),
    "set the sysctls": lambda inside: _set_sysctls(inside.spec),
    "mask paths": lambda inside: _mask(inside.spec.masked_paths),
    "make paths read-only": lambda inside: _make_readonly(inside.spec.readonly_paths),
    "make the root read-only": _make_root_readonly,
    "bring up lo": _bring_up_lo,
    "say ready, wait for the host's go-ahead": _wait_for_go,
    "set the resource limits": lambda inside: _set_rlimits(inside.spec),
    "set the OOM score": lambda inside: Path("/proc/self/oom_score_adj").write_text(
        str(inside.spec.oom_score_adj)),
    "set the user and groups": _set_user,
    "drop capabilities": lambda inside: drop_capabilities(capability_mask(inside.spec.capabilities)),
    "set no_new_privs": lambda inside: syscalls.set_no_new_privs(),
    "install the seccomp filter": lambda inside: seccomp.install(inside.spec.seccomp),  # type: ignore[arg-type]
    "exec the program": _exec,
}

#: The steps after the go-ahead: who the process is, then exec. ``docker exec`` takes these too.
IDENTITY = ("set the resource limits", "set the OOM score", "set the user and groups",
            "drop capabilities", "set no_new_privs", "install the seccomp filter", "exec the program")


def _environment(spec: Spec) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in spec.env if "=" in item)
    env[ownership.MARKER_ENV] = "1"  # clean() must find the container's processes
    return env


def run_steps(steps: Sequence[str], inside: Inside) -> None:
    """Take these steps of the plan, in the plan's order; the last one, exec, never returns."""
    for name in steps:
        timeline.mark(name)
        ACTIONS[name](inside)


def run_init(steps: Sequence[str], spec: Spec, log_fd: int, ready_w: int, go_r: int) -> None:
    """The container's first process, after pivot_root (it runs as labsupport.process's target)."""
    run_steps(steps, Inside(spec, list(spec.args), log_fd, ready_w, go_r))


def adopt_identity(spec: Spec, steps: Sequence[str]) -> None:
    """User, capabilities, no_new_privs and seccomp - the plan's identity steps without exec."""
    run_steps([name for name in steps if name in IDENTITY and name != "exec the program"],
              Inside(spec, []))


def run_exec(spec: Spec, steps: Sequence[str], argv: Sequence[str]) -> None:
    """A process joining a running container (``docker exec``): the plan's identity steps, then exec."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(sys.stdout.fileno(), 1)
    os.dup2(sys.stderr.fileno(), 2)
    run_steps([name for name in steps if name in IDENTITY], Inside(spec, list(argv)))
