"""What the host holds right now, read from /proc and /sys - and what changed.

Every other module that needs to know what the host holds - its mounts, links,
network namespaces, cgroups, loop devices, IPC objects and processes - asks
here, so /proc and /sys are parsed in one place. It only reads: deciding
what belongs to the lab, and removing it, is ``ownership``'s job; comparing
two readings (the residue check) is ``process.residue``'s.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from labsupport.kernel import syscalls

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo, reduced to what identifies it.

    ``root`` (the directory of the filesystem mounted here: not "/" for a
    bind mount of a subdirectory), ``options`` and ``propagation`` are shown,
    never compared: marking a mount shared or read-only does not make it a
    new one. ``propagation`` is mountinfo's optional fields ("shared:3",
    "master:3", both, "unbindable"), or "private" when there are none.
    """

    mount_id: int
    mountpoint: str
    fstype: str
    source: str
    root: str = field(default="/", compare=False)
    options: str = field(default="", compare=False)
    propagation: str = field(default="private", compare=False)

    def __str__(self) -> str:
        return f"{self.fstype} {self.source} on {self.mountpoint}"


@dataclass(frozen=True)
class Process:
    """A process, identified by PID and start time so a reused PID is not confused."""

    pid: int
    start_ticks: int
    ppid: int
    name: str

    def __str__(self) -> str:
        return f"PID {self.pid} ({self.name})"


def _unescape(text: str) -> str:
    """mountinfo writes spaces and tabs in paths as octal escapes."""
    return (text.replace("\\040", " ").replace("\\011", "\t")
            .replace("\\012", "\n").replace("\\134", "\\"))


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    """Every mount this process's mount namespace can see."""
    result = []
    for line in Path(mountinfo).read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        fstype, source = (right.split() + ["", ""])[:2]
        result.append(Mount(int(fields[0]), _unescape(fields[4]), fstype, _unescape(source),
                            _unescape(fields[3]), fields[5], " ".join(fields[6:]) or "private"))
    return result


def links() -> set[str]:
    """Network interfaces in the host's (this process's) network namespace."""
    return set(os.listdir("/sys/class/net"))


def named_netns() -> set[str]:
    """Network namespaces kept alive by name under /run/netns (what `ip netns` lists)."""
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def cgroup_mounts() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 controllers and v2)."""
    return sorted({Path(m.mountpoint) for m in mounts() if m.fstype in ("cgroup", "cgroup2")})


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """Map each hierarchy (its /proc/PID/cgroup controller field) to the process's group."""
    groups = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        groups[controllers] = path
    return groups


def _machine_managed_dirs() -> set[Path]:
    """Cgroup directories whose children belong to whoever put this process there.

    On this workplace every shell command gets a fresh group such as
    ``memory:/process_api/<id>``; groups appearing next to ours are the
    machine's, not the lab's, so the residue check must not report them.
    """
    managed = set()
    for mountpoint in cgroup_mounts():
        for path in own_cgroups().values():
            parent = Path(path).parent
            if parent != Path("/") and (mountpoint / parent.relative_to("/")).is_dir():
                managed.add(mountpoint / parent.relative_to("/"))
    return managed


def cgroups() -> set[str]:
    """Every cgroup directory on the host, except those the machine itself manages."""
    skip = _machine_managed_dirs()
    found: set[str] = set()
    for mountpoint in cgroup_mounts():
        for dirpath, dirnames, _ in os.walk(mountpoint):
            here = Path(dirpath)
            if here in skip:
                dirnames.clear()
                continue
            if here != mountpoint:
                found.add(str(here))
    return found


def pids_in_cgroup(group: Path) -> list[int]:
    """PIDs in one cgroup directory (not its children); none if the group is gone."""
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def loop_devices() -> dict[str, str]:
    """Attached loop devices and the file behind each."""
    attached = {}
    for block in Path("/sys/block").glob("loop*"):
        backing = block / "loop" / "backing_file"
        if backing.exists():
            attached[f"/dev/{block.name}"] = backing.read_text().strip()
    return attached


