"""Namespaces (네임스페이스): see a process's, compare them with the host's, join them, keep them.

A namespace is a kernel object that gives the processes in it their own copy
of one thing - a hostname, a set of IPC keys, a numbering of processes, a
mount table, a network, user ids, a cgroup root. Each process points at one
namespace of each of the seven kinds, and ``/proc/PID/ns/KIND`` names it: two
processes share a namespace exactly when those files have the same inode
number. That one fact is how this module answers "what is isolated here?".

Starting a process in new namespaces is the runner's job: ``start`` below
*is* ``process.start`` (``namespaces=[...]``, ``hostname=``, ``root=``,
``mount_proc=`` ...). This module adds what comes after: reading and
comparing namespace ids, running a command inside a running process's
namespaces (setns, as ``nsenter`` and ``docker exec`` do), and keeping a
namespace alive with no process in it, by bind-mounting its
``/proc/PID/ns/KIND`` file under the lab's own ``/run/labsupport/ns``.
"""
from __future__ import annotations

import html
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from labsupport import ownership, process
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.namespaces import ipc, rootfs
from labsupport.process import CommandResult

#: The seven kinds, in the order /proc/PID/ns and the tables list them.
KINDS = tuple(syscalls.NAMESPACE_FLAGS)

#: What each kind gives its processes a copy of, in a learner's words.
ISOLATES = {
    "mnt": "the mount table (what is mounted where)",
    "uts": "the hostname and NIS domain name",
    "ipc": "SysV IPC keys and POSIX message queues",
    "pid": "process numbers (its own PID 1)",
    "net": "interfaces, addresses, routes, ports",
    "user": "user and group ids, capabilities",
    "cgroup": "the cgroup tree's root as the process sees it",
}

#: Where kept namespaces live: /run/labsupport/ns/<name>/<kind>.
HELD_DIR = ownership.HELD_NS_DIR

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: Start a command in new namespaces: this is ``process.start`` itself (see there).
start = process.start


# -- reading and comparing ---------------------------------------------------------

def _gone(pid: int | str) -> LabError:
    return LabError(f"The process {pid} is gone (or never existed): it has no namespaces to read.")


def namespace_ids(pid: int | str = "self") -> dict[str, int]:
    """The inode number of each of ``pid``'s namespaces, from /proc/PID/ns/*."""
    try:
        return {kind: os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in KINDS}
    except (FileNotFoundError, ProcessLookupError):
        raise _gone(pid) from None
    except PermissionError:
        raise LabError(f"The namespaces of process {pid} cannot be read: it belongs to the "
                       "machine, not to the lab (pick a process the lab started).") from None


@dataclass(frozen=True)
class NamespaceRow:
    """One kind: the inode number on each of the two sides."""

    kind: str
    left: int
    right: int

    @property
    def shared(self) -> bool:
        return self.left == self.right


@dataclass(frozen=True)
class Comparison:
    """Two processes' namespaces side by side; shows as a table with the new ones highlighted."""

    labels: tuple[str, str]
    rows: tuple[NamespaceRow, ...]

    @property
    def new(self) -> list[str]:
        """The kinds in which the two processes differ."""
        return [row.kind for row in self.rows if not row.shared]

    def table(self) -> Table:
        return Table(["namespace", *self.labels, "", "gives its own copy of"],
                     [(r.kind, r.left, r.right, "shared" if r.shared else "NEW", ISOLATES[r.kind])
                      for r in self.rows],
                     f"/proc/PID/ns inode numbers: {len(self.new)} of {len(self.rows)} new")

    def _repr_html_(self) -> str:
        table = self.table()
        cell = "padding:3px 8px;text-align:left"
        head = "".join(f'<th style="{cell}">{html.escape(h)}</th>' for h in table.headers)
        body = []
        for row, values in zip(self.rows, table.rows):
            mark = ("background:#fff3cd;font-weight:bold" if not row.shared else "color:#777")
            cells = [f'<td style="{cell};{mark if i in (1, 3) else ""}">{html.escape(str(v))}</td>'
                     for i, v in enumerate(values)]
            body.append("<tr>" + "".join(cells) + "</tr>")
        return (f'<table style="border-collapse:collapse"><caption style="text-align:left;'
                f'font-weight:bold">{html.escape(table.caption)}</caption><thead><tr>{head}</tr>'
                f'</thead><tbody>{"".join(body)}</tbody></table>')

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__


def _label(pid: int | str) -> str:
    return "host (this process)" if pid == "self" else f"PID {pid}"


def compare(pid: int | str, other: int | str = "self") -> Comparison:
    """``pid``'s namespaces next to ``other``'s (by default this process's, the host's)."""
    theirs, ours = namespace_ids(pid), namespace_ids(other)
    return Comparison((_label(pid), _label(other)),
                      tuple(NamespaceRow(kind, theirs[kind], ours[kind]) for kind in KINDS))


