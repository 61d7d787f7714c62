"""chroot: give a process another ``/`` - and see how little else that changes.

Notebook 01 builds a root by hand, runs programs in it, looks at the host
from inside it and then breaks out of it. The work happens here; every
function returns something a notebook displays as a table and a test can
read field by field.

Everything touched lives in lab scratch directories (``ownership.temp_dir``),
so ``python -m labsupport clean`` removes it even when a cell failed half-way.
Code that runs *inside* a root (``_look_around``, ``classic_escape``) runs in
a forked copy of this Python: it may only use modules already imported here.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from labsupport import ownership, process
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.namespaces import rootfs

#: The directory the classic escape makes inside the root and chroots into.
HATCH = "escape-hatch"
#: The file a process inside the root creates, to see who owns it on the host.
MADE_INSIDE = "made-inside.txt"
#: The source name of the tmpfs mounted from inside, so its mountinfo line is easy to spot.
MOUNT_SOURCE = "lab-chroot-tmpfs"


# -- building and entering a root ----------------------------------------------

def libraries_table(programs: Sequence[str]) -> Table:
    """What each program needs besides itself: its shared libraries, as ``ldd`` finds them."""
    rows = []
    for name in programs:
        path = rootfs.find_program(name)
        libs = rootfs.shared_libraries(path)
        rows.append((name, f"{path} -> {path.resolve()}" if path.is_symlink() else str(path),
                     "\n".join(map(str, libs)) or "(static: none)"))
    return Table(["program", "on the host", "shared libraries it loads (ldd)"], rows,
                 "What has to be copied")


def tree_table(root: str | os.PathLike) -> Table:
    """Every file in a root: its path inside, its size, and the host file it is a copy of."""
    root = Path(root)
    rows, total = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        inside = Path("/") / path.relative_to(root)
        size = path.stat().st_size
        total += size
        rows.append((str(inside), f"{size / 1024:,.0f} KiB", str(inside) if inside.exists() else "-"))
    rows.append((f"{len(rows)} files", f"{total / 1024:,.0f} KiB", ""))
    return Table(["path inside the root", "size", "copy of the host's"], rows, f"The tree in {root}")


def copy_program_only(root: str | os.PathLike, program: str) -> Path:
    """Copy one program into an empty root *without* its libraries (to see it fail)."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise LabError(f"{root} is not empty: pick a new directory.")
    host = rootfs.find_program(program).resolve()
    inside = root / host.relative_to("/")
    inside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(host, inside)
    return Path("/") / inside.relative_to(root)


def _compact(output: str, max_lines: int = 6) -> str:
    """A long listing on one wrapped line, so a table row stays short."""
    lines = output.splitlines()
    return ", ".join(lines) if len(lines) > max_lines else output


def host_and_inside(root: str | os.PathLike, commands: Sequence[Sequence[str]]) -> Table:
    """Run each command twice - on the host, then chrooted into ``root`` - and put the outputs side by side."""
    rows = []
    for argv in commands:
        outputs = []
        for where in (None, root):
            try:
                result = process.run_command(argv, root=where, timeout=10)
                outputs.append(_compact((result.stdout + result.stderr).strip())
                               or f"(exit {result.returncode})")
            except LabError as err:
                outputs.append(str(err))
        rows.append((" ".join(argv), *outputs))
    return Table(["command", "on the host", "inside the chroot"], rows)


# -- what chroot does not isolate -----------------------------------------------

@dataclass(frozen=True)
class Aspect:
    """One row of the host-vs-inside comparison."""

    name: str
    host: str
    inside: str
    isolated: bool


@dataclass
class Comparison:
    """What the host and a chrooted process each see; shows as a table."""

    aspects: list[Aspect]
    inside: dict[str, Any]
    mount_line: str  # the host's mountinfo line for the mount made inside ("" if none)

    def __getitem__(self, name: str) -> Aspect:
        for aspect in self.aspects:
            if aspect.name == name:
                return aspect
        raise KeyError(name)

    def table(self) -> Table:
        return Table(["aspect", "on the host (this Python)", "inside the chroot", "isolated?"],
                     [(a.name, a.host, a.inside, "yes" if a.isolated else "NO")
                      for a in self.aspects])

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __str__(self) -> str:
        return str(self.table())


def _interfaces() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())


def _pids_in(proc: str) -> list[int]:
    return [int(entry) for entry in os.listdir(proc) if entry.isdigit()]


