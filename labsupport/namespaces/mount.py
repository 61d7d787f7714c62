"""Mounts (마운트): one mount table per mount namespace, and what travels between tables.

A mount namespace (마운트 네임스페이스) starts as a *copy* of its creator's
table. Whether a mount made later on one side shows up on the other is the
copied mount's *propagation*: a shared mount and its copies form a peer group
and pass every mount and unmount on to each other; a slave only receives; a
private mount neither sends nor receives. The runner makes a new namespace's
copies private first (``propagation="private"``), or slaves as runc does;
``propagation="unchanged"`` skips that step, to show why it exists.

Every mount this module makes sits below a lab directory, so the trap of a
mount leaking out of a namespace is shown on a lab tmpfs - never on the
host's / or /proc - and ``python -m labsupport clean`` finds whatever is left.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from labsupport import namespaces, ownership, process
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.hoststate import Mount
from labsupport.kernel.tables import Table
from labsupport.namespaces import chroot

#: mount(2) flags that change the propagation of an existing mount.
PROPAGATION_FLAGS = {"shared": syscalls.MS_SHARED, "slave": syscalls.MS_SLAVE,
                     "private": syscalls.MS_PRIVATE}

#: The runner's choices for a new mount namespace, in the order the notebook shows them.
RUNNER_MODES = ("unchanged", "slave", "private")

#: The scratch purpose of notebook 05's directories (``ownership.temp_dir``).
SCRATCH = "mounts"


def _lab_target(path: str | os.PathLike) -> Path:
    """A mount point the lab may use: a directory below one of the lab's own."""
    target = Path(path).resolve()  # a symlink must not lead a mount out of the lab
    if not ownership.is_lab_path(target) or target in ownership.lab_dirs():
        raise LabError(f"{path} is not below a lab directory ({ownership.TEMP_DIR} for scratch): "
                       "the lab only mounts on its own directories.")
    return target


# -- reading tables ------------------------------------------------------------------

def table(pid: int | str = "self") -> list[Mount]:
    """The mount table as process ``pid`` sees it, from its /proc/PID/mountinfo."""
    try:
        return hoststate.mounts(f"/proc/{pid}/mountinfo")
    except (FileNotFoundError, ProcessLookupError):
        raise LabError(f"The process {pid} is gone (or never existed): it has no mount table.") from None


def at(path: str | os.PathLike, pid: int | str = "self") -> Mount | None:
    """The mount on top at ``path`` in ``pid``'s table (the last one mounted there), or None."""
    wanted = os.path.abspath(path)
    found = [m for m in table(pid) if m.mountpoint == wanted]
    return found[-1] if found else None


def below(path: str | os.PathLike, pid: int | str = "self") -> list[Mount]:
    """The mounts at ``path`` or anywhere below it, in ``pid``'s table."""
    top = os.path.abspath(path)
    return [m for m in table(pid) if m.mountpoint == top or m.mountpoint.startswith(top.rstrip("/") + "/")]


def mountinfo_line(path: str | os.PathLike, pid: int | str = "self") -> str:
    """The raw /proc/PID/mountinfo line of the mount on top at ``path``."""
    mount = at(path, pid)
    if mount is None:
        raise LabError(f"Nothing is mounted at {path} in the table of process {pid}.")
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        if line.split(" ", 1)[0] == str(mount.mount_id):
            return line
    raise LabError(f"The mount at {path} went away while it was being read.")


def rows(mounts: Sequence[Mount], caption: str = "", relative_to: str | os.PathLike | None = None) -> Table:
    """Mounts as a table: where, what, from which directory of the filesystem, flags, propagation."""
    def where(mount: Mount) -> str:
        if relative_to is None:
            return mount.mountpoint
        return os.path.relpath(mount.mountpoint, relative_to)

    return Table(["mount point", "type", "source", "root", "options", "propagation"],
                 [(where(m), m.fstype, m.source, m.root, m.options.split(",")[0], m.propagation)
                  for m in mounts], caption)


# -- making and removing lab mounts --------------------------------------------------

