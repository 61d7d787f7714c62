"""Notebook 13 (VMs vs containers): a 3-round result saved, a background VM weighed, five containers,
and a prediction of how many containers weigh as much as one VM."""
from __future__ import annotations

from labsupport import container
from labsupport.bench import containers, latest, memory
from labsupport.course.exercises.nb13_vms_vs_containers import (
    PSS_FILE,
    RESULT_FILE,
    SCALE_COUNT,
    SCALE_PREFIX,
)
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.course.predictions import predict
from labsupport.vm import background


def solve(k: int) -> None:
    if k == 1:
        containers.run(rounds=3, quick=True, progress=False).save(exercise_dir("13") / RESULT_FILE)
    elif k == 2:
        name = background.boot("ex13")["name"]
        pss = next(vm["pss_mib"] for vm in background.ls() if vm["name"] == name)
        (exercise_dir("13") / PSS_FILE).write_text(f"{pss}\n")
    elif k == 3:
        if latest.latest("memory") is None:
            latest.keep(memory.run(quick=True, progress=False))
        for n in range(1, SCALE_COUNT + 1):
            container.run("busybox", ["sleep", "100000"], name=f"{SCALE_PREFIX}{n}")
    elif k == 4:
        predict("13", 4, "about 50 containers per microVM")