def lab_namespaces(kind: str) -> dict[int, list[int]]:
    """The lab's processes that do not share our ``kind`` namespace, grouped by its inode."""
    syscalls.namespace_flags([kind])
    ours = namespace_ids()[kind]
    found: dict[int, list[int]] = {}
    for pid in ownership.lab_processes():
        try:
            inode = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        except OSError:
            continue  # gone meanwhile, or a zombie
        if inode != ours:
            found.setdefault(inode, []).append(pid)
    return found


def explorer(processes: Mapping[str, int]) -> Any:
    """A dropdown of processes; picking one shows its namespaces next to this process's."""
    import ipywidgets as widgets
    from IPython.display import display

    if not processes:
        raise LabError("Give the explorer at least one process, as {'label': pid}.")
    choice = widgets.Dropdown(options=list(processes.items()), description="process")
    out = widgets.Output()

    def show(_: Any = None) -> None:
        out.clear_output(wait=True)
        with out:
            try:
                display(compare(choice.value))
            except LabError as err:
                print(err)

    choice.observe(show, names="value")
    show()
    return widgets.VBox([choice, out])


def command_pid(child: process.Child, timeout: float = 5) -> int:
    """The host PID of the process running ``child``'s command, once it runs.

    Two things stand between ``start`` returning and the answer. The child
    sets up its namespaces just after the fork, so until it has exec'd, its
    namespaces may still be the host's. And with a PID namespace ``child.pid``
    is only the parent that waits outside: unshare(CLONE_NEWPID) moves only
    the caller's *next* child into the new namespace, so the command is that
    child, PID 1 inside. An exec'd process is recognised by its command line,
    which until the exec is a copy of ours.
    """
    ours = Path("/proc/self/cmdline").read_bytes()
    in_pid_ns = "pid" in child.iso.namespaces or any(kind == "pid" for kind, _ in child.iso.enter)
    deadline = time.monotonic() + timeout
    while True:
        candidates = [child.pid]
        if in_pid_ns:
            children = Path(f"/proc/{child.pid}/task/{child.pid}/children")
            candidates = [int(p) for p in children.read_text().split()] if children.exists() else []
        for pid in candidates:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline and cmdline != ours:
                return pid
        # (Mid-exec the command line reads empty for a moment: the state tells the end.)
        if hoststate.process_state(child.pid) in ("", "Z") or child.returncode is not None:
            raise LabError(f"The command of PID {child.pid} ended before it ran: "
                           "child.wait() and child.stderr tell why.")
        if time.monotonic() > deadline:
            raise LabError(f"The command of PID {child.pid} did not start within {timeout} s.")
        time.sleep(0.005)


def start_waiting(seconds: int = 600, **isolation: Any) -> process.Child:
    """A ``sleep`` that holds the namespaces asked for, returned once it really runs in them.

    The notebooks' usual "box": something to look at from the host, enter,
    or keep. Stop it with ``.stop()`` or a ``with`` block.
    """
    child = process.start(["sleep", str(seconds)], **isolation)
    try:
        command_pid(child)
    except LabError:
        child.stop()
        raise
    return child


# -- running commands inside ---------------------------------------------------------

def _enter_target(target: int | str | os.PathLike,
                  kinds: Sequence[str] | None) -> tuple[int | Path, Sequence[str] | None]:
    """A PID, a kept name's directory, or one kept namespace file (then only that kind)."""
    if isinstance(target, int):
        return target, kinds
    path = Path(target)
    if path.is_file() and kinds is None:
        return path.parent, [path.name]
    return path, kinds


def enter(target: int | str | os.PathLike, argv: Sequence[str], kinds: Sequence[str] | None = None,
          timeout: float = 30) -> CommandResult:
    """Run ``argv`` inside a running process's namespaces, or inside kept ones.

    ``target`` is a PID, a kept namespace file (``keep`` returns one) or the
    directory holding a kept name's files. ``kinds`` picks which namespaces
    to join; by default every one that differs from ours.
    """
    where, kinds = _enter_target(target, kinds)
    return process.run_command(argv, timeout=timeout, enter=where, enter_namespaces=kinds)


def _compact(result: CommandResult) -> str:
    return (result.stdout + result.stderr).strip() or f"(nothing; exit {result.returncode})"


def side_by_side(pid: int, commands: Mapping[str, Sequence[str]],
                 kinds: Sequence[str] | None = None) -> Table:
    """Each command run twice: on the host, then inside ``pid``'s namespaces."""
    rows = []
    for label, argv in commands.items():
        outputs = []
        for inside in (False, True):
            try:
                result = enter(pid, argv, kinds) if inside else process.run_command(argv)
                outputs.append(_compact(result))
            except LabError as err:
                outputs.append(str(err))
        rows.append((label, *outputs))
    return Table(["", "on the host", f"inside PID {pid}'s namespaces"], rows)


