"""The cgroup filesystem: every group is a directory, every knob a file.

Both versions are driven the same way - ``mkdir`` makes a group, writing a
PID to ``cgroup.procs`` moves a process, writing a number to a file sets a
limit, ``rmdir`` removes an empty group - so the file handling both back ends
share lives here: reads and writes that turn an errno into one plain
sentence, and making and removing directories under the lab's parent.

The lab's groups always live at ``<hierarchy>/lab/<name>``, by absolute path,
never below the group the current process happens to sit in (on the lab's
reference machine that is the machine's own ``memory:/process_api/...``).
``ownership.clean`` finds and removes everything under ``<hierarchy>/lab``.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import time
from pathlib import Path
from typing import Callable, Optional

from labsupport import ownership
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError, describe_errno

#: The directory right under each hierarchy's root that holds every lab group.
LAB_PARENT = ownership.PREFIX

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# What a refused write usually means, per errno, in a learner's words.
_WRITE_HINTS = {
    errno.EINVAL: "the kernel does not accept this value in this file",
    errno.EBUSY: "the group is using more than the new limit and the kernel could not reclaim it",
    errno.ENOENT: "the group or the file does not exist (removed already?)",
    errno.EOPNOTSUPP: "this kernel does not support it here",
    errno.ENOSPC: "the group cannot take processes (a v2 group whose children have controllers "
                  "enabled, or a v1 cpuset without CPUs)",
    errno.EPERM: "not permitted (the lab must run as root)",
    errno.EACCES: "not permitted (the lab must run as root)",
}


def check_name(name: str) -> str:
    """A group name is one path component: letters, digits, '.', '_' and '-'."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise LabError(f"{name!r} is not a usable group name: use up to 64 letters, digits, "
                       "'_', '.' or '-', starting with a letter or digit (e.g. web).")
    return name


def lab_dir(hierarchy: Path, name: str) -> Path:
    """``<hierarchy>/lab/<name>``: where a lab group lives in one hierarchy."""
    return hierarchy / LAB_PARENT / check_name(name)


def is_lab_group(path: Path, hierarchies: list[Path]) -> bool:
    """True for a directory strictly below ``<hierarchy>/lab`` of one of the hierarchies."""
    resolved = Path(os.path.abspath(path))
    return any(resolved.parent == h / LAB_PARENT for h in hierarchies)


def read(path: Path) -> str:
    """A cgroup file's text, or a LabError that says which file is missing."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise LabError(f"{path} does not exist: the group was removed, or this kernel "
                       "has no such file.") from None
    except OSError as err:
        raise LabError(f"Cannot read {path}: {describe_errno(err.errno or 0)}.") from None


def read_keyed(path: Path) -> dict[str, int]:
    """'key value' lines (memory.events, cpu.stat, pids.events) as a dict."""
    values = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def write(path: Path, value: str) -> None:
    """Write one value to a cgroup file, in one write(2) as the kernel wants it."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        raise LabError(f"{path} does not exist: the group was removed, or this kernel has "
                       "no such file.") from None
    try:
        os.write(fd, value.encode())
    except OSError as err:
        hint = _WRITE_HINTS.get(err.errno or 0, "see the kernel log (dmesg)")
        raise LabError(f"The kernel refused {value.strip()!r} in {path}: "
                       f"{describe_errno(err.errno or 0)} - {hint}.") from None
    finally:
        os.close(fd)


def move_process(group: Path, pid: int) -> None:
    """Write ``pid`` to the group's cgroup.procs (all its threads move with it)."""
    try:
        fd = os.open(group / "cgroup.procs", os.O_WRONLY)
    except FileNotFoundError:
        raise LabError(f"The group {group} does not exist (removed already?).") from None
    try:
        os.write(fd, str(pid).encode())
    except ProcessLookupError:
        raise LabError(f"The process {pid} is gone (or never existed): start it again "
                       "and move the new PID.") from None
    except OSError as err:
        hint = _WRITE_HINTS.get(err.errno or 0, "see the kernel log (dmesg)")
        raise LabError(f"Cannot move process {pid} into {group}: "
                       f"{describe_errno(err.errno or 0)} - {hint}.") from None
    finally:
        os.close(fd)


def make(group: Path, prepare_parent: Optional[Callable[[Path], None]] = None) -> None:
    """mkdir the group (and the lab parent), tolerating a parent removed at the same moment.

    Several lab groups share ``<hierarchy>/lab``; the last one removed takes
    the parent with it, so a concurrent create may find it gone and retry.
    ``prepare_parent`` runs between the two mkdirs (v2 enables controllers there).
    """
    for _ in range(20):
        try:
            group.parent.mkdir(exist_ok=True)
            if prepare_parent is not None:
                prepare_parent(group.parent)
            group.mkdir()
            return
        except FileExistsError:
            raise LabError(f"The group {group} exists already: pick another name, or remove "
                           "it first.") from None
        except FileNotFoundError:
            time.sleep(0.01)  # the lab parent vanished between the two mkdirs
        except LabError:
            if group.parent.exists():
                raise
            time.sleep(0.01)  # ... or while its controllers were being enabled
        except OSError as err:
            raise LabError(f"Cannot create the group {group}: {describe_errno(err.errno or 0)}.") from None
    raise LabError(f"Cannot create the group {group}: its parent keeps disappearing.")


def kill_all(groups: list[Path], timeout: float = 5.0) -> None:
    """SIGKILL every process in the groups until they are empty.

    A fork bomb can fork between our reading cgroup.procs and our kill, so
    read and kill again until a read finds no one.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {pid for group in groups for pid in hoststate.pids_in_cgroup(group)}
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    raise LabError(f"The processes in {groups[0]} did not all die within {timeout} s.")


def remove(group: Path, timeout: float = 5.0) -> None:
    """rmdir the group once its last (killed) process has left it; then the lab parent if empty."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            group.rmdir()
            break
        except FileNotFoundError:
            break
        except OSError as err:
            # A killed process leaves its group a moment after it dies.
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise LabError(f"Cannot remove the group {group}: "
                               f"{describe_errno(err.errno or 0)}.") from None
            time.sleep(0.01)
    try:
        group.parent.rmdir()
    except OSError:
        pass  # another lab group still lives there (or it went already)
