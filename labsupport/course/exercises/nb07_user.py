"""Notebook 07 (user namespace): checks that read uid maps, owners and namespace creators from /proc.

The host sees every process and file by its host ids; a user namespace's
maps (/proc/PID/uid_map) tell what those ids are called inside. The learner
works in /var/lib/labsupport/exercises/07/.
"""
from __future__ import annotations

from labsupport import ownership
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel.errors import LabError
from labsupport.namespaces import user as userns

#: The host uid exercise 2 asks root inside to stand for.
TARGET_UID = 200000


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


def reset() -> list[str]:
    """What notebook 07's exercises leave besides the exercise directory, removed (``reset 07``)."""
    return [f"stopped PID {p}" for p in ownership.kill_processes(userns.lab_user_boxes())]