def tmpfs(target: str | os.PathLike, name: str, size: str = "4m") -> Mount:
    """Mount a fresh tmpfs (a filesystem in memory) at a lab directory; ``name`` becomes its source."""
    where = _lab_target(target)
    where.mkdir(parents=True, exist_ok=True)
    syscalls.mount(name, where, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, f"size={size},mode=755")
    return at(where)  # type: ignore[return-value]


def set_propagation(target: str | os.PathLike, kind: str) -> Mount:
    """Make the lab mount at ``target`` shared, slave or private (``mount --make-KIND``)."""
    if kind not in PROPAGATION_FLAGS:
        raise LabError(f"Unknown propagation {kind!r}: choose from {', '.join(PROPAGATION_FLAGS)}.")
    where = _lab_target(target)
    if at(where) is None:
        raise LabError(f"Nothing is mounted at {where}: propagation belongs to a mount, not a directory.")
    syscalls.mount(None, where, None, PROPAGATION_FLAGS[kind])
    return at(where)  # type: ignore[return-value]


def shared_tmpfs(target: str | os.PathLike, name: str = "lab-shared") -> Mount:
    """A lab tmpfs marked shared: the stand-in for a host whose / is shared (systemd's default)."""
    tmpfs(target, name)
    return set_propagation(target, "shared")


def bind(source: str | os.PathLike, target: str | os.PathLike, read_only: bool = False) -> Mount:
    """Make the directory ``source`` appear at ``target`` too (``mount --bind``), optionally read-only.

    A bind mount is the same directory seen at a second place - what
    ``docker run -v`` does. Read-only is a flag of the *mount*, set by a
    second call (a remount of the bind), so the same directory can be
    writable at one place and read-only at another. A writable bind of a host
    directory outside the lab is refused: a container could change it.
    """
    origin = Path(source).resolve()
    if not origin.is_dir():
        raise LabError(f"{source} is not a directory: a bind mount shows an existing directory elsewhere.")
    if not read_only and not ownership.is_lab_path(origin):
        raise LabError(f"{source} is the host's own directory: bind it read-only "
                       "(read_only=True), or bind a lab directory.")
    where = _lab_target(target)
    where.mkdir(parents=True, exist_ok=True)
    syscalls.mount(origin, where, None, syscalls.MS_BIND)
    if read_only:
        syscalls.mount(None, where, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)
    return at(where)  # type: ignore[return-value]


def unmount(target: str | os.PathLike) -> None:
    """Unmount the lab mount at ``target`` and everything below it (a lazy, detaching unmount)."""
    syscalls.umount(_lab_target(target), syscalls.MNT_DETACH)


def unmount_below(directory: str | os.PathLike) -> list[str]:
    """Unmount every lab mount at or below ``directory``, deepest first; returns their mount points."""
    top = _lab_target(directory)
    done = []
    for mount in ownership.lab_mounts():  # deepest first
        path = Path(mount.mountpoint)
        if path == top or top in path.parents:
            try:
                syscalls.umount(path, syscalls.MNT_DETACH)
                done.append(mount.mountpoint)
            except LabError:
                pass  # already detached together with a mount above it
    return done


# -- a box: a process in a mount namespace of its own -------------------------------------

def start_box(propagation: str = "private") -> process.Child:
    """A process that waits in a new mount namespace, its copies made ``propagation`` first.

    Returns once the runner has finished setting it up (the command runs),
    so its table is the one to look at. Stop it with ``.stop()``.
    """
    return namespaces.start_waiting(namespaces=["mnt"], propagation=propagation)


def _mount_tmpfs(target: str, name: str) -> None:
    syscalls.mount(name, target, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "size=1m")


def mount_inside(pid: int, target: str | os.PathLike, name: str = "lab-inside") -> None:
    """Mount a tmpfs at ``target`` inside the mount namespace of ``pid`` (as ``nsenter -m`` would)."""
    where = _lab_target(target)
    where.mkdir(parents=True, exist_ok=True)
    process.run_function(_mount_tmpfs, str(where), name, enter=pid, enter_namespaces=["mnt"])


def unmount_inside(pid: int, target: str | os.PathLike) -> None:
    """Unmount ``target`` inside the mount namespace of ``pid`` - what a container does to its /proc."""
    process.run_function(syscalls.umount, str(_lab_target(target)), enter=pid, enter_namespaces=["mnt"])


