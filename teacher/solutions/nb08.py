"""Notebook 08 (cgroups): weights 1:4 predicted and set, a parent moved without its older child,
a denied device."""
from __future__ import annotations

import time

from labsupport import process
from labsupport.cgroups import api
from labsupport.course.exercises.nb08_cgroups import GROUPS
from labsupport.course.predictions import predict
from labsupport.kernel.hoststate import processes

running: list[process.Child] = []


def solve(k: int) -> None:
    if k == 1:
        predict("08", 1, "the heavier group gets 80 % of the core, the lighter 20 %")
        api.create(GROUPS[1], controllers=["cpu"]).weight_cpu(100)
        api.create(GROUPS["1b"], controllers=["cpu"]).weight_cpu(400)
    elif k == 2:
        predict("08", 2, "the old child stays in its group; only new children start in ex2")
        parent = process.start(["sh", "-c", "sleep 600 & exec sleep 601"])
        running.append(parent)
        while not [p for p, proc in processes().items() if proc.ppid == parent.pid]:
            time.sleep(0.01)  # the shell forks its background child first
        api.create(GROUPS[2], controllers=["pids"]).add(parent.pid)
    elif k == 3:
        api.create(GROUPS[3], controllers=["devices"]).deny_device("/dev/null")
