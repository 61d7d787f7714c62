"""What belongs to the lab, and how to remove exactly that.

Everything the lab creates carries a name it owns, so that ``clean`` can find
it again after a notebook's kernel was killed - and so that it never touches
what the machine made (its own cgroups, processes, links and mounts):

==================  ==========================================================
kind                how the lab recognises its own
==================  ==========================================================
directory, mount    under ``/run/labsupport``, ``/var/lib/labsupport`` or
                    ``/var/cache/labsupport``; named netns under /run/netns/lab*
link, bridge        a name starting with ``lab``
network namespace   a name starting with ``lab`` in /run/netns
cgroup              a directory named ``lab`` (or ``lab*``) right under a
                    hierarchy's root, and everything below it
loop device         its backing file lies in a lab directory
kept namespace      a bind mount under /run/labsupport/ns/<name>/<kind>
SysV IPC object     its key lies in the lab's range 0x1ab00000-0x1ab0ffff
POSIX msg queue     a name starting with ``/lab``
process             registered under /run/labsupport/procs (PID + start time),
                    or started with ``LABSUPPORT_OWNED`` in its environment,
                    or sitting in a lab cgroup
==================  ==========================================================
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError, require_root

PREFIX = "lab"
STATE_DIR = Path(os.environ.get("LAB_STATE_DIR", "/run/labsupport"))
WORK_DIR = Path(os.environ.get("LAB_WORK_DIR", "/var/lib/labsupport"))
CACHE_DIR = Path(os.environ.get("LAB_CACHE_DIR", "/var/cache/labsupport"))
PROCS_DIR = STATE_DIR / "procs"
TEMP_DIR = STATE_DIR / "tmp"
HELD_NS_DIR = STATE_DIR / "ns"
NETNS_DIR = Path("/run/netns")

#: Put into the environment of every command the lab starts.
MARKER_ENV = "LABSUPPORT_OWNED"

_IFNAMSIZ = 15  # the kernel's limit on interface names, without the NUL

#: SysV IPC keys the lab uses: "1ab" in hex, then 16 bits of its own.
IPC_KEYS = range(0x1AB00000, 0x1AB10000)


def owned_name(stem: str, max_len: int = _IFNAMSIZ, random_bytes: int = 2) -> str:
    """A fresh lab-owned name such as ``labweb3f2a``, short enough for a link. Names made by
    the hundred (a veth per container) ask for more ``random_bytes``: 4 hex digits would
    repeat within a few hundred."""
    name = f"{PREFIX}{stem}{os.urandom(random_bytes).hex()}"
    if len(name) > max_len:
        raise LabError(f"The name {name!r} is longer than {max_len} characters: use a shorter stem.")
    return name


def is_lab_name(name: str) -> bool:
    return name.startswith(PREFIX)


def lab_dirs() -> tuple[Path, ...]:
    return (STATE_DIR, WORK_DIR, CACHE_DIR)


def is_lab_path(path: str | os.PathLike) -> bool:
    """True for a path inside one of the lab's directories (or a lab netns file)."""
    resolved = Path(os.path.abspath(path))
    if resolved.parent == NETNS_DIR and is_lab_name(resolved.name):
        return True
    return any(resolved == d or d in resolved.parents for d in lab_dirs())


def temp_dir(purpose: str) -> Path:
    """A new lab-owned scratch directory; ``clean`` removes any that are left."""
    TEMP_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{purpose}-", dir=TEMP_DIR))


# -- processes ---------------------------------------------------------------

def register_process(pid: int) -> None:
    """Record a process the lab started, with its start time (PIDs get reused)."""
    proc = hoststate.read_process(pid)
    if proc is None:
        return
    PROCS_DIR.mkdir(parents=True, exist_ok=True)
    (PROCS_DIR / str(pid)).write_text(str(proc.start_ticks))


def unregister_process(pid: int) -> None:
    (PROCS_DIR / str(pid)).unlink(missing_ok=True)


def _registered_processes() -> list[int]:
    alive = []
    for entry in PROCS_DIR.glob("*") if PROCS_DIR.is_dir() else []:
        proc = hoststate.read_process(int(entry.name))
        try:
            started = entry.read_text().strip()
        except FileNotFoundError:
            continue  # it ended and unregistered itself (a shim does) since the listing
        if proc is not None and str(proc.start_ticks) == started:
            alive.append(proc.pid)
    return alive


def _has_marker(pid: int) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    # A whole entry named MARKER_ENV, not the text anywhere: FOO=LABSUPPORT_OWNED=1 is a stranger's.
    return any(entry.startswith(f"{MARKER_ENV}=".encode()) for entry in environ.split(b"\0"))