@dataclass(frozen=True)
class IpcObject:
    """A System V IPC object (found by its key) or a POSIX message queue (by its name).

    ``ident`` is the SysV id the kernel gave it (-1 for a POSIX queue); two
    objects with key 0 (IPC_PRIVATE) differ only by it. ``detail`` (size,
    messages) is shown, never compared: it changes while the object stays.
    """

    kind: str  # "shm", "msg", "sem" or "mqueue"
    name: str  # "0x1ab00001" for SysV, "/labq" for POSIX
    ident: int = -1
    detail: str = field(default="", compare=False)

    @property
    def title(self) -> str:
        """What it is and its key or name - the same on every side of a namespace."""
        what = {"shm": "SysV shared memory", "msg": "SysV message queue",
                "sem": "SysV semaphore set", "mqueue": "POSIX message queue"}[self.kind]
        return f"{what} {self.name}"

    def __str__(self) -> str:
        return self.title + (f" (id {self.ident})" if self.ident >= 0 else "")


# The column that tells how full each kind is, in /proc/sysvipc/<kind>.
_SYSV_DETAIL = {"shm": ("size", "bytes"), "msg": ("qnum", "messages"), "sem": ("nsems", "semaphores")}


def sysv_ipc(directory: str = "/proc/sysvipc") -> set[IpcObject]:
    """Every SysV object of the reader's IPC namespace (the kernel picks it when the file is opened)."""
    found = set()
    for kind, (column, unit) in _SYSV_DETAIL.items():
        header, *lines = Path(directory, kind).read_text().splitlines()
        names = header.split()
        for line in lines:
            row = dict(zip(names, line.split()))
            ident = int(row["shmid" if kind == "shm" else "msqid" if kind == "msg" else "semid"])
            found.add(IpcObject(kind, f"{int(row['key']) & 0xFFFFFFFF:#010x}", ident,
                                f"{row[column]} {unit}"))
    return found


def posix_mqueues(directory: str | os.PathLike) -> set[IpcObject]:
    """The POSIX message queues in a mounted mqueue filesystem (one file per queue)."""
    found = set()
    for entry in Path(directory).iterdir():
        size = entry.read_text().split()[0].removeprefix("QSIZE:")  # "QSIZE:12 NOTIFY:0 ..."
        found.add(IpcObject("mqueue", f"/{entry.name}", detail=f"{size} bytes queued"))
    return found


def ipc_in_own_namespace() -> set[IpcObject]:
    """Every IPC object of the caller's IPC namespace; call it in a child with a private mount namespace.

    POSIX queues can only be listed through an mqueue filesystem, and that
    shows the IPC namespace of whoever mounts it. The host has none mounted
    (no /dev/mqueue here), so the child mounts one over its own view of /tmp:
    the host's mount table never changes.
    """
    syscalls.mount("mqueue", "/tmp", "mqueue")
    return sysv_ipc() | posix_mqueues("/tmp")


def read_process(pid: int) -> Process | None:
    """One process from /proc/PID/stat, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The name sits in parentheses and may itself hold spaces or ')'.
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    rest = stat[stat.rindex(")") + 2:].split()
    return Process(pid, int(rest[19]), int(rest[1]), name)


def process_state(pid: int) -> str:
    """The one-letter state in /proc/PID/stat (R, S, D, Z for a zombie ...), or "" when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return stat[stat.rindex(")") + 2]


def processes() -> dict[int, Process]:
    """Every user-space process (kernel threads, children of kthreadd, left out)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = read_process(int(entry))
            if proc and proc.pid != 2 and proc.ppid != 2:
                found[proc.pid] = proc
    return found


def descendants(pid: int, table: dict[int, Process]) -> set[int]:
    """PIDs below ``pid`` in the process tree."""
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found
