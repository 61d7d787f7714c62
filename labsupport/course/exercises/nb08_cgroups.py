"""Notebook 08 (cgroups): checks that read the learner's groups from the kernel and test their effect.

The learner makes lab groups by name (``ex1``, ``ex2``, ``ex3``). Each check
finds the group in the real cgroup trees, reads its limit files, and where
it can, proves the limit by its effect: forks inside a pids-limited group
until the kernel refuses, opens device nodes from inside a device-limited
one. The same checks hold on cgroup v1, v2 and hybrid hosts.
"""
from __future__ import annotations

import os
import time

import psutil

from labsupport.cgroups import api, limits
from labsupport.cgroups.experiments import try_open
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.kernel.errors import LabError

#: The group each exercise looks for (tests point these at scratch names).
GROUPS = {1: "ex1", 2: "ex2", 3: "ex3"}

MEMORY_LIMIT = 32 << 20
PIDS_LIMIT = 10


def _group(number: int) -> api.CGroup | Verdict:
    name = GROUPS[number]
    try:
        return api.open_group(name)
    except LabError:
        return hint(f"There is no lab group named {name!r} yet: a lab group lives at "
                    f"<cgroup tree>/lab/{name}, and the lab's cgroups module makes one by name.")


@exercise("08", 1, "A group with 32 MiB of memory and a process inside")
def memory_group_with_a_process() -> Verdict:
    group = _group(1)
    if isinstance(group, Verdict):
        return group
    if "memory" not in group.homes:
        return hint(f"The group {group.name!r} has no directory in the memory controller's tree: "
                    "the memory limit lives there.")
    limit = group.usage().memory_limit_bytes
    if limit is None:
        return hint(f"{group.name!r} has no memory limit yet: every group starts unlimited.")
    if limit != MEMORY_LIMIT:
        return hint(f"{group.name!r} is limited to {limits.human_size(limit)}, not 32 MiB. "
                    "Sizes here are binary: M means MiB.")
    alive = group.running()
    if not alive:
        return hint(f"{group.name!r} holds no running process. A process enters a group when its "
                    "PID is written to cgroup.procs - and leaves it when it ends.")
    names = ", ".join(f"{psutil.Process(p).name()} ({p})" for p in alive[:3])
    return passed(f"{group.name!r} is capped at 32 MiB and holds {names}. Everything that process "
                  "forks is charged to the same group - a container's limit covers all of it.")


def _fork_until_refused(attempts: int) -> tuple[int, str]:
    """Inside the group: fork sleepers until the kernel says no; report how many got through."""
    children = []
    refused = ""
    for _ in range(attempts):
        try:
            pid = os.fork()
        except OSError as err:
            refused = os.strerror(err.errno or 0)
            break
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return len(children), refused


@exercise("08", 2, "A group in which a fork bomb stops at 10 processes")
def pids_limited_group() -> Verdict:
    group = _group(2)
    if isinstance(group, Verdict):
        return group
    if "pids" not in group.homes:
        return hint(f"{group.name!r} has no directory in the pids controller's tree.")
    if group.running():
        return hint(f"Stop the processes in {group.name!r} first: the check forks inside it and "
                    "counts how far it gets.")
    forked, refused = group.run_function(_fork_until_refused, 3 * PIDS_LIMIT, timeout=30)
    if not refused:
        return hint(f"Inside {group.name!r} one process forked {forked} children and the kernel "
                    "never said no: the group has no (or a very high) process maximum.")
    total = forked + 1  # the forking process itself
    if total > PIDS_LIMIT:
        return hint(f"Inside {group.name!r} {total} processes ran at once before fork failed: "
                    f"more than {PIDS_LIMIT}.")
    if total < PIDS_LIMIT:
        return hint(f"Fork failed already at {total} processes: the maximum is below "
                    f"{PIDS_LIMIT} - or other processes in the group use up part of it.")
    return passed(f"A process inside {group.name!r} forked {forked} children; the next fork "
                  f"failed with '{refused}' - {total} processes, exactly the maximum. A fork bomb "
                  "inside would hit the same wall, and the host would not notice.")


@exercise("08", 3, "A group that may not open /dev/null, but may open /dev/zero")
def device_denied_group() -> Verdict:
    group = _group(3)
    if isinstance(group, Verdict):
        return group
    if "devices" not in group.homes:
        return hint(f"{group.name!r} has no device control: on v1 that is the devices tree; on "
                    "v2 an eBPF program attached to the group's directory.")
    seen = group.run_function(try_open, ["/dev/null", "/dev/zero"], timeout=15)
    if seen["/dev/null"] == "ok":
        return hint(f"A process inside {group.name!r} opened /dev/null. The kernel checks a device's "
                    "type and numbers (ls -l shows them, e.g. 'c 1, 3'), not its path.")
    if seen["/dev/zero"] != "ok":
        return hint(f"/dev/null is refused ({seen['/dev/null']}), but so is /dev/zero "
                    f"({seen['/dev/zero']}): the rule is wider than one device.")
    how = ("the devices files" if group.homes["devices"] == "v1"
           else "the eBPF program attached to it")
    return passed(f"Inside {group.name!r}, open('/dev/null') fails with {seen['/dev/null']} while "
                  f"/dev/zero opens: {how} decided, by device numbers. Docker's default device "
                  "list works the same way, as an allow-list.")


def reset() -> list[str]:
    """What notebook 08's exercises leave besides the exercise directory, removed (``reset 08``)."""
    from labsupport.cgroups import experiments

    rows = experiments.clean_up(names=list(GROUPS.values())).rows
    return [f"{what}: {removed}" for what, removed in rows if removed != "none"]