def lab_cgroups() -> list[Path]:
    """The lab's cgroup directories, deepest first (the order rmdir needs)."""
    found: list[Path] = []
    for mountpoint in hoststate.cgroup_mounts():
        top = mountpoint / PREFIX  # the lab's one parent group: a stranger's "labfoo" is not ours
        if top.is_dir():
            found.extend(Path(d) for d, _, _ in os.walk(top))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def processes_in_lab_cgroups() -> set[int]:
    """Containers and the lab's daemons (libvirtd): they live in lab cgroups, and belong to
    the notebooks that started them - a reset of another notebook leaves them alone."""
    return {pid for group in lab_cgroups() for pid in hoststate.pids_in_cgroup(group)}


def lab_processes() -> list[int]:
    """PIDs of live processes the lab started (never the caller itself)."""
    pids = set(_registered_processes())
    pids.update(p for p in hoststate.processes() if _has_marker(p))
    for group in lab_cgroups():
        pids.update(hoststate.pids_in_cgroup(group))
    pids.discard(os.getpid())
    return sorted(pids)


def lab_mounts() -> list[hoststate.Mount]:
    """The lab's mounts, deepest first (the order unmounting needs)."""
    ours = [m for m in hoststate.mounts() if is_lab_path(m.mountpoint)]
    return sorted(ours, key=lambda m: (m.mountpoint.count("/"), m.mount_id), reverse=True)


#: Names of the links and network namespaces the lab made, one empty file each: a name
#: that starts with "lab" is not enough - anyone may call a link labfoo.
MADE_DIR = STATE_DIR / "made"


def record_made(kind: str, name: str) -> None:
    """Note that the lab made this link ("links") or network namespace ("netns")."""
    (MADE_DIR / kind).mkdir(parents=True, exist_ok=True)
    (MADE_DIR / kind / name).touch()


def forget_made(kind: str, name: str) -> None:
    (MADE_DIR / kind / name).unlink(missing_ok=True)


def _made(kind: str) -> set[str]:
    folder = MADE_DIR / kind
    return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()


def lab_links() -> list[str]:
    """The host's links that the lab made (named lab*, and noted when made)."""
    made = _made("links")
    return sorted(n for n in hoststate.links() if is_lab_name(n) and n in made)


def lab_netns() -> list[str]:
    """The named network namespaces that the lab made."""
    made = _made("netns")
    return sorted(n for n in hoststate.named_netns() if is_lab_name(n) and n in made)


def is_lab_ipc(obj: hoststate.IpcObject) -> bool:
    """A SysV object with a key in the lab's range, or a POSIX queue named /lab*."""
    if obj.kind == "mqueue":
        return obj.name.startswith(f"/{PREFIX}")
    return int(obj.name, 16) in IPC_KEYS


def lab_loop_devices() -> list[str]:
    return sorted(dev for dev, backing in hoststate.loop_devices().items()
                  if is_lab_path(backing.removesuffix(" (deleted)")))


# -- clean -------------------------------------------------------------------

