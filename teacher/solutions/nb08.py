"""Notebook 08 (cgroups): a memory-capped group with a process, a pids maximum, a denied device."""
from __future__ import annotations

from labsupport import process
from labsupport.cgroups import api
from labsupport.course.exercises.nb08_cgroups import GROUPS, MEMORY_LIMIT, PIDS_LIMIT

running: list[process.Child] = []


def solve(k: int) -> None:
    if k == 1:
        group = api.create(GROUPS[1], controllers=["memory"])
        group.limit_memory(MEMORY_LIMIT)
        running.append(group.start(["sleep", "600"]))
    elif k == 2:
        api.create(GROUPS[2], controllers=["pids"]).limit_pids(PIDS_LIMIT)
    elif k == 3:
        api.create(GROUPS[3], controllers=["devices"]).deny_device("/dev/null")
