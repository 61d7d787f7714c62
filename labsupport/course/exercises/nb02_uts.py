"""Notebook 02 (UTS namespace): checks that read the real hostnames of real namespaces.

A check finds the learner's boxes among the lab's processes by their
/proc/PID/ns/uts inode, and reads each namespace's hostname from inside it
(a child that joins it), so the answer is the kernel's, not the notebook's. Exercise 4
reads and writes /proc/sys/kernel/hostname from a throw-away box and shows what happened
beside the learner's prediction.
"""
from __future__ import annotations

import os
import socket

from labsupport import namespaces, ownership, process
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, resets
from labsupport.kernel.errors import LabError

PROC_HOSTNAME = "/proc/sys/kernel/hostname"
#: The hostname exercise 1 asks for, the name exercise 2 keeps under, the rename of exercise 3.
BOX_HOSTNAME = "labsandbox"
KEPT_NAME = "ex02"
RENAMED = "labrenamed"


def _hostname_in(target: int | str) -> str:
    """The hostname a process in that UTS namespace (a PID's, or a kept one's directory) reads."""
    return process.run_function(socket.gethostname, enter=target, enter_namespaces=["uts"])


def _host_renamed(name: str) -> Verdict | None:
    if socket.gethostname() == name:
        return hint(f"The host itself is called {name} now: it was renamed from a process in the "
                    "host's own UTS namespace. Give the host back its name, and rename only a box.")
    return None


@exercise("02", 1, f"A running box called {BOX_HOSTNAME}")
def box_has_its_own_hostname() -> Verdict:
    renamed = _host_renamed(BOX_HOSTNAME)
    if renamed:
        return renamed
    boxes = namespaces.lab_namespaces("uts")
    if not boxes:
        return hint("No process the lab started has a UTS namespace of its own right now. Start "
                    "one that keeps running (a long sleep), and check while it runs.")
    names = {pids[0]: _hostname_in(pids[0]) for pids in boxes.values()}
    for pid, name in names.items():
        if name == BOX_HOSTNAME:
            return passed(f"PID {pid} reads the hostname {name} while the host still reads "
                          f"{socket.gethostname()}: one kernel, two UTS namespaces.")
    copies = [pid for pid, name in names.items() if name == socket.gethostname()]
    if copies:
        return hint(f"PID {copies[0]} has a UTS namespace of its own, but its hostname is still the "
                    "host's: a new UTS namespace starts with a copy of its parent's name. Something "
                    "has to set it.")
    return hint(f"The lab's boxes are called {', '.join(sorted(set(names.values())))}; none is "
                f"called {BOX_HOSTNAME} yet.")


def _kept() -> namespaces.Held | None:
    return next((h for h in namespaces.held() if (h.name, h.kind) == (KEPT_NAME, "uts")), None)


@exercise("02", 2, "A UTS namespace with no process in it")
def namespace_outlives_its_process() -> Verdict:
    kept = _kept()
    if kept is None:
        return hint(f"Nothing is kept under the name {KEPT_NAME!r} yet. A namespace lasts while "
                    "something refers to it: a process in it, or a mount of its /proc/PID/ns file.")
    if kept.inode == namespaces.namespace_ids()["uts"]:
        return hint(f"The namespace kept as {KEPT_NAME!r} is the host's own UTS namespace: "
                    "keep a box's instead (release this one first).")
    inside = [pid for inode, pids in namespaces.lab_namespaces("uts").items()
              if inode == kept.inode for pid in pids]
    if inside:
        return hint(f"The namespace is kept, and PID {inside[0]} is still in it. Stop the process: "
                    "does the namespace, and its hostname, survive without it?")
    return passed(f"No process is in UTS namespace {kept.inode}, yet it is still there, with the "
                  f"hostname {_hostname_in(kept.path.parent)!r}: the bind mount at {kept.path} "
                  "keeps it alive, as `ip netns add` does for network namespaces.")


@exercise("02", 3, f"Rename the kept namespace to {RENAMED}")
def rename_from_inside() -> Verdict:
    renamed = _host_renamed(RENAMED)
    if renamed:
        return renamed
    kept = _kept()
    if kept is None:
        return hint(f"This exercise works on the namespace kept as {KEPT_NAME!r}: do exercise 2 first.")
    name = _hostname_in(kept.path.parent)
    if name != RENAMED:
        return hint(f"The kept namespace is still called {name!r}. No new namespace is needed: a "
                    "process can join an existing one (setns) and act there.")
    return passed(f"The kept namespace is now called {RENAMED}, the host still {socket.gethostname()}: "
                  "joining a namespace is what `nsenter` and `docker exec` do.")


def _through_proc_sys() -> dict[str, str]:
    """Inside a box named lab-box: read and write the hostname as a file of the host's /proc."""
    if os.stat("/proc/self/ns/uts").st_ino == os.stat(f"/proc/{os.getppid()}/ns/uts").st_ino:
        raise LabError("The probe is not in a UTS namespace of its own: it would rename the host.")
    seen = {"/proc/sys/kernel/hostname reads": open(PROC_HOSTNAME).read().strip()}
    with open(PROC_HOSTNAME, "w") as name:
        name.write("lab-written")
    seen["after writing lab-written into it, the box's gethostname()"] = socket.gethostname()
    return seen


@exercise("02", 4, "Predict what the host's /proc/sys/kernel/hostname is to a box, then try")
def hostname_file_is_namespaced() -> Verdict:
    guess = predictions.required("02", 4, "for what a box reads in /proc/sys/kernel/hostname - "
                                 "the host's /proc, not remounted - and whose name changes when "
                                 "root in the box writes to it")
    if isinstance(guess, Verdict):
        return guess
    host = socket.gethostname()
    seen = process.run_function(_through_proc_sys, namespaces=["uts"], hostname="lab-box",
                                timeout=10)
    if socket.gethostname() != host:
        return hint("The host's own name changed while the check ran: give the host back its name.")
    story = "; ".join(f"{what}: {name}" for what, name in seen.items())
    return passed(predictions.beside(guess, f"{story}; the host is still {host}") + " The file "
                  "belongs to the host's /proc, yet the kernel answers for the UTS namespace of "
                  "the process that opens it: some /proc/sys files are per namespace, not per "
                  "mount.")


def reset() -> list[str]:
    """What notebook 02's exercises leave besides the exercise directory, removed (``reset 02``)."""
    return [f"stopped PID {p}" for p in ownership.kill_processes(resets.boxes_of("uts"))] + resets.release(KEPT_NAME)