@dataclass
class CleanReport:
    """What ``clean`` removed, by kind, and what it could not."""

    removed: dict[str, list[str]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def note(self, kind: str, what: str) -> None:
        self.removed.setdefault(kind, []).append(what)

    def __str__(self) -> str:
        if not self.removed and not self.failed:
            return "Nothing to clean: the host holds nothing of the lab's."
        lines = [f"removed {len(items)} {kind}: {', '.join(items)}"
                 for kind, items in self.removed.items()]
        lines += [f"could not remove {what}" for what in self.failed]
        return "\n".join(lines)


def kill_processes(pids: Iterable[int]) -> list[int]:
    """SIGKILL those of ``pids`` the lab started (any other is left alone) and wait, up to
    3 s, until each is gone; returns them.

    Our own children among them are collected: called from a notebook, the
    kernel's children would otherwise stay behind as zombies.
    """
    lab = set(lab_processes())
    mine = [pid for pid in dict.fromkeys(pids) if pid in lab]
    for pid in mine:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for pid in mine:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass  # not ours, or already collected
        if not any(hoststate.read_process(p) is not None and hoststate.process_state(p) != "Z"
                   for p in mine):
            break
        time.sleep(0.02)
    for pid in mine:
        unregister_process(pid)
    return mine


def _kill_processes(report: CleanReport) -> None:
    for pid in kill_processes(lab_processes()):
        report.note("processes", str(pid))
    for entry in PROCS_DIR.glob("*") if PROCS_DIR.is_dir() else []:
        entry.unlink(missing_ok=True)


def _unmount_all(report: CleanReport) -> None:
    # One pass can reveal mounts that were stacked under others: repeat.
    for _ in range(5):
        found = lab_mounts()
        if not found:
            return
        for m in found:
            try:
                syscalls.umount(m.mountpoint, syscalls.MNT_DETACH)
                report.note("mounts", m.mountpoint)
            except LabError:
                pass  # already gone with a parent detached before it


def _run_quietly(argv: list[str]) -> bool:
    return subprocess.run(argv, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def _delete_links(report: CleanReport) -> None:
    for name in lab_links():
        if _run_quietly(["ip", "link", "delete", name]):
            report.note("links", name)
        elif name in hoststate.links():
            report.failed.append(f"link {name}")
    present = hoststate.links()
    for name in _made("links") - present:  # gone with their namespace or their partner
        forget_made("links", name)


def _delete_netns(report: CleanReport) -> None:
    for name in lab_netns():
        path = NETNS_DIR / name
        try:
            syscalls.umount(path, syscalls.MNT_DETACH)
        except LabError:
            pass  # an unmounted leftover file: just remove it
        path.unlink(missing_ok=True)
        forget_made("netns", name)
        report.note("network namespaces", name)


def _detach_loops(report: CleanReport) -> None:
    for dev in lab_loop_devices():
        if _run_quietly(["losetup", "--detach", dev]):
            report.note("loop devices", dev)
        else:
            report.failed.append(f"loop device {dev}")


def _remove_cgroups(report: CleanReport) -> None:
    for group in lab_cgroups():
        for _ in range(50):  # a killed task leaves its group a moment later
            try:
                group.rmdir()
                report.note("cgroups", str(group))
                break
            except FileNotFoundError:
                break
            except OSError:
                for pid in hoststate.pids_in_cgroup(group):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.02)
        else:
            report.failed.append(f"cgroup {group}")


def _remove_held_namespace_files(report: CleanReport) -> None:
    # Runs after _unmount_all: what is left under ns/ are the empty files the mounts sat on.
    for entry in HELD_NS_DIR.glob("*") if HELD_NS_DIR.is_dir() else []:
        shutil.rmtree(entry, ignore_errors=True)
        if entry.exists():
            report.failed.append(f"kept namespace files {entry}")
        else:
            report.note("kept namespace files", entry.name)


#: Scratch directories whose entries ``clean`` empties: the lab's own temporary
#: directories, and those its packages add with ``add_scratch`` (half-finished
#: image imports, records of background microVMs).
_SCRATCH: list[Path] = [TEMP_DIR]


def add_scratch(directory: Path) -> None:
    """Let ``clean`` empty ``directory``: what is in it is only ever left by an interrupted step."""
    if directory not in _SCRATCH:
        _SCRATCH.append(directory)


def _remove_scratch(report: CleanReport) -> None:
    for scratch in _SCRATCH:
        for entry in scratch.glob("*") if scratch.is_dir() else []:
            shutil.rmtree(entry, ignore_errors=True)
            report.note("temporary directories", entry.name)


# -- the registry that clean walks ------------------------------------------

@dataclass(frozen=True)
class Kind:
    """One kind of thing the lab makes, and how ``clean`` removes every one of it.

    ``order`` says when: whatever holds another thing goes first (a container's
    shim holds its network and cgroup, processes hold mounts and namespaces, a
    mount holds a loop device's file). ``remove`` finds the lab's own - by name,
    path, key or record, never by a guess - removes them and notes each in the
    report.
    """

    name: str
    order: int
    remove: Callable[[CleanReport], None]


_KINDS: dict[str, Kind] = {}


def register_kind(name: str, order: int, remove: Callable[[CleanReport], None]) -> None:
    """Add a kind to what ``clean`` removes; a package that makes something of its own calls
    this once, at import (the lab's face, ``labsupport.clean``, imports every such package)."""
    _KINDS[name] = Kind(name, order, remove)


def kinds() -> list[Kind]:
    """Every registered kind, in the order ``clean`` removes them."""
    return sorted(_KINDS.values(), key=lambda kind: kind.order)


register_kind("processes", 20, _kill_processes)
register_kind("mounts", 30, _unmount_all)
register_kind("kept namespace files", 40, _remove_held_namespace_files)
register_kind("links", 50, _delete_links)
register_kind("network namespaces", 60, _delete_netns)
register_kind("loop devices", 70, _detach_loops)
register_kind("cgroups", 80, _remove_cgroups)
register_kind("temporary directories", 100, _remove_scratch)


def clean() -> CleanReport:
    """Remove everything the lab left on the host, and nothing else: walk the registry.

    Only the kinds registered so far are walked: ``labsupport.clean()``
    imports every package that registers one first, and is what the CLI and
    the notebooks call. Running it twice is harmless: the second run finds
    nothing.
    """
    require_root("Cleaning up the lab")
    report = CleanReport()
    for kind in kinds():
        kind.remove(report)
    return report
