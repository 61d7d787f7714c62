"""Notebook 05 (mount namespace): checks that read the host's mount table and the learner's boxes.

A box is any process the lab started that has a mount namespace of its own;
its table is /proc/PID/mountinfo, the host's is this process's. The learner
works in /var/lib/labsupport/exercises/05/. Exercise 4 tries to undo a read-only bind mount
in a throw-away mount namespace and shows what the kernel allowed beside the learner's
prediction.
"""
from __future__ import annotations

import os
import shutil
from typing import Callable

from labsupport import ownership
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel import syscalls
from labsupport.kernel.errors import KernelError, describe_errno
from labsupport.namespaces import mount as mounts
from labsupport.process import run_function


@exercise("05", 1, "A mount that only your box sees")
def mount_only_in_a_box() -> Verdict:
    boxes = mounts.lab_boxes()
    if not boxes:
        return hint("No process the lab started has a mount namespace of its own right now. "
                    "Start one that keeps running, and check while it runs.")
    host = {(m.mountpoint, m.fstype) for m in mounts.table()}
    for pid, table in sorted(boxes.items()):
        own = [m for m in table if m.fstype == "tmpfs" and (m.mountpoint, m.fstype) not in host]
        if own:
            return passed(f"PID {pid} has a tmpfs ({own[0].source}) on {own[0].mountpoint} in its table "
                          f"of {len(table)} mounts; the host's table of {len(host)} has no tmpfs there. "
                          "One mount namespace (마운트 네임스페이스), one table of its own.")
    return hint(f"{len(boxes)} of the lab's processes have a mount namespace of their own, but their "
                "tables hold only copies of the host's mounts. Mount something inside one - a tmpfs "
                "needs no disk - and keep that process running.")


@exercise("05", 2, "A read-only window onto your notes")
def read_only_window() -> Verdict:
    work = exercise_dir("05", create=False)
    notes, window = work / "notes", work / "window"
    if not notes.is_dir():
        return hint(f"Make the directory {notes} first, with a file in it.")
    mount = mounts.at(window)
    if mount is None:
        return hint(f"{window} is not a mount point: nothing is mounted there. Which kind of mount "
                    "makes a directory that already exists appear at a second place?")
    seen, real = os.stat(window), os.stat(notes)
    if (seen.st_dev, seen.st_ino) != (real.st_dev, real.st_ino):
        return hint(f"Something ({mount.fstype} {mount.source}) is mounted at {window}, but it is not "
                    f"the directory {notes}.")
    if "ro" not in mount.options.split(","):
        return hint(f"{window} shows {notes}, and anyone may write through it. Read-only is a flag "
                    "of the mount, not of the files - and a bind mount does not take it on its "
                    "first call.")
    return passed(f"{window} is the directory {notes} (same device and inode), mounted {mount.options}: "
                  "the same files, writable at one place and read-only at the other. "
                  "`docker run -v notes:/window:ro` asks for exactly this.")


def _peer_group(propagation: str, tag: str) -> str | None:
    """The N of ``tag:N`` among mountinfo's optional fields, or None."""
    for word in propagation.split():
        if word.startswith(f"{tag}:"):
            return word.split(":", 1)[1]
    return None


@exercise("05", 3, "A one-way mirror: a slave of a shared mount")
def one_way_mirror() -> Verdict:
    mirror = exercise_dir("05", create=False) / "mirror"
    host = mounts.at(mirror)
    if host is None:
        return hint(f"{mirror} is not a mount point yet: propagation belongs to a mount, not to a "
                    "directory.")
    group = _peer_group(host.propagation, "shared")
    if group is None:
        return hint(f"The host's mount at {mirror} is {host.propagation}: to pass mounts on to anyone "
                    "it has to be in a peer group (look at mountinfo's optional fields).")
    copies = {pid: mounts.at(mirror, pid) for pid in mounts.lab_boxes()}
    copies = {pid: copy for pid, copy in copies.items() if copy is not None}
    for pid, copy in sorted(copies.items()):
        if _peer_group(copy.propagation, "master") == group:
            return passed(f"The host's {mirror} is shared:{group}; PID {pid}'s copy is "
                          f"{copy.propagation}: a slave of that group. Mounts made on the host below it "
                          "arrive in the box; nothing the box mounts comes back - runc's default "
                          "(rootfsPropagation rslave).")
    for pid, copy in sorted(copies.items()):
        if _peer_group(copy.propagation, "shared") == group:
            return hint(f"PID {pid}'s copy of {mirror} is shared:{group}, a peer of the host's: what the "
                        "box mounts there would come back to the host. One-way is another kind.")
    if copies:
        pid, copy = sorted(copies.items())[0]
        return hint(f"PID {pid}'s copy of {mirror} is {copy.propagation}: nothing the host mounts "
                    "will ever reach it.")
    return hint(f"No running box has {mirror} in its table. A mount namespace copies the table when "
                "it is made: start the box after the mount exists, and keep it running.")


def _attempt(action: Callable[[], object]) -> str:
    """'done', or the kernel's reason for refusing."""
    try:
        action()
    except KernelError as err:
        return f"refused ({describe_errno(err.errno)})"
    except OSError as err:
        return f"refused ({describe_errno(err.errno or 0)})"
    return "done"


def _write(directory: str) -> None:
    with open(os.path.join(directory, "probe.txt"), "w") as probe:
        probe.write("written\n")


def _read_only_story(directory: str) -> dict[str, str]:
    """In a throw-away mount namespace: a read-only bind mount, then who may make it writable."""
    syscalls.mount(directory, directory, None, syscalls.MS_BIND)
    syscalls.mount(None, directory, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)
    seen = {"write while read-only": _attempt(lambda: _write(directory))}
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # root of a user namespace of its own, with a mount namespace it owns
        def remount() -> None:
            syscalls.unshare(syscalls.CLONE_NEWUSER | syscalls.CLONE_NEWNS)
            with open("/proc/self/uid_map", "w") as uid_map:
                uid_map.write("0 0 1")
            syscalls.mount(None, directory, None, syscalls.MS_REMOUNT | syscalls.MS_BIND)
        os.write(write_end, _attempt(remount).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    seen["root of a new user namespace remounts it writable"] = os.read(read_end, 200).decode()
    seen["this namespace's root remounts it writable"] = _attempt(
        lambda: syscalls.mount(None, directory, None, syscalls.MS_REMOUNT | syscalls.MS_BIND))
    seen["write afterwards"] = _attempt(lambda: _write(directory))
    return seen


@exercise("05", 4, "Predict who can make a read-only mount writable again, then try")
def read_only_is_not_locked() -> Verdict:
    guess = predictions.required("05", 4, "for whether root can make a read-only bind mount "
                                 "writable again - root of the mount's own namespace, and root "
                                 "of a user namespace made below it")
    if isinstance(guess, Verdict):
        return guess
    scratch = ownership.temp_dir("ex05")
    try:
        seen = run_function(_read_only_story, str(scratch), namespaces=["mnt"], timeout=10)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    story = "; ".join(f"{what}: {result}" for what, result in seen.items())
    return passed(predictions.beside(guess, story) + " A read-only flag is no wall against "
                  "CAP_SYS_ADMIN in the mount's own user namespace: one remount undoes it. Only a "
                  "less privileged namespace finds it locked - which is why a runtime drops "
                  "CAP_SYS_ADMIN, or gives the container a user namespace of its own.")


def reset() -> list[str]:
    """What notebook 05's exercises leave besides the exercise directory, removed (``reset 05``)."""
    return [f"stopped PID {p}" for p in ownership.kill_processes(list(mounts.lab_boxes()))]
