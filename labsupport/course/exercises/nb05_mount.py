"""Notebook 05 (mount namespace): checks that read the host's mount table and the learner's boxes.

A box is any process the lab started that has a mount namespace of its own;
its table is /proc/PID/mountinfo, the host's is this process's. The learner
works in /var/lib/labsupport/exercises/05/. Exercise 4 tries to undo a read-only bind mount
in a throw-away mount namespace and shows what the kernel allowed beside the learner's
prediction.
"""
from __future__ import annotations

import os
import shutil
from typing import Callable

from labsupport import ownership
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel import syscalls
from labsupport.kernel.errors import KernelError, describe_errno
from labsupport.namespaces import mount as mounts
from labsupport.process import run_function


@exercise("05", 1, "A mount that only your box sees")
def mount_only_in_a_box() -> Verdict:
    boxes = mounts.lab_boxes()
    if not boxes:
        return hint("No process the lab started has a mount namespace of its own right now. "
                    "Start one that keeps running, and check while it runs.",
                    ko="지금은 랩이 시작한 프로세스 중 자기만의 마운트 네임스페이스를 가진 것이 "
                       "없습니다. 계속 실행되는 프로세스를 하나 시작하고, 실행되는 동안 "
                       "확인하세요.")
    host = {(m.mountpoint, m.fstype) for m in mounts.table()}
    for pid, table in sorted(boxes.items()):
        own = [m for m in table if m.fstype == "tmpfs" and (m.mountpoint, m.fstype) not in host]
        if own:
            return passed(f"PID {pid} has a tmpfs ({own[0].source}) on {own[0].mountpoint} in its table "
                          f"of {len(table)} mounts; the host's table of {len(host)} has no tmpfs there. "
                          "One mount namespace (마운트 네임스페이스), one table of its own.",
                          ko=f"PID {pid}의 마운트 테이블({len(table)}개)에는 {own[0].mountpoint}에 "
                             f"tmpfs({own[0].source})가 있고, 호스트의 테이블({len(host)}개)에는 그 "
                             "자리에 tmpfs가 없습니다. 마운트 네임스페이스 하나에 자기만의 테이블 "
                             "하나입니다.")
    return hint(f"{len(boxes)} of the lab's processes have a mount namespace of their own, but their "
                "tables hold only copies of the host's mounts. Mount something inside one - a tmpfs "
                "needs no disk - and keep that process running.",
                ko=f"랩의 프로세스 {len(boxes)}개가 자기만의 마운트 네임스페이스를 가지고 있지만, "
                   "그 테이블에는 호스트 마운트의 복사본만 있습니다. 그중 하나 안에서 무언가를 "
                   "마운트하고(tmpfs는 디스크가 필요 없습니다), 그 프로세스를 계속 실행해 두세요.")


@exercise("05", 2, "A read-only window onto your notes")
def read_only_window() -> Verdict:
    work = exercise_dir("05", create=False)
    notes, window = work / "notes", work / "window"
    if not notes.is_dir():
        return hint(f"Make the directory {notes} first, with a file in it.",
                    ko=f"먼저 {notes} 디렉터리를 만들고, 그 안에 파일을 하나 넣으세요.")
    mount = mounts.at(window)
    if mount is None:
        return hint(f"{window} is not a mount point: nothing is mounted there. Which kind of mount "
                    "makes a directory that already exists appear at a second place?",
                    ko=f"{window}는 마운트 지점이 아닙니다: 거기에는 아무것도 마운트되어 있지 "
                       "않습니다. 이미 있는 디렉터리를 두 번째 장소에 보이게 하는 마운트는 어떤 "
                       "종류일까요?")
    seen, real = os.stat(window), os.stat(notes)
    if (seen.st_dev, seen.st_ino) != (real.st_dev, real.st_ino):
        return hint(f"Something ({mount.fstype} {mount.source}) is mounted at {window}, but it is not "
                    f"the directory {notes}.",
                    ko=f"{window}에 무언가({mount.fstype} {mount.source})가 마운트되어 있지만, "
                       f"{notes} 디렉터리는 아닙니다.")
    if "ro" not in mount.options.split(","):
        return hint(f"{window} shows {notes}, and anyone may write through it. Read-only is a flag "
                    "of the mount, not of the files - and a bind mount does not take it on its "
                    "first call.",
                    ko=f"{window}는 {notes}를 보여 주고, 누구나 그곳을 통해 쓸 수 있습니다. 읽기 "
                       "전용은 파일이 아니라 마운트의 플래그입니다 - 그리고 바인드 마운트는 처음 "
                       "호출할 때 그 플래그를 받아들이지 않습니다.")
    return passed(f"{window} is the directory {notes} (same device and inode), mounted {mount.options}: "
                  "the same files, writable at one place and read-only at the other. "
                  "`docker run -v notes:/window:ro` asks for exactly this.",
                  ko=f"{window}는 {notes} 디렉터리(같은 장치, 같은 inode)이고, "
                     f"{mount.options}(으)로 마운트되어 있습니다: 같은 파일이 한쪽에서는 쓰기 가능, "
                     "다른 쪽에서는 읽기 전용입니다. `docker run -v notes:/window:ro`가 바로 "
                     "이것을 요청합니다.")


