"""Notebook 07 (user): a remapped root, a file owned by uid 200000, a namespace nobody made, and
a prediction about a user namespace nested in another."""
from __future__ import annotations

from labsupport import process
from labsupport.course.exercises.nb07_user import TARGET_UID
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.course.predictions import predict
from labsupport.kernel.errors import LabError
from labsupport.namespaces import user as userns

running: list[process.Child] = []


def solve(k: int) -> None:
    if k == 1:
        running.append(userns.start_box())
    elif k == 2:
        box = userns.owned_directory(exercise_dir("07") / "box", TARGET_UID, TARGET_UID)
        idmap = f"0 {TARGET_UID} 1"
        made = process.run_command(["sh", "-c", f"echo made inside > {box}/hello.txt"],
                                   namespaces=["user"], uid_map=idmap, gid_map=idmap)
        if not made.ok:
            raise LabError(f"root inside could not write {box}/hello.txt: {made.stderr.strip()}")
    elif k == 3:
        nobody = str(userns.NOBODY)
        running.append(process.start(["setpriv", f"--reuid={nobody}", f"--regid={nobody}",
                                      "--clear-groups", "unshare", "--user", "--map-root-user",
                                      "sleep", "600"]))
    elif k == 4:
        predict("07", 4, "host uid 300000; inside the map says 0 0 1")