def both_sides(directory: str | os.PathLike, pid: int) -> Table:
    """The mounts below ``directory`` in the host's table and in ``pid``'s, side by side."""
    def cells(mounts: list[Mount]) -> dict[str, str]:
        return {os.path.relpath(m.mountpoint, directory): f"{m.fstype} {m.source}  ({m.propagation})"
                for m in mounts}

    host, box = cells(below(directory)), cells(below(directory, pid))
    names = sorted(set(host) | set(box))
    return Table([f"below {directory}", "the host's table", f"the table of box PID {pid}"],
                 [(name, host.get(name, "-"), box.get(name, "-")) for name in names])


# -- the propagation experiment ---------------------------------------------------------

@dataclass(frozen=True)
class Trial:
    """What crossed between the host and a box started with one of the runner's modes."""

    mode: str
    box_copy: str  # the propagation of the box's copy of the shared lab mount
    host_to_box: bool  # a mount made on the host afterwards appeared in the box
    box_to_host: bool  # a mount made in the box appeared on the host
    unmount_to_host: bool  # an unmount in the box removed the host's mount too

    def row(self) -> tuple[str, ...]:
        def word(crossed: bool) -> str:
            return "YES" if crossed else "no"

        return (self.mode, self.box_copy, word(self.host_to_box), word(self.box_to_host),
                word(self.unmount_to_host))


def trial(directory: str | os.PathLike, mode: str) -> Trial:
    """Run the three crossings once, in a fresh shared lab tmpfs at ``directory``, and remove it again.

    The host makes ``directory`` a shared tmpfs with a mount ``victim`` below
    it (standing for the host's /proc), starts a box with ``mode``, then:
    mounts ``from-host`` on the host, mounts ``from-box`` in the box, and
    unmounts ``victim`` in the box - and looks at both tables after each step.
    """
    area = _lab_target(directory)
    shared_tmpfs(area)
    try:
        tmpfs(area / "victim", "lab-victim")
        box = start_box(mode)
        try:
            copy = at(area, box.pid)
            tmpfs(area / "from-host", "lab-from-host")
            arrived = at(area / "from-host", box.pid) is not None
            mount_inside(box.pid, area / "from-box", "lab-from-box")
            leaked = at(area / "from-box") is not None
            unmount_inside(box.pid, area / "victim")
            lost = at(area / "victim") is None
        finally:
            box.stop()
        return Trial(mode, copy.propagation if copy else "-", arrived, leaked, lost)
    finally:
        unmount(area)


def trials_table(base: str | os.PathLike, modes: Sequence[str] = RUNNER_MODES) -> Table:
    """One ``trial`` per runner mode, each in its own directory below ``base``."""
    results = [trial(Path(base) / f"trial-{mode}", mode) for mode in modes]
    return Table(["runner's propagation=", "box's copy of the shared mount", "host mounts -> box sees it",
                  "box mounts -> host sees it", "box unmounts -> host loses it"],
                 [r.row() for r in results], "Three crossings, measured once per mode")


# -- volumes: bind mounts and a tmpfs in a container's root ---------------------------------

#: Where the volumes appear inside the container.
VOLUME_RW, VOLUME_RO, BOX_TMP = "/data", "/data-ro", "/tmp"
#: The file the container writes through each place (one name each, so the host can tell them apart).
PROBE_FILES = {VOLUME_RW: "via-data.txt", VOLUME_RO: "via-data-ro.txt", BOX_TMP: "via-tmp.txt"}


def add_volumes(root: str | os.PathLike, volume: str | os.PathLike) -> list[Mount]:
    """Bind the host directory ``volume`` into ``root`` twice: writable at /data, read-only at /data-ro."""
    root = Path(root)
    return [bind(volume, root / VOLUME_RW.lstrip("/")),
            bind(volume, root / VOLUME_RO.lstrip("/"), read_only=True)]


def _write(path: str) -> str:
    try:
        Path(path).write_text(f"written inside the container by PID {os.getpid()}\n")
        return "written"
    except OSError as err:
        return f"refused: {os.strerror(err.errno or 0)} ({errno.errorcode.get(err.errno or 0, '?')})"


