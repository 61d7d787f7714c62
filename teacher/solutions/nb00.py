"""Notebook 00 (welcome): a prediction about a box without its own /proc; the kernel inside a box."""
from __future__ import annotations

import labsupport as lab
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.course.predictions import predict


def solve(k: int) -> None:
    work = exercise_dir("00")
    if k == 1:
        predict("00", 1, "PID 1, but /proc still lists the host's processes")
    elif k == 2:
        inside = lab.run_command(["uname", "-r"], namespaces=["uts", "pid", "mnt"], hostname="box")
        (work / "kernel-inside.txt").write_text(inside.stdout)
