"""Notebook 05 (mount): a tmpfs only a box sees, a read-only bind, a slave of a shared mount, and
a prediction of who can undo a read-only mount."""
from __future__ import annotations

from labsupport import process
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.course.predictions import predict
from labsupport.namespaces import mount as mounts

running: list[process.Child] = []


def solve(k: int) -> None:
    work = exercise_dir("05")
    if k == 1:
        box = mounts.start_box()
        running.append(box)
        mounts.mount_inside(box.pid, work / "inside")
    elif k == 2:
        (work / "notes").mkdir(exist_ok=True)
        (work / "notes/todo.txt").write_text("read me\n")
        mounts.bind(work / "notes", work / "window", read_only=True)
    elif k == 3:
        mounts.shared_tmpfs(work / "mirror")
        running.append(mounts.start_box(propagation="slave"))
    elif k == 4:
        predict("05", 4, "neither: read-only is read-only")