def _look_around(kernel_pid: int) -> dict[str, Any]:
    """Runs chrooted: what can a process in here see and do on the host?

    It mounts /proc just long enough to count processes, and leaves a tmpfs on
    /mnt for the host to find; ``compare_host_and_chroot`` removes that one.
    """
    seen: dict[str, Any] = {"root": sorted(os.listdir("/")), "pid": os.getpid(),
                            "uid": os.getuid(), "hostname": os.uname().nodename,
                            "interfaces": _interfaces()}
    try:
        os.kill(kernel_pid, 0)  # signal 0: "may I signal it?" - delivers nothing
        seen["may_signal"] = True
    except OSError:
        seen["may_signal"] = False
    os.makedirs("/proc", exist_ok=True)
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    try:
        pids = _pids_in("/proc")
    finally:
        syscalls.umount("/proc")
    seen["pids"], seen["sees_kernel"] = len(pids), kernel_pid in pids
    with open(f"/{MADE_INSIDE}", "w") as out:
        out.write("written by a chrooted process\n")
    os.makedirs("/mnt", exist_ok=True)
    syscalls.mount(MOUNT_SOURCE, "/mnt", "tmpfs", 0, "size=1m")
    return seen


def _mountinfo_lines_at(mountpoint: Path) -> list[str]:
    """The lines of the host's own /proc/self/mountinfo whose mount point is ``mountpoint``."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line for line in lines if line.split()[4] == str(mountpoint)]


def _unmount_all_at(mountpoint: Path) -> None:
    while _mountinfo_lines_at(mountpoint):
        syscalls.umount(mountpoint, syscalls.MNT_DETACH)


def _short_list(items: Sequence[Any], keep: int = 8) -> str:
    items = list(map(str, items))
    more = f" ... (+{len(items) - keep})" if len(items) > keep else ""
    return ", ".join(items[:keep]) + more


def compare_host_and_chroot(root: str | os.PathLike) -> Comparison:
    """Look at files, processes, network, hostname, users and mounts from both sides.

    The chrooted side runs ``_look_around``; the host side reads the same
    things here, then finds the file and the mount the chrooted process left
    - and removes the mount again, so the host is as before.
    """
    root = Path(root).resolve()
    kernel = os.getpid()
    (root / MADE_INSIDE).unlink(missing_ok=True)
    try:
        inside = process.run_function(_look_around, kernel, root=root)
        mount_lines = _mountinfo_lines_at(root / "mnt")
    finally:
        _unmount_all_at(root / "mnt")
    owner = (root / MADE_INSIDE).stat().st_uid
    host_root = sorted(os.listdir("/"))
    aspects = [
        Aspect("files: what / holds", _short_list(host_root), ", ".join(inside["root"]), True),
        Aspect("processes: PIDs in /proc", f"{len(_pids_in('/proc'))}",
               f"{inside['pids']} (after mounting /proc inside); sees this Python's PID {kernel}: "
               f"{'yes' if inside['sees_kernel'] else 'no'}", False),
        Aspect("processes: may signal this Python", "-",
               f"{'yes' if inside['may_signal'] else 'no'}: os.kill({kernel}, 0) was allowed", False),
        Aspect("network interfaces", ", ".join(_interfaces()), ", ".join(inside["interfaces"]), False),
        Aspect("hostname", os.uname().nodename, inside["hostname"], False),
        Aspect("users: who am I", f"uid {os.getuid()} ({pwd.getpwuid(os.getuid()).pw_name})",
               f"uid {inside['uid']}", False),
        Aspect("users: a file made inside", f"{root / MADE_INSIDE} is owned by uid {owner} "
               f"({pwd.getpwuid(owner).pw_name})", f"/{MADE_INSIDE}", False),
        Aspect("mounts: tmpfs on /mnt made inside", "host's /proc/self/mountinfo:\n"
               + ("\n".join(mount_lines) or "(not there)"), "mount(tmpfs, /mnt)", not mount_lines),
    ]
    return Comparison(aspects, inside, mount_lines[0] if mount_lines else "")


def mountinfo_fields(line: str) -> Table:
    """One /proc/self/mountinfo line taken apart, field by field (see proc(5))."""
    left, _, right = line.partition(" - ")
    fields = left.split()
    fstype, source, options = (right.split() + ["", "", ""])[:3]
    names = [("mount ID", fields[0]), ("parent mount ID", fields[1]), ("device major:minor", fields[2]),
             ("root of the mount within its filesystem", fields[3]), ("mount point", fields[4]),
             ("mount options", fields[5]), ("propagation (optional fields)", " ".join(fields[6:]) or "-"),
             ("filesystem type", fstype), ("source", source), ("superblock options", options)]
    return Table(["field", "value"], names, "mountinfo, field by field")


# -- the classic escape -----------------------------------------------------------

@dataclass(frozen=True)
class EscapeOutcome:
    """Where the classic escape ended up, and whether it read the host's marker file."""

    how: str
    root_after: list[str]
    marker: str
    marker_text: str | None

    @property
    def escaped(self) -> bool:
        return self.marker_text is not None

    def row(self) -> tuple[str, str, str, str]:
        return (self.how, _short_list(self.root_after, 10),
                repr(self.marker_text) if self.escaped else "No such file or directory",
                "YES - it is on the host's /" if self.escaped else "no - still in the container")

    def _repr_html_(self) -> str:
        return outcomes_table([self])._repr_html_()


