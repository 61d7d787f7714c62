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
                    "Start one that keeps running, and check while it runs.",
                    ko="지금은 랩이 시작한 프로세스 중 자기만의 사용자 네임스페이스에 있는 것이 "
                       "없습니다. 계속 실행되는 프로세스를 하나 시작하고, 실행되는 동안 "
                       "확인하세요.")
    for pid, uid, lines in boxes:
        if uid != 0 and userns.outside_id(0, lines) == uid:
            return passed(f"PID {pid} is uid 0 inside (its uid_map: {', '.join(map(str, lines))}) and "
                          f"uid {uid} to the host. Root of its namespace, an ordinary user (사용자) "
                          "everywhere else.",
                          ko=f"PID {pid}는 안에서는 uid 0(uid_map: "
                             f"{', '.join(map(str, lines))})이고, 호스트에게는 uid {uid}입니다. "
                             "자기 네임스페이스에서는 root, 그 밖의 모든 곳에서는 평범한 "
                             "사용자입니다.")
    pid, uid, lines = boxes[0]
    if uid == 0:
        return hint(f"PID {pid} is in a user namespace, but the host sees it as uid 0: its root inside "
                    f"is the host's root (uid_map: {', '.join(map(str, lines)) or 'empty'}). "
                    "The map decides what root inside stands for.",
                    ko=f"PID {pid}는 사용자 네임스페이스에 있지만, 호스트는 그것을 uid 0으로 "
                       "봅니다: 안의 root가 곧 호스트의 root입니다(uid_map: "
                       f"{', '.join(map(str, lines)) or '비어 있음'}). 안의 root가 무엇을 뜻할지는 "
                       "맵이 정합니다.")
    return hint(f"PID {pid} runs as host uid {uid}, but that is not what uid 0 maps to in its "
                f"namespace (uid_map: {', '.join(map(str, lines)) or 'empty'}): it is not root inside.",
                ko=f"PID {pid}는 호스트 uid {uid}로 실행되지만, 그 네임스페이스에서 uid 0이 "
                   "매핑되는 값은 그것이 아닙니다(uid_map: "
                   f"{', '.join(map(str, lines)) or '비어 있음'}): 안에서 root가 아닙니다.")


@exercise("07", 2, f"A file made by root inside, owned by uid {TARGET_UID} on the host")
def file_owned_by_mapped_root() -> Verdict:
    made = exercise_dir("07", create=False) / "box" / "hello.txt"
    if not made.exists():
        return hint(f"There is no {made} yet. Make it from inside a user namespace - and the "
                    "directory has to let that process write.",
                    ko=f"아직 {made}가 없습니다. 사용자 네임스페이스 안에서 만드세요 - 그리고 그 "
                       "디렉터리는 그 프로세스가 쓸 수 있게 허락해야 합니다.")
    owner = made.stat().st_uid
    if owner == TARGET_UID:
        return passed(f"{made} belongs to host uid {owner}; inside the namespace that made it, it "
                      "belongs to root. Files keep host ids on disk: the map only renames them - "
                      "which is why --userns-remap hands a container's files to its remapped uid.",
                      ko=f"{made}의 소유자는 호스트 uid {owner}이고, 그것을 만든 네임스페이스 "
                         "안에서는 root입니다. 디스크의 파일은 호스트의 id를 그대로 가집니다: 맵은 "
                         "이름만 바꿔 줄 뿐입니다 - 그래서 --userns-remap을 쓰면 컨테이너의 파일이 "
                         "다시 매핑된 uid의 것이 됩니다.")
    if owner == 0:
        return hint(f"{made} belongs to the host's root: a process that is root on the host made it "
                    "(or your namespace's root stands for host uid 0).",
                    ko=f"{made}의 소유자는 호스트의 root입니다: 호스트에서 root인 프로세스가 "
                       "만들었습니다(또는 네임스페이스의 root가 호스트 uid 0을 뜻하고 있습니다).")
    return hint(f"{made} belongs to host uid {owner}, not {TARGET_UID}. Which column of a uid_map "
                "line names the host's side?",
                ko=f"{made}의 소유자는 호스트 uid {owner}이고, {TARGET_UID}가 아닙니다. uid_map 한 "
                   "줄에서 어느 칸이 호스트 쪽을 가리킬까요?")


