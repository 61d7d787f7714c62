"""Notebook 10 (the full container): a container that outlives its OOM kill, two busy loops
under one CPU limit, and a prediction of which defense stops add_key."""
from __future__ import annotations

import time

from labsupport import cgroups, container
from labsupport.course.exercises.nb10_container import CPU_LIMIT, CPU_NAME, OOM_NAME
from labsupport.course.predictions import predict

#: dd holds one buffer of bs bytes: twice the limit, so the kernel must kill it.
HOG = "dd if=/dev/zero of=/dev/null bs=64M count=1; exec sleep 3600"
BURN = "while :; do :; done & while :; do :; done"


def solve(k: int) -> None:
    if k == 1:
        predict("10", 1, "dd is killed, the container lives on: PID 1 is a shell that waits")
        name = container.run("busybox", ["sh", "-c", HOG], name=OOM_NAME, memory="32M",
                             network="none")
        group = cgroups.open_group(container.state(name)["cgroup"])
        for _ in range(100):  # dd needs a moment to fill its buffer
            if group.usage().oom_kills:
                break
            time.sleep(0.05)
    elif k == 2:
        predict("10", 2, f"each loop gets half of {CPU_LIMIT}, together {CPU_LIMIT} of a core")
        container.run("busybox", ["sh", "-c", BURN], name=CPU_NAME, cpus=CPU_LIMIT, network="none")
    elif k == 3:
        # add_key needs no capability and no device: only the seccomp filter takes the call away.
        predict("10", 3, "seccomp")