def outcomes_table(outcomes: Sequence[EscapeOutcome]) -> Table:
    """Several escape attempts, one row each."""
    return Table(["root changed with", "'/' after the climb", "reading the host's marker file",
                  "escaped?"], [o.row() for o in outcomes], "The classic chroot escape")


def write_host_marker() -> Path:
    """A file on the host, outside every root, in its own lab scratch directory."""
    marker = ownership.temp_dir("marker") / "marker.txt"
    marker.write_text(f"written on the host by PID {os.getpid()} at {time.strftime('%H:%M:%S')}\n")
    return marker


def classic_escape(marker: str) -> tuple[list[str], str | None]:
    """Runs as root inside a root: break out, then try to read ``marker`` (a host path).

    chroot() changes the root but not the working directory. So: chroot into
    a subdirectory - the working directory is now *outside* the new root, and
    ".." is never stopped by a root it never passes - climb to the real top,
    and make that the root again.
    """
    os.makedirs(f"/{HATCH}", exist_ok=True)
    os.chroot(f"/{HATCH}")
    for _ in range(64):
        os.chdir("..")
    os.chroot(".")
    os.chdir("/")
    try:
        with open(marker) as found:
            text: str | None = found.read()
    except FileNotFoundError:
        text = None
    return sorted(os.listdir("/")), text


def try_escape(root: str | os.PathLike, marker: str | os.PathLike, pivot: bool = False) -> EscapeOutcome:
    """Run the classic escape inside ``root``: chrooted, or pivot_root-ed in a mount namespace."""
    if pivot:
        seen, text = process.run_function(classic_escape, str(marker), root=root,
                                          namespaces=["mnt"], pivot=True)
        how = "pivot_root + mount namespace"
    else:
        seen, text = process.run_function(classic_escape, str(marker), root=root)
        how = "chroot"
    return EscapeOutcome(how, seen, str(marker), text)


# -- under the hood ------------------------------------------------------------

@contextmanager
def waiting_process_in(root: str | os.PathLike, seconds: float = 60) -> Iterator[int]:
    """A chrooted process that just waits, so the host can look at it; stopped on exit."""
    root = Path(root).resolve()
    child = process.Child(lambda: time.sleep(seconds), process.Isolation.make(root=root))
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the child chroots a moment after fork
            try:
                if os.readlink(f"/proc/{child.pid}/root") == str(root):
                    break
            except OSError:
                pass
            time.sleep(0.01)
        yield child.pid
    finally:
        child.stop()


def proc_links_table(pid: int) -> Table:
    """What the host reads in /proc/PID about a process's root, next to its own."""
    def link(path: str) -> str:
        try:
            return os.readlink(path)
        except OSError as err:
            return f"({err.strerror})"

    rows = [(f"/proc/{pid}/root", link(f"/proc/{pid}/root"), "the process's / - a host path"),
            (f"/proc/{pid}/cwd", link(f"/proc/{pid}/cwd"), "its working directory"),
            (f"/proc/{pid}/exe", link(f"/proc/{pid}/exe"), "its program file, opened before the chroot"),
            (f"ls /proc/{pid}/root/", ", ".join(sorted(os.listdir(f"/proc/{pid}/root"))),
             "the host can look into the root through it"),
            (f"/proc/{os.getpid()}/root", link(f"/proc/{os.getpid()}/root"), "this Python process's own root")]
    return Table(["what the host reads", "value", "meaning"], rows)


