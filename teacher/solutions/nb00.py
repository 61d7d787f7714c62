"""Notebook 00 (welcome): answer the two questions by asking the kernel."""
from __future__ import annotations

import labsupport as lab
from labsupport.cgroups.layout import detect_layout
from labsupport.course.exercises.workdir import exercise_dir


def solve(k: int) -> None:
    work = exercise_dir("00")
    if k == 1:
        (work / "cgroup-layout.txt").write_text(detect_layout().kind + "\n")
    elif k == 2:
        inside = lab.run_command(["uname", "-r"], namespaces=["uts", "pid", "mnt"], hostname="box")
        (work / "kernel-inside.txt").write_text(inside.stdout)
