"""Notebook 04 (PID): a PID 1 with its own /proc, a zombie, a PID 1 that handles SIGTERM, and
a prediction of what unshare(CLONE_NEWPID) does."""
from __future__ import annotations

import time

from labsupport import process
from labsupport.course.predictions import predict
from labsupport.namespaces import pid as pidns

running: list[process.Child] = []

SCRIPTS = {
    1: ["sleep", "600"],
    2: ["sh", "-c", "(sleep 0.1 &); exec sleep 600"],  # sleep as PID 1 never collects the orphan
    3: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
}


def solve(k: int) -> None:
    if k == 4:
        predict("04", 4, "the caller keeps its PID; the child is PID 1 with parent 0, sees the "
                "host's /proc; no second fork after PID 1 ends")
        return
    running.append(pidns.box(pidns.new_root(f"teach04{k}"), SCRIPTS[k]))
    if k == 2:
        time.sleep(0.5)  # let the orphan end
