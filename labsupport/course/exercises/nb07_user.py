"""Notebook 07 (user namespace): checks that read uid maps, owners and namespace creators from /proc.

The host sees every process and file by its host ids; a user namespace's
maps (/proc/PID/uid_map) tell what those ids are called inside. The learner
works in /var/lib/labsupport/exercises/07/. Exercise 4 nests one user namespace in another
in a throw-away child and shows what it saw beside the learner's prediction.
"""
from __future__ import annotations

import os
import shutil

from labsupport import ownership
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError
from labsupport.namespaces import user as userns
from labsupport.process import run_function

#: The host uid exercise 2 asks root inside to stand for.
TARGET_UID = 200000
#: The host uid the outer namespace of exercise 4 maps its root to.
NESTED_UID = 300000


def _boxes() -> list[tuple[int, int, list[userns.MapLine]]]:
    """(PID, host uid, uid map) of each lab process in a user namespace of its own."""
    found = []
    for pid in userns.lab_user_boxes():
        try:
            found.append((pid, userns.host_ids(pid)[0], userns.id_map(pid, "uid")))
        except LabError:
            continue  # ended meanwhile
    return found


@exercise("07", 1, "Root inside, someone else outside")
def root_inside_not_outside() -> Verdict:
    boxes = _boxes()
    if not boxes:
        return hint("No process the lab started sits in a user namespace of its own right now. "
                    "Start one that keeps running, and check while it runs.")
    for pid, uid, lines in boxes:
        if uid != 0 and userns.outside_id(0, lines) == uid:
            return passed(f"PID {pid} is uid 0 inside (its uid_map: {', '.join(map(str, lines))}) and "
                          f"uid {uid} to the host. Root of its namespace, an ordinary user (사용자) "
                          "everywhere else.")
    pid, uid, lines = boxes[0]
    if uid == 0:
        return hint(f"PID {pid} is in a user namespace, but the host sees it as uid 0: its root inside "
                    f"is the host's root (uid_map: {', '.join(map(str, lines)) or 'empty'}). "
                    "The map decides what root inside stands for.")
    return hint(f"PID {pid} runs as host uid {uid}, but that is not what uid 0 maps to in its "
                f"namespace (uid_map: {', '.join(map(str, lines)) or 'empty'}): it is not root inside.")


@exercise("07", 2, f"A file made by root inside, owned by uid {TARGET_UID} on the host")
def file_owned_by_mapped_root() -> Verdict:
    made = exercise_dir("07", create=False) / "box" / "hello.txt"
    if not made.exists():
        return hint(f"There is no {made} yet. Make it from inside a user namespace - and the "
                    "directory has to let that process write.")
    owner = made.stat().st_uid
    if owner == TARGET_UID:
        return passed(f"{made} belongs to host uid {owner}; inside the namespace that made it, it "
                      "belongs to root. Files keep host ids on disk: the map only renames them - "
                      "which is why --userns-remap hands a container's files to its remapped uid.")
    if owner == 0:
        return hint(f"{made} belongs to the host's root: a process that is root on the host made it "
                    "(or your namespace's root stands for host uid 0).")
    return hint(f"{made} belongs to host uid {owner}, not {TARGET_UID}. Which column of a uid_map "
                "line names the host's side?")


@exercise("07", 3, f"A user namespace that uid {userns.NOBODY} made itself")
def namespace_made_by_nobody() -> Verdict:
    boxes = _boxes()
    if not boxes:
        return hint("No process the lab started sits in a user namespace of its own right now. "
                    "Start one that keeps running, and check while it runs.")
    owners = []
    for pid, uid, lines in boxes:
        try:
            owner = userns.namespace_owner(pid)
        except LabError:
            continue
        owners.append((pid, owner, uid, lines))
        if owner == uid == userns.NOBODY and userns.outside_id(0, lines) == userns.NOBODY:
            return passed(f"PID {pid}'s user namespace was created by uid {owner} (NS_GET_OWNER_UID), "
                          f"it runs as host uid {uid}, and is root inside ({', '.join(map(str, lines))}). "
                          "No root needed: this is how rootless containers begin.")
    made_by_nobody = [o for o in owners if o[1] == userns.NOBODY]
    if made_by_nobody:
        pid, _, uid, lines = made_by_nobody[0]
        return hint(f"PID {pid}'s namespace was made by uid {userns.NOBODY}, but it is not root "
                    f"inside (uid_map: {', '.join(map(str, lines)) or 'empty: nothing is mapped'}).")
    if owners:
        pid, owner = owners[0][:2]
        return hint(f"PID {pid}'s user namespace was created by uid {owner}. The creator is whoever "
                    f"called unshare: be uid {userns.NOBODY} before the namespace is made.")
    return hint("The lab's processes in user namespaces ended while the check looked: check again.")


def _nested(directory: str) -> dict[str, object]:
    """Root of a user namespace (the runner mapped it) makes a user namespace of its own, maps
    its own root 0 to 0, and writes a file: what it reads inside, and the file it made."""
    syscalls.unshare(syscalls.CLONE_NEWUSER)
    # Becoming root inside made this process undumpable: its /proc files belong to the host's
    # root, which it cannot open for writing - until it says it may be dumped again.
    syscalls.set_dumpable(True)
    with open("/proc/self/uid_map", "w") as uid_map:
        uid_map.write("0 0 1")
    path = os.path.join(directory, "nested.txt")
    with open(path, "w") as made:
        made.write("made two user namespaces down\n")
    return {"uid": os.getuid(), "uid_map": open("/proc/self/uid_map").read().split(),
            "path": path}


@exercise("07", 4, "Predict who owns a file made two user namespaces down, then look")
def nested_owner() -> Verdict:
    guess = predictions.required("07", 4, f"for the host uid that owns a file made by root of a "
                                 f"user namespace nested inside one mapped 0 -> {NESTED_UID}, and "
                                 "what the inner namespace's uid_map says inside")
    if isinstance(guess, Verdict):
        return guess
    scratch = ownership.temp_dir("ex07")
    try:
        scratch.chmod(0o755)
        os.chown(scratch, NESTED_UID, NESTED_UID)
        idmap = f"0 {NESTED_UID} 1"
        seen = run_function(_nested, str(scratch), namespaces=["user"], uid_map=idmap,
                            gid_map=idmap, timeout=10)
        owner = os.stat(seen["path"]).st_uid
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return passed(predictions.beside(
        guess, f"inside, getuid() = {seen['uid']} and /proc/self/uid_map reads "
        f"{' '.join(seen['uid_map'])}; on the host the file belongs to uid {owner}") + " Each map "
        "is read against its parent: the inner 0 is the outer 0, which is the host's "
        f"{NESTED_UID}. However deep the nesting, a uid the host never mapped cannot appear.")


def reset() -> list[str]:
    """What notebook 07's exercises leave besides the exercise directory, removed (``reset 07``)."""
    return [f"stopped PID {p}" for p in ownership.kill_processes(userns.lab_user_boxes())]