@exercise("07", 3, f"A user namespace that uid {userns.NOBODY} made itself")
def namespace_made_by_nobody() -> Verdict:
    boxes = _boxes()
    if not boxes:
        return hint("No process the lab started sits in a user namespace of its own right now. "
                    "Start one that keeps running, and check while it runs.",
                    ko="지금은 랩이 시작한 프로세스 중 자기만의 사용자 네임스페이스에 있는 것이 "
                       "없습니다. 계속 실행되는 프로세스를 하나 시작하고, 실행되는 동안 "
                       "확인하세요.")
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
                          "No root needed: this is how rootless containers begin.",
                          ko=f"PID {pid}의 사용자 네임스페이스는 uid {owner}가 "
                             f"만들었고(NS_GET_OWNER_UID), 프로세스는 호스트 uid {uid}로 실행되며, "
                             f"안에서는 root입니다({', '.join(map(str, lines))}). root가 필요 "
                             "없습니다: rootless 컨테이너는 이렇게 시작합니다.")
    made_by_nobody = [o for o in owners if o[1] == userns.NOBODY]
    if made_by_nobody:
        pid, _, uid, lines = made_by_nobody[0]
        return hint(f"PID {pid}'s namespace was made by uid {userns.NOBODY}, but it is not root "
                    f"inside (uid_map: {', '.join(map(str, lines)) or 'empty: nothing is mapped'}).",
                    ko=f"PID {pid}의 네임스페이스는 uid {userns.NOBODY}가 만들었지만, 안에서 root가 "
                       "아닙니다(uid_map: "
                       f"{', '.join(map(str, lines)) or '비어 있음: 매핑된 것이 없습니다'}).")
    if owners:
        pid, owner = owners[0][:2]
        return hint(f"PID {pid}'s user namespace was created by uid {owner}. The creator is whoever "
                    f"called unshare: be uid {userns.NOBODY} before the namespace is made.",
                    ko=f"PID {pid}의 사용자 네임스페이스는 uid {owner}가 만들었습니다. 만든 사람은 "
                       "unshare를 호출한 쪽입니다: 네임스페이스를 만들기 전에 uid "
                       f"{userns.NOBODY}가 되어 있어야 합니다.")
    return hint("The lab's processes in user namespaces ended while the check looked: check again.",
                ko="확인하는 동안 사용자 네임스페이스 안의 랩 프로세스들이 끝났습니다: 다시 "
                   "확인하세요.")


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
                                 "what the inner namespace's uid_map says inside",
                                 ko=f"0 -> {NESTED_UID}로 매핑된 사용자 네임스페이스 안에 다시 만든 "
                                    "사용자 네임스페이스에서 root가 만든 파일의 호스트 쪽 소유자 "
                                    "uid와, 안쪽 네임스페이스의 uid_map이 안에서 보여 주는 내용")
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
        f"{NESTED_UID}. However deep the nesting, a uid the host never mapped cannot appear.",
                  ko=predictions.beside(
                      guess, f"안에서 getuid() = {seen['uid']}, /proc/self/uid_map은 "
                             f"{' '.join(seen['uid_map'])}; 호스트에서 파일의 소유자는 uid {owner}", "ko")
                     + " 각 맵은 부모를 기준으로 읽습니다: 안쪽의 0은 바깥쪽의 0이고, 그것은 "
                       f"호스트의 {NESTED_UID}입니다. 아무리 깊이 중첩해도 호스트가 매핑하지 않은 "
                       "uid는 나타날 수 없습니다.")


def reset() -> list[str]:
    """What notebook 07's exercises leave besides the exercise directory, removed (``reset 07``)."""
    return [f"stopped PID {p}" for p in ownership.kill_processes(userns.lab_user_boxes())]