def _peer_group(propagation: str, tag: str) -> str | None:
    """The N of ``tag:N`` among mountinfo's optional fields, or None."""
    for word in propagation.split():
        if word.startswith(f"{tag}:"):
            return word.split(":", 1)[1]
    return None


@exercise("05", 3, "A one-way mirror: a slave of a shared mount")
def one_way_mirror() -> Verdict:
    mirror = exercise_dir("05", create=False) / "mirror"
    host = mounts.at(mirror)
    if host is None:
        return hint(f"{mirror} is not a mount point yet: propagation belongs to a mount, not to a "
                    "directory.",
                    ko=f"{mirror}는 아직 마운트 지점이 아닙니다: 전파(propagation)는 디렉터리가 "
                       "아니라 마운트의 속성입니다.")
    group = _peer_group(host.propagation, "shared")
    if group is None:
        return hint(f"The host's mount at {mirror} is {host.propagation}: to pass mounts on to anyone "
                    "it has to be in a peer group (look at mountinfo's optional fields).",
                    ko=f"호스트의 {mirror} 마운트는 {host.propagation}입니다: 마운트를 다른 곳에 "
                       "전달하려면 피어 그룹에 속해 있어야 합니다(mountinfo의 선택 필드를 보세요).")
    copies = {pid: mounts.at(mirror, pid) for pid in mounts.lab_boxes()}
    copies = {pid: copy for pid, copy in copies.items() if copy is not None}
    for pid, copy in sorted(copies.items()):
        if _peer_group(copy.propagation, "master") == group:
            return passed(f"The host's {mirror} is shared:{group}; PID {pid}'s copy is "
                          f"{copy.propagation}: a slave of that group. Mounts made on the host below it "
                          "arrive in the box; nothing the box mounts comes back - runc's default "
                          "(rootfsPropagation rslave).",
                          ko=f"호스트의 {mirror}는 shared:{group}이고, PID {pid}의 복사본은 "
                             f"{copy.propagation}, 즉 그 그룹의 slave입니다. 호스트가 그 아래에 "
                             "마운트한 것은 박스에 도착하고, 박스가 마운트한 것은 돌아오지 "
                             "않습니다 - runc의 기본값(rootfsPropagation rslave)입니다.")
    for pid, copy in sorted(copies.items()):
        if _peer_group(copy.propagation, "shared") == group:
            return hint(f"PID {pid}'s copy of {mirror} is shared:{group}, a peer of the host's: what the "
                        "box mounts there would come back to the host. One-way is another kind.",
                        ko=f"PID {pid}의 {mirror} 복사본은 shared:{group}, 호스트와 같은 "
                           "피어입니다: 박스가 거기에 마운트한 것이 호스트로 돌아오게 됩니다. 한 "
                           "방향으로만 흐르는 것은 다른 종류입니다.")
    if copies:
        pid, copy = sorted(copies.items())[0]
        return hint(f"PID {pid}'s copy of {mirror} is {copy.propagation}: nothing the host mounts "
                    "will ever reach it.",
                    ko=f"PID {pid}의 {mirror} 복사본은 {copy.propagation}입니다: 호스트가 "
                       "마운트하는 것은 절대 그곳에 닿지 않습니다.")
    return hint(f"No running box has {mirror} in its table. A mount namespace copies the table when "
                "it is made: start the box after the mount exists, and keep it running.",
                ko=f"실행 중인 박스 중 테이블에 {mirror}가 있는 것이 없습니다. 마운트 "
                   "네임스페이스는 만들어질 때 테이블을 복사합니다: 마운트가 생긴 뒤에 박스를 "
                   "시작하고, 계속 실행해 두세요.")


