"""Notebook 03 (IPC namespace): checks that list the real IPC objects of each side.

The host's side is read in this process's IPC namespace; each box's side by
a child that joined the box's namespace (or a kept one). Only the lab's own
processes and kept namespaces are looked into. Exercise 4 changes a limit in a
throw-away IPC namespace and shows what a namespace made below it starts with, beside the
learner's prediction.
"""
from __future__ import annotations

import os

from labsupport import namespaces, ownership, process
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, resets
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.namespaces import ipc

#: Keys and names the exercises ask for (the keys lie in the lab's range).
HIDDEN_QUEUE_KEY = 0x1AB0E301
SHARED_QUEUE = "/labshared"
KEPT_SEGMENT_KEY = 0x1AB0E303
KEPT_NAME = "ex03"
#: The per-namespace limit exercise 4 reads: the most bytes one message queue may hold.
LIMIT = "/proc/sys/kernel/msgmnb"


def _has(objects: set[hoststate.IpcObject], kind: str, name: str) -> bool:
    return any((o.kind, o.name) == (kind, name) for o in objects)


def _key(key: int) -> str:
    return f"{key:#010x}"


def _no_boxes() -> Verdict:
    return hint("No process the lab started has an IPC namespace of its own right now. Start one "
                "that keeps running (a long sleep), and check while it runs.",
                ko="지금은 랩이 시작한 프로세스 중 자기만의 IPC 네임스페이스를 가진 것이 없습니다. "
                   "계속 실행되는 프로세스(긴 sleep)를 하나 시작하고, 실행되는 동안 확인하세요.")


@exercise("03", 1, f"A message queue {_key(HIDDEN_QUEUE_KEY)} that only a box sees")
def queue_hidden_from_host() -> Verdict:
    key = _key(HIDDEN_QUEUE_KEY)
    if _has(ipc.objects(), "msg", key):
        return hint(f"The host sees a message queue with key {key}: it was made in the host's IPC "
                    "namespace. Remove it there, and make it where only the box looks.",
                    ko=f"호스트에서 키 {key}인 메시지 큐가 보입니다: 호스트의 IPC 네임스페이스에서 "
                       "만들어진 것입니다. 거기서 지우고, 박스만 보는 곳에서 만드세요.")
    boxes = namespaces.lab_namespaces("ipc")
    if not boxes:
        return _no_boxes()
    for pids in boxes.values():
        seen = ipc.objects(inside=pids[0])
        if _has(seen, "msg", key):
            return passed(f"PID {pids[0]} sees the message queue {key}; the host, asking for the same "
                          "key, finds nothing: each IPC namespace has its own table of keys.",
                          ko=f"PID {pids[0]}는 메시지 큐 {key}를 보는데, 호스트는 같은 키로 찾아도 "
                             "아무것도 없습니다: IPC 네임스페이스마다 자기만의 키 테이블이 "
                             "있습니다.")
        if _has(seen, "shm", key):
            return hint(f"PID {pids[0]}'s namespace holds shared memory with key {key}; the exercise "
                        "asks for a message queue, a different kind of object with its own keys.",
                        ko=f"PID {pids[0]}의 네임스페이스에는 키 {key}인 공유 메모리가 있습니다. 이 "
                           "연습이 원하는 것은 메시지 큐로, 키도 따로 쓰는 다른 종류의 객체입니다.")
    return hint(f"None of the lab's IPC namespaces (PIDs {', '.join(str(p[0]) for p in boxes.values())}) "
                f"holds a message queue with key {key} yet.",
                ko=f"랩의 IPC 네임스페이스들(PID {', '.join(str(p[0]) for p in boxes.values())}) 중 "
                   f"아직 키 {key}인 메시지 큐를 가진 것이 없습니다.")


def _independent(pids: list[int]) -> list[int]:
    """Processes of which none descends from another: separate processes, not one tree."""
    table = hoststate.processes()
    below = {pid: hoststate.descendants(pid, table) for pid in pids}
    return [pid for pid in pids if not any(pid in below[other] for other in pids if other != pid)]