def _mountinfo_of(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/mountinfo").read_text().splitlines()


def _pivoted_view() -> tuple[str, list[str]]:
    """Runs after pivot_root, with a fresh /proc: this process's mount namespace and table."""
    return os.readlink("/proc/self/ns/mnt"), _mountinfo_of("self")


def mount_views(root: str | os.PathLike) -> Table:
    """The mount table as three processes see it: the host, a chrooted one, a pivot_root-ed one.

    /proc/PID/ns/mnt names the mount namespace (the table itself);
    /proc/PID/mountinfo lists the part of it below the process's root. A
    chrooted process shares the host's table and only sees none of it; after
    pivot_root in a new namespace the table itself is a different one.
    """
    root = Path(root)
    (root / "proc").mkdir(exist_ok=True)  # somewhere to mount the pivoted side's /proc
    with waiting_process_in(root) as pid:
        chrooted = (os.readlink(f"/proc/{pid}/ns/mnt"), _mountinfo_of(pid))
    pivoted = process.run_function(_pivoted_view, root=root, namespaces=["mnt"],
                                   pivot=True, mount_proc=True)
    host = (os.readlink("/proc/self/ns/mnt"), _mountinfo_of("self"))
    rows = [("this Python (host)", host[0], f"{len(host[1])} lines", "the host's whole table"),
            (f"chrooted (PID {pid})", chrooted[0], "\n".join([f"{len(chrooted[1])} lines", *chrooted[1]]),
             "the SAME table; mounts outside its root are only left out of its view"),
            ("pivot_root + mount namespace", pivoted[0], "\n".join([f"{len(pivoted[1])} lines", *pivoted[1]]),
             "a table of its own: the new root and its /proc; the old root was detached")]
    return Table(["process", "/proc/PID/ns/mnt", "/proc/PID/mountinfo", "what it means"], rows,
                 "One mount table, or two?")


# -- clean up --------------------------------------------------------------------

def processes_rooted_in(directory: str | os.PathLike) -> list[int]:
    """PIDs of the lab's processes whose root (/proc/PID/root) is ``directory`` or below it."""
    directory = Path(directory).resolve()
    found = []
    for pid in ownership.lab_processes():
        try:
            proc_root = Path(os.readlink(f"/proc/{pid}/root"))
        except OSError:
            continue
        if proc_root == directory or directory in proc_root.parents:
            found.append(pid)
    return found


def stop_processes_rooted_in(directory: str | os.PathLike) -> list[int]:
    """Stop the lab's processes still running in a root below ``directory``; others are left alone."""
    return ownership.kill_processes(processes_rooted_in(directory))


def remove_scratch(*directories: str | os.PathLike) -> list[Path]:
    """Remove lab scratch directories, first unmounting anything the lab left inside them."""
    removed = []
    for directory in directories:
        scratch = Path(directory).resolve()
        while scratch.parent != ownership.TEMP_DIR and ownership.TEMP_DIR in scratch.parents:
            scratch = scratch.parent  # a root inside a scratch dir: remove the whole scratch dir
        if scratch.parent != ownership.TEMP_DIR:
            raise LabError(f"{directory} is not a lab scratch directory; it was left alone.")
        for mount in ownership.lab_mounts():  # deepest first
            if Path(mount.mountpoint) == scratch or scratch in Path(mount.mountpoint).parents:
                try:
                    syscalls.umount(mount.mountpoint, syscalls.MNT_DETACH)
                except LabError:
                    pass  # already gone, detached together with a mount above it
        if scratch.exists():
            shutil.rmtree(scratch)
            removed.append(scratch)
    return removed


#: The scratch directories notebook 01 makes (``temp_dir`` purposes).
NOTEBOOK_SCRATCH = ("chroot", "marker")


def clean_up_notebook(exercises: str | os.PathLike | None = None) -> Table:
    """Notebook 01's clean-up cell: what it started and made, removed; the exercise work stays.

    Stops the lab's processes still running in a root of this notebook (and
    in ``exercises``, the learner's own root), then removes the notebook's
    scratch directories - found by name, so it works even when a cell failed
    before its variables were set.
    """
    scratch = [d for purpose in NOTEBOOK_SCRATCH
               for d in sorted(ownership.TEMP_DIR.glob(f"{ownership.PREFIX}-{purpose}-*"))]
    stopped = [pid for place in [*scratch, *([exercises] if exercises else [])]
               for pid in stop_processes_rooted_in(place)]
    removed = remove_scratch(*scratch)
    return Table(["what", "removed"], [
        ("processes still running in a root", ", ".join(map(str, stopped)) or "none"),
        ("scratch directories", "\n".join(str(d) for d in removed) or "none"),
        ("your exercise directory", f"kept: {exercises}" if exercises else "-")])