# -- keeping a namespace with no process in it -----------------------------------------

@dataclass(frozen=True)
class Held:
    """A namespace kept alive by a bind mount of its /proc/PID/ns file."""

    name: str
    kind: str
    path: Path
    inode: int


def held() -> list[Held]:
    """The namespaces the lab keeps, from the mount table (a kept one is a mount of nsfs)."""
    found = {}
    for mount in hoststate.mounts():
        path = Path(mount.mountpoint)
        if path.parent.parent == HELD_DIR and mount.fstype == "nsfs":
            found[path] = Held(path.parent.name, path.name, path, os.stat(path).st_ino)
    return sorted(found.values(), key=lambda h: (h.name, h.kind))


def held_table() -> Table:
    rows = [(h.name, h.kind, h.inode, str(h.path)) for h in held()]
    return Table(["name", "namespace", "inode", "kept at"], rows or [("(none)", "", "", "")],
                 "Namespaces kept alive by a bind mount")


def _is_held(path: Path) -> bool:
    return any(h.path == path for h in held())


def keep(pid: int | str, kind: str, name: str) -> Path:
    """Keep ``pid``'s ``kind`` namespace alive after its processes end, as ``name``.

    The kernel frees a namespace when nothing refers to it any more; a mount
    of its /proc/PID/ns file is such a reference (``ip netns add`` does the
    same under /run/netns). Returns the file: enter it, or ``release`` it.
    """
    syscalls.namespace_flags([kind])
    if not _NAME.fullmatch(name):
        raise LabError(f"{name!r} cannot name a kept namespace: use letters, digits, '.', '_' "
                       "or '-' (up to 64), starting with a letter or digit.")
    source = Path(f"/proc/{pid}/ns/{kind}")
    if not source.exists():
        raise _gone(pid)
    if kind == "mnt" and os.stat(source).st_ino == namespace_ids()["mnt"]:
        raise LabError("A mount namespace cannot be kept inside itself: keep one that the "
                       "process has of its own (started with namespaces=['mnt']).")
    target = HELD_DIR / name / kind
    if _is_held(target):
        raise LabError(f"A {kind} namespace is already kept as {name!r} ({target}): "
                       "release it first, or pick another name.")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch()
    try:
        syscalls.mount(source, target, None, syscalls.MS_BIND)
    except LabError:
        _remove_file(target)
        raise
    return target


def _remove_file(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass  # other kinds are still kept under this name


def release(path: str | os.PathLike) -> None:
    """Let a kept namespace go: unmount its file (the kernel frees it once no process is in it)."""
    target = Path(path)
    if not _is_held(target):
        raise LabError(f"{path} is not a namespace the lab keeps: held() lists those.")
    syscalls.umount(target, syscalls.MNT_DETACH)
    _remove_file(target)


# -- clean up ----------------------------------------------------------------------

def stop_children() -> list[int]:
    """Stop every process the lab started from this Python process, and collect it.

    A notebook's boxes are all children of its kernel; finding them this way
    also stops a box whose cell failed before its variable was set.
    """
    me = os.getpid()
    alive = {pid for pid in process.live_children() if hoststate.read_process(pid) is not None}
    stopped = sorted(alive | {
        pid for pid in ownership.lab_processes()
        if (proc := hoststate.read_process(pid)) is not None and proc.ppid == me})
    for pid in stopped:
        try:
            os.killpg(pid, signal.SIGKILL)  # its group: the box's own children too
        except ProcessLookupError:
            pass
    for pid in stopped:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # collected meanwhile by its Child object
        process.forget_child(pid)
        ownership.unregister_process(pid)
    return stopped


def clean_up(names: Sequence[str] = (), scratch: Sequence[str] = (), ipc_objects: bool = False) -> Table:
    """A notebook's clean-up cell: stop its boxes, release the names it kept, remove its roots.

    ``scratch`` lists the purposes its roots were made with
    (``rootfs.new_busybox_root(purpose)``); they are found by name, so this
    works even when a cell failed before its variables were set.
    ``ipc_objects`` also removes the lab's IPC objects from the host.
    """
    stopped = stop_children()
    released = []
    for each in held():
        if each.name in names:
            release(each.path)
            released.append(f"{each.name}/{each.kind}")
    removed = []
    for purpose in scratch:
        for directory in sorted(ownership.TEMP_DIR.glob(f"{ownership.PREFIX}-{purpose}-*")):
            rootfs.remove_root(directory / "rootfs")
            removed.append(directory.name)
    rows = [("processes started here", ", ".join(map(str, stopped)) or "none"),
            ("kept namespaces", ", ".join(released) or "none"),
            ("scratch directories", ", ".join(removed) or "none")]
    if ipc_objects:
        rows.append(("the lab's IPC objects on the host",
                     "\n".join(str(o) for o in ipc.remove_lab_objects()) or "none"))
    return Table(["what", "removed"], rows, "Clean up")
