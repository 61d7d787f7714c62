"""Notebook 02 (UTS): a named box, a kept namespace, a rename from inside, and a prediction of what
/proc/sys/kernel/hostname is to a box."""
from __future__ import annotations

from labsupport import namespaces, process
from labsupport.course.exercises.nb02_uts import BOX_HOSTNAME, KEPT_NAME, RENAMED
from labsupport.course.predictions import predict

running: list[process.Child] = []


def solve(k: int) -> None:
    if k == 1:
        running.append(namespaces.start_waiting(namespaces=["uts"], hostname=BOX_HOSTNAME))
    elif k == 2:
        with namespaces.start_waiting(namespaces=["uts"], hostname="labkept") as box:
            namespaces.keep(box.pid, "uts", KEPT_NAME)
    elif k == 3:
        kept = next(h for h in namespaces.held() if (h.name, h.kind) == (KEPT_NAME, "uts"))
        namespaces.enter(kept.path, ["hostname", RENAMED])
    elif k == 4:
        predict("02", 4, "the host's name, and writing it renames the host")