@exercise("03", 2, f"A POSIX queue {SHARED_QUEUE} two boxes share and the host does not")
def queue_shared_by_two_boxes() -> Verdict:
    if _has(ipc.objects(), "mqueue", SHARED_QUEUE):
        return hint(f"The host sees {SHARED_QUEUE}: it lives in the host's IPC namespace. Remove it "
                    "there; the two boxes need a namespace that is not the host's.",
                    ko=f"호스트에서 {SHARED_QUEUE}가 보입니다: 호스트의 IPC 네임스페이스에 있는 "
                       "것입니다. 거기서 지우세요. 두 박스에게는 호스트의 것이 아닌 네임스페이스가 "
                       "필요합니다.")
    boxes = namespaces.lab_namespaces("ipc")
    if not boxes:
        return _no_boxes()
    lonely = None
    for inode, pids in boxes.items():
        if not _has(ipc.objects(inside=pids[0]), "mqueue", SHARED_QUEUE):
            continue
        separate = _independent(pids)
        if len(separate) >= 2:
            return passed(f"PIDs {separate[0]} and {separate[1]} are separate processes in IPC "
                          f"namespace {inode}, and both see {SHARED_QUEUE}; the host does not. "
                          "This is `docker run --ipc=container:NAME`.",
                          ko=f"PID {separate[0]}와 {separate[1]}는 서로 다른 프로세스인데 같은 IPC "
                             f"네임스페이스 {inode}에 있고, 둘 다 {SHARED_QUEUE}를 봅니다. 호스트는 "
                             "못 봅니다. 이것이 `docker run --ipc=container:NAME`입니다.")
        lonely = separate[0]
    if lonely:
        return hint(f"{SHARED_QUEUE} exists, but only PID {lonely} is in its IPC namespace. A "
                    "second process should not get a new namespace: it can join this one.",
                    ko=f"{SHARED_QUEUE}는 있지만, 그 IPC 네임스페이스에는 PID {lonely} "
                       "하나뿐입니다. 두 번째 프로세스는 새 네임스페이스를 만들 필요가 없습니다: "
                       "이 네임스페이스에 들어올 수 있습니다.")
    return hint(f"None of the lab's IPC namespaces holds a POSIX queue named {SHARED_QUEUE} yet.",
                ko=f"랩의 IPC 네임스페이스 중 아직 {SHARED_QUEUE}라는 POSIX 큐를 가진 것이 "
                   "없습니다.")


@exercise("03", 3, f"Shared memory {_key(KEPT_SEGMENT_KEY)} that outlives every process")
def segment_in_kept_namespace() -> Verdict:
    key = _key(KEPT_SEGMENT_KEY)
    kept = next((h for h in namespaces.held() if (h.name, h.kind) == (KEPT_NAME, "ipc")), None)
    if kept is None:
        return hint(f"No IPC namespace is kept as {KEPT_NAME!r} yet. An IPC namespace, and every "
                    "object in it, lasts only while something refers to it.",
                    ko=f"아직 {KEPT_NAME!r}(으)로 유지된 IPC 네임스페이스가 없습니다. IPC "
                       "네임스페이스와 그 안의 모든 객체는 무언가가 가리키고 있는 동안에만 살아 "
                       "있습니다.")
    if kept.inode == namespaces.namespace_ids()["ipc"]:
        return hint(f"The namespace kept as {KEPT_NAME!r} is the host's own IPC namespace: keep a "
                    "box's instead (release this one first).",
                    ko=f"{KEPT_NAME!r}(으)로 유지된 네임스페이스는 호스트 자신의 IPC "
                       "네임스페이스입니다: 대신 박스의 네임스페이스를 유지하세요(먼저 이것을 "
                       "해제하고).")
    if not _has(ipc.objects(inside=kept.path.parent), "shm", key):
        return hint(f"The IPC namespace kept as {KEPT_NAME!r} holds no shared memory with key {key}.",
                    ko=f"{KEPT_NAME!r}(으)로 유지된 IPC 네임스페이스에 키 {key}인 공유 메모리가 "
                       "없습니다.")
    running = namespaces.lab_namespaces("ipc").get(kept.inode)
    if running:
        return hint(f"The segment {key} is in the namespace kept as {KEPT_NAME!r}, and PID "
                    f"{running[0]} is still in it. Stop the process: does the segment survive "
                    "without it?",
                    ko=f"세그먼트 {key}는 {KEPT_NAME!r}(으)로 유지된 네임스페이스에 있고, PID "
                       f"{running[0]}도 아직 그 안에 있습니다. 프로세스를 멈춰 보세요: 프로세스 "
                       "없이도 세그먼트가 살아남을까요?")
    return passed(f"No process is left in IPC namespace {kept.inode}, and the segment {key} is "
                  f"still there: the mount at {kept.path} keeps the namespace - and its objects - "
                  "alive. Release it and both are gone.",
                  ko=f"IPC 네임스페이스 {kept.inode}에는 프로세스가 하나도 남지 않았는데 세그먼트 "
                     f"{key}는 그대로 있습니다: {kept.path}의 마운트가 네임스페이스와 그 안의 "
                     "객체들을 살려 두고 있습니다. 해제하면 둘 다 사라집니다.")