def _attempt(action: Callable[[], object]) -> str:
    """'done', or the kernel's reason for refusing."""
    try:
        action()
    except KernelError as err:
        return f"refused ({describe_errno(err.errno)})"
    except OSError as err:
        return f"refused ({describe_errno(err.errno or 0)})"
    return "done"


def _write(directory: str) -> None:
    with open(os.path.join(directory, "probe.txt"), "w") as probe:
        probe.write("written\n")


def _read_only_story(directory: str) -> dict[str, str]:
    """In a throw-away mount namespace: a read-only bind mount, then who may make it writable."""
    syscalls.mount(directory, directory, None, syscalls.MS_BIND)
    syscalls.mount(None, directory, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)
    seen = {"write while read-only": _attempt(lambda: _write(directory))}
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # root of a user namespace of its own, with a mount namespace it owns
        def remount() -> None:
            syscalls.unshare(syscalls.CLONE_NEWUSER | syscalls.CLONE_NEWNS)
            with open("/proc/self/uid_map", "w") as uid_map:
                uid_map.write("0 0 1")
            syscalls.mount(None, directory, None, syscalls.MS_REMOUNT | syscalls.MS_BIND)
        os.write(write_end, _attempt(remount).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    seen["root of a new user namespace remounts it writable"] = os.read(read_end, 200).decode()
    seen["this namespace's root remounts it writable"] = _attempt(
        lambda: syscalls.mount(None, directory, None, syscalls.MS_REMOUNT | syscalls.MS_BIND))
    seen["write afterwards"] = _attempt(lambda: _write(directory))
    return seen


#: What the probe tried, and its answers, in Korean, for the check's Korean message.
_SEEN_KO = {"write while read-only": "읽기 전용일 때 쓰기",
            "root of a new user namespace remounts it writable":
                "새 사용자 네임스페이스의 root가 쓰기 가능으로 remount",
            "this namespace's root remounts it writable": "이 네임스페이스의 root가 쓰기 가능으로 remount",
            "write afterwards": "그 뒤에 쓰기"}


def _result_ko(result: str) -> str:
    """An answer of ``_attempt`` in Korean: 'done' -> '성공', 'refused (...)' -> '거부 (...)'."""
    return "성공" if result == "done" else result.replace("refused", "거부", 1)


@exercise("05", 4, "Predict who can make a read-only mount writable again, then try")
def read_only_is_not_locked() -> Verdict:
    guess = predictions.required("05", 4, "for whether root can make a read-only bind mount "
                                 "writable again - root of the mount's own namespace, and root "
                                 "of a user namespace made below it",
                                 ko="root가 읽기 전용 바인드 마운트를 다시 쓰기 가능하게 만들 수 "
                                    "있는지 - 마운트가 속한 네임스페이스의 root와, 그 아래에 만든 "
                                    "사용자 네임스페이스의 root 각각의 경우")
    if isinstance(guess, Verdict):
        return guess
    scratch = ownership.temp_dir("ex05")
    try:
        seen = run_function(_read_only_story, str(scratch), namespaces=["mnt"], timeout=10)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    story = "; ".join(f"{what}: {result}" for what, result in seen.items())
    story_ko = "; ".join(f"{_SEEN_KO[what]}: {_result_ko(result)}" for what, result in seen.items())
    return passed(predictions.beside(guess, story) + " A read-only flag is no wall against "
                  "CAP_SYS_ADMIN in the mount's own user namespace: one remount undoes it. Only a "
                  "less privileged namespace finds it locked - which is why a runtime drops "
                  "CAP_SYS_ADMIN, or gives the container a user namespace of its own.",
                  ko=predictions.beside(
                      guess, story_ko, "ko")
                     + " 읽기 전용 플래그는 마운트가 속한 사용자 네임스페이스의 CAP_SYS_ADMIN "
                       "앞에서는 벽이 되지 못합니다: remount 한 번이면 풀립니다. 권한이 더 적은 "
                       "네임스페이스에서만 잠겨 있습니다 - 그래서 런타임은 CAP_SYS_ADMIN을 빼거나, "
                       "컨테이너에 자기만의 사용자 네임스페이스를 줍니다.")


def reset() -> list[str]:
    """What notebook 05's exercises leave besides the exercise directory, removed (``reset 05``)."""
    return [f"stopped PID {p}" for p in ownership.kill_processes(list(mounts.lab_boxes()))]
