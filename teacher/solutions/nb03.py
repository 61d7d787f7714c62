"""Notebook 03 (IPC): objects made inside boxes, a namespace shared by two, one kept, and a
prediction of what limits a new IPC namespace starts with."""
from __future__ import annotations

from labsupport import namespaces, process
from labsupport.course.exercises.nb03_ipc import (
    HIDDEN_QUEUE_KEY,
    KEPT_NAME,
    KEPT_SEGMENT_KEY,
    SHARED_QUEUE,
)
from labsupport.course.predictions import predict
from labsupport.namespaces import ipc

running: list[process.Child] = []


def solve(k: int) -> None:
    if k == 1:
        box = namespaces.start_waiting(namespaces=["ipc"])
        running.append(box)
        ipc.make_message_queue(HIDDEN_QUEUE_KEY, "only inside", inside=box.pid)
    elif k == 2:
        first = namespaces.start_waiting(namespaces=["ipc"])
        running.append(first)
        ipc.make_posix_queue(SHARED_QUEUE, "for both", inside=first.pid)
        running.append(namespaces.start_waiting(enter=first.pid, enter_namespaces=["ipc"]))
    elif k == 3:
        with namespaces.start_waiting(namespaces=["ipc"]) as box:
            ipc.make_shared_memory(KEPT_SEGMENT_KEY, "kept", inside=box.pid)
            namespaces.keep(box.pid, "ipc", KEPT_NAME)
    elif k == 4:
        predict("03", 4, "a copy of the parent's changed limit")