def _read_limit() -> int:
    with open(LIMIT) as limit:
        return int(limit.read())


def _settings_below() -> dict[str, int]:
    """In a new IPC namespace: double its msgmnb, then read it from an IPC namespace made below."""
    if os.stat("/proc/self/ns/ipc").st_ino == os.stat(f"/proc/{os.getppid()}/ns/ipc").st_ino:
        raise LabError("The probe is not in an IPC namespace of its own: it would change the host's.")
    first = _read_limit()
    with open(LIMIT, "w") as limit:
        limit.write(str(2 * first))
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        syscalls.unshare(syscalls.CLONE_NEWIPC)
        os.write(write_end, str(_read_limit()).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    return {"a new IPC namespace starts with": first, "it sets its own to": _read_limit(),
            "an IPC namespace it makes then starts with": int(os.read(read_end, 50))}


#: What the probe reports, in Korean, for the check's Korean message.
_SEEN_KO = {"a new IPC namespace starts with": "새 IPC 네임스페이스의 시작값",
            "it sets its own to": "그 네임스페이스가 바꾼 자기 값",
            "an IPC namespace it makes then starts with": "그 안에서 만든 IPC 네임스페이스의 시작값"}


@exercise("03", 4, "Predict whether a new IPC namespace copies its parent's limits, then look")
def limits_are_not_copied() -> Verdict:
    guess = predictions.required("03", 4, "for the message-queue limit (kernel.msgmnb) a new IPC "
                                 "namespace starts with, when the namespace that makes it has "
                                 "changed its own",
                                 ko="네임스페이스를 만드는 쪽이 자기 값을 바꿔 둔 상태에서, 새 IPC "
                                    "네임스페이스가 시작할 때의 메시지 큐 한도(kernel.msgmnb)")
    if isinstance(guess, Verdict):
        return guess
    host = _read_limit()
    seen = process.run_function(_settings_below, namespaces=["ipc"], timeout=10)
    if _read_limit() != host:
        return hint(f"The host's own {LIMIT} changed while the check ran: set it back to {host}.",
                    ko=f"확인하는 동안 호스트 자신의 {LIMIT} 값이 바뀌었습니다: {host}(으)로 되돌려 "
                       "놓으세요.")
    story = "; ".join(f"{what} {value}" for what, value in seen.items())
    story_ko = "; ".join(f"{_SEEN_KO[what]} {value}" for what, value in seen.items())
    return passed(predictions.beside(guess, f"the host's msgmnb is {host}; {story}") + " Unlike "
                  "a UTS namespace, which starts as a copy of its parent's names, a new IPC "
                  "namespace starts from the kernel's defaults: a container's IPC limits are "
                  "whatever its runtime writes (runc's linux.sysctl), never the host's tuning.",
                  ko=predictions.beside(
                      guess, f"호스트의 msgmnb는 {host}; {story_ko}", "ko")
                     + " 부모의 이름을 복사해서 시작하는 UTS 네임스페이스와 달리, 새 IPC "
                       "네임스페이스는 커널 기본값에서 시작합니다: 컨테이너의 IPC 한도는 런타임이 "
                       "써 넣는 값(runc의 linux.sysctl)이고, 호스트에서 조정한 값이 아닙니다.")


def reset() -> list[str]:
    """What notebook 03's exercises leave besides the exercise directory, removed (``reset 03``)."""
    done = [f"stopped PID {p}" for p in ownership.kill_processes(resets.boxes_of("ipc"))] + resets.release(KEPT_NAME)
    names = {f"{HIDDEN_QUEUE_KEY:#010x}", f"{KEPT_SEGMENT_KEY:#010x}", SHARED_QUEUE}
    for obj in ipc.objects():
        if obj.name in names:
            ipc.remove(obj)
            done.append(f"removed {obj}")
    return done