def _inside_container() -> dict[str, Any]:
    """Runs after pivot_root: a tmpfs of its own on /tmp, a write into each place, and the whole table."""
    _mount_tmpfs(BOX_TMP, "lab-box-tmp")
    writes = {place: _write(f"{place}/{name}") for place, name in PROBE_FILES.items()}
    return {"writes": writes, "table": hoststate.mounts()}


@dataclass
class ContainerLook:
    """What a pivot_root-ed container saw and did, next to what the host found afterwards."""

    writes: dict[str, str]
    inside: list[Mount]
    host_files: dict[str, bool]  # the probe file, looked for from the host, per place
    host_mounts_at_tmp: int

    def writes_table(self) -> Table:
        options = {m.mountpoint: m.options.split(",")[0] for m in self.inside}
        return Table(["inside the container", "mount", "write a file inside", "the file, seen from the host"],
                     [(place, options.get(place, "-"), outcome,
                       "there" if self.host_files[place] else "not there")
                      for place, outcome in self.writes.items()],
                     "One directory bound twice, and a tmpfs made inside")

    def table_inside(self) -> Table:
        return rows(self.inside, f"The container's whole mount table after pivot_root: "
                                 f"{len(self.inside)} mounts")


def look_inside_container(root: str | os.PathLike, volume: str | os.PathLike) -> ContainerLook:
    """Run ``_inside_container`` after pivot_root into ``root``, then check each write from the host."""
    root, volume = Path(root).resolve(), Path(volume).resolve()
    seen = process.run_function(_inside_container, root=root, namespaces=["mnt"], pivot=True,
                                mount_proc=True)
    host_side = {VOLUME_RW: volume, VOLUME_RO: volume, BOX_TMP: root / BOX_TMP.lstrip("/")}
    host_files = {place: (host_side[place] / name).exists() for place, name in PROBE_FILES.items()}
    return ContainerLook(seen["writes"], seen["table"], host_files,
                         len(below(root / BOX_TMP.lstrip("/"))))


def escape_attempts(root: str | os.PathLike, marker: str | os.PathLike) -> Table:
    """Notebook 01's chroot escape, run under chroot and under pivot_root (``chroot.try_escape``)."""
    return chroot.outcomes_table([chroot.try_escape(root, marker),
                                  chroot.try_escape(root, marker, pivot=True)])


# -- the boxes a learner starts (exercises) -------------------------------------------------

def lab_boxes() -> dict[int, list[Mount]]:
    """The lab's running processes that have a mount namespace of their own, with their tables.

    Not those in a lab cgroup: containers and the lab's libvirtd have mount
    namespaces too, but they belong to other notebooks.
    """
    ours = os.stat("/proc/self/ns/mnt").st_ino
    found = {}
    for pid in sorted(set(ownership.lab_processes()) - ownership.processes_in_lab_cgroups()):
        try:
            if os.stat(f"/proc/{pid}/ns/mnt").st_ino != ours:
                found[pid] = table(pid)
        except (OSError, LabError):
            continue  # ended meanwhile
    return found


# -- clean up ----------------------------------------------------------------------------

def clean_up_notebook(exercises: str | os.PathLike | None = None) -> Table:
    """Notebook 05's clean-up cell: stop its boxes, unmount and remove its scratch; keep the exercise files.

    Found by name and by parent, so it also works after a cell failed before
    its variables were set. Mounts in the exercise directory are unmounted
    (a mount does not outlive the machine anyway); the files stay.
    """
    stopped = namespaces.stop_children()
    unmounted = unmount_below(exercises) if exercises is not None and Path(exercises).exists() else []
    scratch = sorted(ownership.TEMP_DIR.glob(f"{ownership.PREFIX}-{SCRATCH}-*"))
    removed = chroot.remove_scratch(*scratch)
    return Table(["what", "removed"], [
        ("boxes this Python started", ", ".join(map(str, stopped)) or "none"),
        ("mounts in your exercise directory", "\n".join(unmounted) or "none"),
        ("scratch directories (and every mount in them)", "\n".join(map(str, removed)) or "none"),
        ("your exercise files", f"kept: {exercises}" if exercises else "-")], "Clean up")
