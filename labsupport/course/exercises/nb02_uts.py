"""Notebook 02 (UTS namespace): checks that read the real hostnames of real namespaces.

A check finds the learner's boxes among the lab's processes by their
/proc/PID/ns/uts inode, and reads each namespace's hostname from inside it
(a child that joins it), so the answer is the kernel's, not the notebook's. Exercise 4
reads and writes /proc/sys/kernel/hostname from a throw-away box and shows what happened
beside the learner's prediction.
"""
from __future__ import annotations

import os
import socket

from labsupport import namespaces, ownership, process
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, resets
from labsupport.kernel.errors import LabError

PROC_HOSTNAME = "/proc/sys/kernel/hostname"
#: The hostname exercise 1 asks for, the name exercise 2 keeps under, the rename of exercise 3.
BOX_HOSTNAME = "labsandbox"
KEPT_NAME = "ex02"
RENAMED = "labrenamed"


def _hostname_in(target: int | str) -> str:
    """The hostname a process in that UTS namespace (a PID's, or a kept one's directory) reads."""
    return process.run_function(socket.gethostname, enter=target, enter_namespaces=["uts"])


def _host_renamed(name: str) -> Verdict | None:
    if socket.gethostname() == name:
        return hint(f"The host itself is called {name} now: it was renamed from a process in the "
                    "host's own UTS namespace. Give the host back its name, and rename only a box.",
                    ko=f"지금 호스트 자체의 이름이 {name}입니다: 호스트 자신의 UTS 네임스페이스에 "
                       "있는 프로세스가 이름을 바꾼 것입니다. 호스트의 이름은 원래대로 돌려놓고, "
                       "박스의 이름만 바꾸세요.")
    return None


@exercise("02", 1, f"A running box called {BOX_HOSTNAME}")
def box_has_its_own_hostname() -> Verdict:
    renamed = _host_renamed(BOX_HOSTNAME)
    if renamed:
        return renamed
    boxes = namespaces.lab_namespaces("uts")
    if not boxes:
        return hint("No process the lab started has a UTS namespace of its own right now. Start "
                    "one that keeps running (a long sleep), and check while it runs.",
                    ko="지금은 랩이 시작한 프로세스 중 자기만의 UTS 네임스페이스를 가진 것이 "
                       "없습니다. 계속 실행되는 프로세스(긴 sleep)를 하나 시작하고, 실행되는 동안 "
                       "확인하세요.")
    names = {pids[0]: _hostname_in(pids[0]) for pids in boxes.values()}
    for pid, name in names.items():
        if name == BOX_HOSTNAME:
            return passed(f"PID {pid} reads the hostname {name} while the host still reads "
                          f"{socket.gethostname()}: one kernel, two UTS namespaces.",
                          ko=f"PID {pid}는 호스트 이름을 {name}(으)로 읽고, 호스트는 여전히 "
                             f"{socket.gethostname()}(으)로 읽습니다: 커널은 하나, UTS "
                             "네임스페이스는 둘입니다.")
    copies = [pid for pid, name in names.items() if name == socket.gethostname()]
    if copies:
        return hint(f"PID {copies[0]} has a UTS namespace of its own, but its hostname is still the "
                    "host's: a new UTS namespace starts with a copy of its parent's name. Something "
                    "has to set it.",
                    ko=f"PID {copies[0]}에게는 자기만의 UTS 네임스페이스가 있지만, 호스트 이름은 "
                       "아직 호스트의 것입니다: 새 UTS 네임스페이스는 부모의 이름을 복사해서 "
                       "시작합니다. 누군가 이름을 정해 줘야 합니다.")
    return hint(f"The lab's boxes are called {', '.join(sorted(set(names.values())))}; none is "
                f"called {BOX_HOSTNAME} yet.",
                ko=f"랩의 박스들 이름은 {', '.join(sorted(set(names.values())))}입니다. 아직 "
                   f"{BOX_HOSTNAME}(이)라는 이름의 박스는 없습니다.")


def _kept() -> namespaces.Held | None:
    return next((h for h in namespaces.held() if (h.name, h.kind) == (KEPT_NAME, "uts")), None)


@exercise("02", 2, "A UTS namespace with no process in it")
def namespace_outlives_its_process() -> Verdict:
    kept = _kept()
    if kept is None:
        return hint(f"Nothing is kept under the name {KEPT_NAME!r} yet. A namespace lasts while "
                    "something refers to it: a process in it, or a mount of its /proc/PID/ns file.",
                    ko=f"아직 {KEPT_NAME!r}(이)라는 이름으로 유지되는 것이 없습니다. 네임스페이스는 "
                       "무언가가 그것을 가리키는 동안 살아 있습니다: 그 안의 프로세스, 또는 그 "
                       "/proc/PID/ns 파일의 마운트.")
    if kept.inode == namespaces.namespace_ids()["uts"]:
        return hint(f"The namespace kept as {KEPT_NAME!r} is the host's own UTS namespace: "
                    "keep a box's instead (release this one first).",
                    ko=f"{KEPT_NAME!r}(으)로 유지된 네임스페이스는 호스트 자신의 UTS "
                       "네임스페이스입니다: 대신 박스의 네임스페이스를 유지하세요(먼저 이것을 "
                       "해제하고).")
    inside = [pid for inode, pids in namespaces.lab_namespaces("uts").items()
              if inode == kept.inode for pid in pids]
    if inside:
        return hint(f"The namespace is kept, and PID {inside[0]} is still in it. Stop the process: "
                    "does the namespace, and its hostname, survive without it?",
                    ko=f"네임스페이스는 유지되고 있고, PID {inside[0]}도 아직 그 안에 있습니다. "
                       "프로세스를 멈춰 보세요: 프로세스 없이도 네임스페이스와 그 호스트 이름이 "
                       "살아남을까요?")
    return passed(f"No process is in UTS namespace {kept.inode}, yet it is still there, with the "
                  f"hostname {_hostname_in(kept.path.parent)!r}: the bind mount at {kept.path} "
                  "keeps it alive, as `ip netns add` does for network namespaces.",
                  ko=f"UTS 네임스페이스 {kept.inode}에는 프로세스가 하나도 없는데도 여전히 "
                     f"존재하고, 호스트 이름도 {_hostname_in(kept.path.parent)!r} 그대로입니다: "
                     f"{kept.path}의 바인드 마운트가 네임스페이스를 살려 두고 있습니다. 네트워크 "
                     "네임스페이스에 대해 `ip netns add`가 하는 일과 같습니다.")


