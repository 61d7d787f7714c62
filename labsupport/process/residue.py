"""Did the lab leave the host as it found it? Two readings of the host, and what is new.

``snapshot()`` before, ``snapshot()`` after, and ``residue(before, after)``
lists every mount, link, network namespace, cgroup, loop device, IPC object
and process that appeared and is still there. The suite takes one reading
before its first test and one after its last; ``clean`` is judged by it.

It lives above the child runner because one reading needs a child: POSIX
message queues are listed through an mqueue mount, made in a private mount
namespace so the host's mount table never changes.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from labsupport import process
from labsupport.kernel import hoststate


def ipc_objects() -> set[hoststate.IpcObject]:
    """Every IPC object of this process's IPC namespace, listed by a short-lived child."""
    return process.run_function(hoststate.ipc_in_own_namespace, namespaces=["mnt"])


@dataclass
class HostState:
    """A picture of everything the lab could leave behind."""

    mounts: set[hoststate.Mount] = field(default_factory=set)
    links: set[str] = field(default_factory=set)
    netns: set[str] = field(default_factory=set)
    cgroups: set[str] = field(default_factory=set)
    loops: dict[str, str] = field(default_factory=dict)
    processes: dict[int, hoststate.Process] = field(default_factory=dict)
    ipc: set[hoststate.IpcObject] = field(default_factory=set)


def snapshot() -> HostState:
    """Read the host's state now."""
    ipc = ipc_objects()  # first: the child that lists them must be gone before processes are read
    return HostState(set(hoststate.mounts()), hoststate.links(), hoststate.named_netns(),
                     hoststate.cgroups(), hoststate.loop_devices(), hoststate.processes(), ipc)


def _new_processes(before: HostState, after: HostState) -> list[hoststate.Process]:
    """Processes that appeared and that this process is answerable for.

    A new process counts when it descends from us, or when it sits in our own
    cgroups (an orphan we started, now reparented to init). Processes that the
    rest of the machine starts meanwhile live in other groups and are ignored.
    """
    me = os.getpid()
    ours = hoststate.own_cgroups()
    mine = hoststate.descendants(me, after.processes)
    known = {(p.pid, p.start_ticks) for p in before.processes.values()}
    found = []
    for proc in after.processes.values():
        if proc.pid == me or (proc.pid, proc.start_ticks) in known:
            continue
        try:
            same_groups = hoststate.own_cgroups(proc.pid) == ours
        except (FileNotFoundError, ProcessLookupError):
            continue
        if proc.pid in mine or same_groups:
            found.append(proc)
    return found


def residue(before: HostState, after: HostState) -> list[str]:
    """One line per thing that is in ``after`` but was not in ``before``."""
    lines = [f"mount: {m}" for m in sorted(after.mounts - before.mounts, key=str)]
    lines += [f"link: {name}" for name in sorted(after.links - before.links)]
    lines += [f"network namespace: {name}" for name in sorted(after.netns - before.netns)]
    lines += [f"cgroup: {path}" for path in sorted(after.cgroups - before.cgroups)]
    lines += [f"loop device: {dev} -> {after.loops[dev]}"
              for dev in sorted(set(after.loops) - set(before.loops))]
    lines += [f"IPC object: {obj}" for obj in sorted(after.ipc - before.ipc, key=str)]
    lines += [f"process: {proc}" for proc in _new_processes(before, after)]
    return lines


def residue_since(before: HostState, settle_seconds: float = 3.0) -> list[str]:
    """Compare now with ``before``, giving asynchronous teardown a moment to finish.

    A killed child may still be a zombie for a few milliseconds, and the
    kernel frees some objects in the background; only what is still there
    after ``settle_seconds`` is residue.
    """
    deadline = time.monotonic() + settle_seconds
    while True:
        found = residue(before, snapshot())
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
