"""IPC objects - System V shared memory and message queues, POSIX message queues - and who sees them.

Processes that talk through the kernel find each other's objects by a
number (a SysV key) or a name (a POSIX queue's ``/name``). An IPC namespace
is a separate set of those keys and names: an object made in one is simply
not there in another, even under the same key. (POSIX *shared memory* is
different: it is files in the tmpfs on /dev/shm, so the mount namespace,
not the IPC namespace, decides who sees it.)

Python has none of these calls; the kernel gateway makes them
(labsupport.kernel.sysv). Every function here takes ``inside=PID`` to act in that process's IPC namespace instead
of ours: it then runs in a child that joined the namespace (setns), so a
Jupyter kernel never changes its own.

Everything the lab makes carries a lab-owned key (``ownership.IPC_KEYS``) or a
``/lab`` name, so ``labsupport clean`` finds what a notebook left on the host.
"""
from __future__ import annotations

import os
import secrets
from typing import Any, Callable, Sequence

from labsupport import ownership, process
from labsupport.kernel import hoststate, sysv
from labsupport.kernel.errors import LabError
from labsupport.kernel.hoststate import IpcObject
from labsupport.kernel.tables import Table
from labsupport.process import residue

#: The prefix of every POSIX queue the lab makes (``clean`` removes /lab*).
QUEUE_PREFIX = f"/{ownership.PREFIX}"


# -- keys and names -------------------------------------------------------------

def lab_key() -> int:
    """A fresh SysV key from the lab's range, so ``clean`` can recognise the object."""
    return ownership.IPC_KEYS[secrets.randbelow(len(ownership.IPC_KEYS))]


def lab_queue_name(stem: str = "q") -> str:
    """A fresh POSIX queue name such as ``/labq3f2a``."""
    return f"/{ownership.owned_name(stem, max_len=64)}"


def _checked_key(key: int | None) -> int:
    if key is None:
        return lab_key()
    if not isinstance(key, int) or not 0 < key <= 0xFFFFFFFF:
        raise LabError(f"A SysV key is a number from 1 to 0xffffffff, not {key!r}.")
    return key


def _checked_name(name: str | None) -> str:
    if name is None:
        return lab_queue_name()
    if not name.startswith("/") or "/" in name[1:] or len(name) < 2:
        raise LabError(f"A POSIX queue name is a slash and a name, such as /labq, not {name!r}.")
    return name


def _key_text(key: int) -> str:
    return f"{key:#010x}"


# -- acting in an IPC namespace -------------------------------------------------

def _where(inside: int | None) -> str:
    return "on the host" if inside is None else f"in PID {inside}'s IPC namespace"


def _run(func: Callable[..., Any], *args: Any, inside: int | None) -> Any:
    """``func(*args)`` here, or in a child that joined ``inside``'s IPC namespace."""
    if inside is None:
        return func(*args)
    return process.run_function(func, *args, enter=inside, enter_namespaces=["ipc"])


# -- the learner's functions -------------------------------------------------------

def make_shared_memory(key: int | None = None, text: str = "", inside: int | None = None) -> IpcObject:
    """A SysV shared memory segment (one page) holding ``text``, on the host or ``inside``."""
    key = _checked_key(key)
    ident = _run(sysv.make_shm, key, text, inside=inside)
    return IpcObject("shm", _key_text(key), ident, f"made {_where(inside)}")


def read_shared_memory(key: int, inside: int | None = None) -> str:
    """The text in the segment with this key, as a process in that IPC namespace attaches it."""
    return _run(sysv.read_shm, _checked_key(key), inside=inside)


def make_message_queue(key: int | None = None, text: str = "", inside: int | None = None) -> IpcObject:
    """A SysV message queue, with ``text`` as its first message if given."""
    key = _checked_key(key)
    ident = _run(sysv.make_msg, key, text, inside=inside)
    return IpcObject("msg", _key_text(key), ident, f"made {_where(inside)}")


def make_posix_queue(name: str | None = None, text: str = "", inside: int | None = None) -> IpcObject:
    """A POSIX message queue (``/name``), with ``text`` as its first message if given."""
    name = _checked_name(name)
    _run(sysv.make_mqueue, name, text, inside=inside)
    return IpcObject("mqueue", name, detail=f"made {_where(inside)}")


def remove(obj: IpcObject, inside: int | None = None) -> None:
    """Remove an object (from the host, or from ``inside``'s IPC namespace)."""
    _run(sysv.remove, obj.kind, obj.name, obj.ident, inside=inside)


def objects(inside: int | str | os.PathLike | None = None) -> set[IpcObject]:
    """Every IPC object of an IPC namespace: ours, a PID's, or a kept one (its namespace file directory)."""
    if inside is None:
        return residue.ipc_objects()
    return process.run_function(hoststate.ipc_in_own_namespace, namespaces=["mnt"],
                                enter=inside, enter_namespaces=["ipc"])


def _seen(obj: IpcObject, present: set[IpcObject]) -> str:
    """'yes (id 3)' when an object of the same kind and key or name is there; ids differ per namespace."""
    for other in present:
        if (other.kind, other.name) == (obj.kind, obj.name):
            return f"yes (id {other.ident})" if other.ident >= 0 else "yes"
    return "no"


def visibility(made: Sequence[IpcObject], pid: int) -> Table:
    """Which of these objects the host sees, and which a process in ``pid``'s IPC namespace sees."""
    host, inside = objects(), objects(inside=pid)
    rows = [(obj.title, obj.detail, _seen(obj, host), _seen(obj, inside)) for obj in made]
    return Table(["object", "where it was made", "the host sees it", f"PID {pid} sees it"], rows,
                 "One key or name, looked up on each side")


def listing(inside: int | None = None) -> Table:
    """The IPC objects of one namespace, as a table (what ``ipcs`` and ``ls /dev/mqueue`` show together)."""
    rows = [(obj.title, obj.ident if obj.ident >= 0 else "-", obj.detail)
            for obj in sorted(objects(inside), key=str)]
    return Table(["object", "id", "holds"], rows or [("(none)", "", "")],
                 f"IPC objects seen {_where(inside)}")


def lab_objects() -> list[IpcObject]:
    """The lab's IPC objects in this process's IPC namespace (a box's die with the box)."""
    return sorted((obj for obj in objects() if ownership.is_lab_ipc(obj)), key=str)


def remove_lab_objects() -> list[IpcObject]:
    """Remove the lab's IPC objects from the host's namespace; others' objects are left alone."""
    found = lab_objects()
    for obj in found:
        remove(obj)
    return found


def _clean(report: ownership.CleanReport) -> None:
    for obj in lab_objects():
        try:
            remove(obj)
            report.note("IPC objects", str(obj))
        except LabError:
            report.failed.append(str(obj))


ownership.register_kind("IPC objects", 90, _clean)