@exercise("02", 3, f"Rename the kept namespace to {RENAMED}")
def rename_from_inside() -> Verdict:
    renamed = _host_renamed(RENAMED)
    if renamed:
        return renamed
    kept = _kept()
    if kept is None:
        return hint(f"This exercise works on the namespace kept as {KEPT_NAME!r}: do exercise 2 first.",
                    ko=f"이 연습은 {KEPT_NAME!r}(으)로 유지된 네임스페이스를 다룹니다: 연습 2부터 "
                       "하세요.")
    name = _hostname_in(kept.path.parent)
    if name != RENAMED:
        return hint(f"The kept namespace is still called {name!r}. No new namespace is needed: a "
                    "process can join an existing one (setns) and act there.",
                    ko=f"유지된 네임스페이스의 이름은 아직 {name!r}입니다. 새 네임스페이스는 필요 "
                       "없습니다: 프로세스는 이미 있는 네임스페이스에 들어가서(setns) 그 안에서 "
                       "일할 수 있습니다.")
    return passed(f"The kept namespace is now called {RENAMED}, the host still {socket.gethostname()}: "
                  "joining a namespace is what `nsenter` and `docker exec` do.",
                  ko=f"유지된 네임스페이스의 이름은 이제 {RENAMED}, 호스트는 여전히 "
                     f"{socket.gethostname()}입니다: 네임스페이스에 들어가는 것이 바로 `nsenter`와 "
                     "`docker exec`가 하는 일입니다.")


def _through_proc_sys() -> dict[str, str]:
    """Inside a box named lab-box: read and write the hostname as a file of the host's /proc."""
    if os.stat("/proc/self/ns/uts").st_ino == os.stat(f"/proc/{os.getppid()}/ns/uts").st_ino:
        raise LabError("The probe is not in a UTS namespace of its own: it would rename the host.")
    seen = {"/proc/sys/kernel/hostname reads": open(PROC_HOSTNAME).read().strip()}
    with open(PROC_HOSTNAME, "w") as name:
        name.write("lab-written")
    seen["after writing lab-written into it, the box's gethostname()"] = socket.gethostname()
    return seen


#: What the probe reports, in Korean, for the check's Korean message.
_SEEN_KO = {"/proc/sys/kernel/hostname reads": "/proc/sys/kernel/hostname에서 읽은 값",
            "after writing lab-written into it, the box's gethostname()":
                "거기에 lab-written을 쓴 뒤 박스의 gethostname()"}


@exercise("02", 4, "Predict what the host's /proc/sys/kernel/hostname is to a box, then try")
def hostname_file_is_namespaced() -> Verdict:
    guess = predictions.required("02", 4, "for what a box reads in /proc/sys/kernel/hostname - "
                                 "the host's /proc, not remounted - and whose name changes when "
                                 "root in the box writes to it",
                                 ko="박스가 /proc/sys/kernel/hostname에서 읽는 값(다시 마운트하지 "
                                    "않은 호스트의 /proc)과, 박스 안의 root가 그 파일에 쓸 때 "
                                    "누구의 이름이 바뀌는지")
    if isinstance(guess, Verdict):
        return guess
    host = socket.gethostname()
    seen = process.run_function(_through_proc_sys, namespaces=["uts"], hostname="lab-box",
                                timeout=10)
    if socket.gethostname() != host:
        return hint("The host's own name changed while the check ran: give the host back its name.",
                    ko="확인하는 동안 호스트 자신의 이름이 바뀌었습니다: 호스트의 이름을 원래대로 "
                       "돌려놓으세요.")
    story = "; ".join(f"{what}: {name}" for what, name in seen.items())
    story_ko = "; ".join(f"{_SEEN_KO[what]}: {name}" for what, name in seen.items())
    return passed(predictions.beside(guess, f"{story}; the host is still {host}") + " The file "
                  "belongs to the host's /proc, yet the kernel answers for the UTS namespace of "
                  "the process that opens it: some /proc/sys files are per namespace, not per "
                  "mount.",
                  ko=predictions.beside(
                      guess, f"{story_ko}; 호스트는 여전히 {host}", "ko")
                     + " 이 파일은 호스트의 /proc에 있지만, 커널은 그 파일을 여는 프로세스의 UTS "
                       "네임스페이스 기준으로 답합니다: /proc/sys의 어떤 파일들은 마운트가 아니라 "
                       "네임스페이스마다 따로입니다.")


def reset() -> list[str]:
    """What notebook 02's exercises leave besides the exercise directory, removed (``reset 02``)."""
    return [f"stopped PID {p}" for p in ownership.kill_processes(resets.boxes_of("uts"))] + resets.release(KEPT_NAME)
