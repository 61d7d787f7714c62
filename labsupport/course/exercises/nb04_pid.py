"""Notebook 04 (PID namespace): checks that read the host's /proc about the learner's PID 1s.

A namespace's PID 1 is found from the host as a lab process whose NSpid line
(/proc/PID/status) ends in 1 at a deeper level than ours. The checks read
states and signal masks from /proc; the third sends SIGTERM for real. The fourth
runs unshare(CLONE_NEWPID) in a throw-away child and shows what it and its children
saw beside the learner's prediction.
"""
from __future__ import annotations

import os
import signal

from labsupport import namespaces, ownership
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.namespaces import pid as pidns
from labsupport.process import run_function


def _inits() -> list[int]:
    """The lab's processes that are PID 1 of a PID namespace below ours."""
    return [pid for pid in ownership.lab_processes() if pidns.is_namespace_init(pid)]


def _no_init() -> Verdict:
    return hint("No process the lab started is PID 1 of a PID namespace of its own right now. "
                "Start one that keeps running, and check while it runs.",
                ko="지금은 랩이 시작한 프로세스 중 자기만의 PID 네임스페이스에서 PID 1인 것이 "
                   "없습니다. 계속 실행되는 프로세스를 하나 시작하고, 실행되는 동안 확인하세요.")


def _proc_view(pid: int) -> set[int]:
    """The PIDs listed in the /proc that ``pid`` sees (its root, in its mount namespace)."""
    try:
        return {int(n) for n in os.listdir(f"/proc/{pid}/root/proc") if n.isdigit()}
    except OSError:
        return set()


def _namespace_members(init: int) -> set[int]:
    """The PIDs, as numbered inside, of ``init`` and everything below it."""
    table = hoststate.processes()
    numbers = set()
    for pid in {init} | hoststate.descendants(init, table):
        try:
            numbers.add(pidns.nspid(pid)[-1])
        except LabError:
            pass  # ended meanwhile
    return numbers


@exercise("04", 1, "A PID 1 whose /proc lists only its own namespace")
def pid_one_with_its_own_proc() -> Verdict:
    inits = _inits()
    if not inits:
        return _no_init()
    host_count = len([n for n in os.listdir("/proc") if n.isdigit()])
    for init in inits:
        view = _proc_view(init)
        if view and view == _namespace_members(init):
            listed = ", ".join(map(str, sorted(view)))
            return passed(f"Host PID {init} is PID 1 inside, and the /proc it sees lists only "
                          f"PIDs {listed}, where the host's lists {host_count} processes.",
                          ko=f"호스트 PID {init}가 안에서는 PID 1이고, 그 프로세스가 보는 /proc에는 "
                             f"PID {listed}만 있습니다. 호스트의 /proc에는 프로세스가 "
                             f"{host_count}개 있습니다.")
    return hint(f"Host PID {inits[0]} is PID 1 of its own PID namespace, but the /proc it sees "
                f"lists {len(_proc_view(inits[0]))} entries - the host's processes. /proc shows "
                "the PID namespace of whoever mounted it, not of whoever reads it.",
                ko=f"호스트 PID {inits[0]}는 자기 PID 네임스페이스의 PID 1이지만, 그 프로세스가 "
                   f"보는 /proc에는 항목이 {len(_proc_view(inits[0]))}개, 즉 호스트의 프로세스들이 "
                   "보입니다. /proc은 읽는 쪽이 아니라 마운트한 쪽의 PID 네임스페이스를 보여 "
                   "줍니다.")


@exercise("04", 2, "A zombie the host can see")
def zombie_under_pid_one() -> Verdict:
    inits = _inits()
    if not inits:
        return _no_init()
    for proc in hoststate.processes().values():
        if proc.ppid in inits and hoststate.process_state(proc.pid) == "Z":
            return passed(f"Host PID {proc.pid} ({proc.name}) is a zombie (state Z in "
                          f"/proc/{proc.pid}/stat) whose parent is PID 1 of its namespace (host PID "
                          f"{proc.ppid}): it ended, and nobody collected its exit status.",
                          ko=f"호스트 PID {proc.pid}({proc.name})는 좀비(/proc/{proc.pid}/stat의 "
                             "상태 Z)이고, 부모는 그 네임스페이스의 PID 1(호스트 PID "
                             f"{proc.ppid})입니다: 프로세스는 끝났지만 아무도 종료 상태를 거둬 가지 "
                             "않았습니다.")
    return hint(f"The lab's PID 1s ({', '.join(map(str, inits))}) have no zombie child: every "
                "child that ended was collected. Which PID 1 never waits for its children?",
                ko=f"랩의 PID 1들({', '.join(map(str, inits))})에게는 좀비 자식이 없습니다: 끝난 "
                   "자식은 모두 거둬졌습니다. 자식을 기다려 주지 않는 PID 1은 어떤 것일까요?")


@exercise("04", 3, "A PID 1 that does stop on SIGTERM from inside")
def pid_one_stops_on_sigterm() -> Verdict:
    inits = _inits()
    if not inits:
        return _no_init()
    catching = [pid for pid in inits if pidns.handles(pid, signal.SIGTERM)]
    if not catching:
        return hint(f"PID 1 of each of the lab's namespaces (host PIDs {', '.join(map(str, inits))}) "
                    "has no handler for SIGTERM: the kernel drops a signal to a namespace's PID 1 "
                    "that PID 1 did not ask for. /proc/PID/status shows the asked-for ones.",
                    ko=f"랩의 각 네임스페이스의 PID 1(호스트 PID {', '.join(map(str, inits))})에는 "
                       "SIGTERM 핸들러가 없습니다: 커널은 네임스페이스의 PID 1이 요청하지 않은 "
                       "시그널을 버립니다. 요청한 시그널은 /proc/PID/status에서 볼 수 있습니다.")
    init = catching[0]
    namespaces.enter(init, ["kill", "-TERM", "1"])
    if not pidns.ends_within(init, 2):
        return hint(f"Host PID {init} has a handler for SIGTERM, but after kill -TERM 1 from "
                    "inside it still runs 2 s later: the handler has to end it (and a shell runs "
                    "its traps only between commands).",
                    ko=f"호스트 PID {init}에는 SIGTERM 핸들러가 있지만, 안에서 kill -TERM 1을 "
                       "보내고 2초가 지나도 여전히 실행 중입니다: 핸들러가 프로세스를 끝내야 "
                       "합니다(그리고 셸은 trap을 명령과 명령 사이에서만 실행합니다).")
    return passed(f"kill -TERM 1 from inside ended host PID {init}: a PID 1 gets SIGTERM only when it "
                  "has a handler for it - which is why `docker stop` waits, then sends SIGKILL, "
                  "to a PID 1 that has none.",
                  ko=f"안에서 보낸 kill -TERM 1이 호스트 PID {init}를 끝냈습니다: PID 1은 핸들러가 "
                     "있을 때만 SIGTERM을 받습니다. 그래서 `docker stop`은 핸들러가 없는 PID "
                     "1에게는 기다렸다가 SIGKILL을 보냅니다.")


def _after_unshare_pid() -> dict[str, object]:
    """In a throw-away child of the runner: unshare(CLONE_NEWPID), then fork twice.

    What the caller and its children see, read by themselves; the second fork comes after
    the first child - the namespace's PID 1 - has ended.
    """
    before = os.getpid()
    syscalls.unshare(syscalls.CLONE_NEWPID)
    seen: dict[str, object] = {"caller before": before, "caller after": os.getpid()}
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        listed = sum(1 for name in os.listdir("/proc") if name.isdigit())
        os.write(write_end, f"{os.getpid()} {os.getppid()} {listed}".encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    pid, ppid, listed = os.read(read_end, 100).decode().split()
    seen.update({"child pid": int(pid), "child ppid": int(ppid), "child proc": int(listed),
                 "child on the host": child})
    try:
        second = os.fork()
    except OSError as err:
        seen["second fork"] = f"refused: {os.strerror(err.errno or 0)}"
    else:
        if second == 0:
            os._exit(0)
        os.waitpid(second, 0)
        seen["second fork"] = "a second child started"
    return seen


@exercise("04", 4, "Predict what unshare(CLONE_NEWPID) does to the caller and its children")
def after_unshare_pid() -> Verdict:
    guess = predictions.required("04", 4, "for the PIDs the caller and its first child read after "
                                 "the caller's unshare(CLONE_NEWPID), what the child's ls /proc "
                                 "lists, and whether a second fork works once that child ended",
                                 ko="호출한 프로세스가 unshare(CLONE_NEWPID)를 한 뒤 자신과 첫 "
                                    "자식이 읽는 PID, 그 자식의 ls /proc에 나오는 목록, 그리고 그 "
                                    "자식이 끝난 뒤 두 번째 fork가 되는지")
    if isinstance(guess, Verdict):
        return guess
    seen = run_function(_after_unshare_pid, timeout=10)
    host = sum(1 for name in os.listdir("/proc") if name.isdigit())
    return passed(predictions.beside(
        guess, f"the caller read PID {seen['caller before']} before and {seen['caller after']} "
        f"after; its child read getpid() = {seen['child pid']} and getppid() = "
        f"{seen['child ppid']} (the host calls it {seen['child on the host']}); "
        f"its ls /proc listed {seen['child proc']} processes (the host's /proc: {host}); "
        f"then the second fork: {seen['second fork']}") + " The caller never moves; its first "
        "child is PID 1, with a parent it cannot see; the host's /proc stays the host's until "
        "one is mounted; and a namespace whose PID 1 has ended takes no new process.",
                  ko=predictions.beside(
                      guess, f"호출한 프로세스는 전에 PID {seen['caller before']}, 후에 "
                             f"{seen['caller after']}를 읽었습니다; 자식은 getpid() = "
                             f"{seen['child pid']}, getppid() = {seen['child ppid']}를 "
                             f"읽었습니다(호스트에서는 {seen['child on the host']}); 자식의 ls "
                             f"/proc에는 프로세스가 {seen['child proc']}개 나왔습니다(호스트의 "
                             f"/proc: {host}); 두 번째 fork: {seen['second fork']}", "ko")
                     + " 호출한 프로세스는 옮겨 가지 않습니다. 첫 자식이 PID 1이 되고, 그 부모는 "
                       "자식에게 보이지 않습니다. 호스트의 /proc은 새로 마운트하기 전까지 호스트의 "
                       "것이고, PID 1이 끝난 네임스페이스에는 새 프로세스가 들어갈 수 없습니다.")


def reset() -> list[str]:
    """What notebook 04's exercises leave besides the exercise directory, removed (``reset 04``)."""
    grouped = ownership.processes_in_lab_cgroups()  # containers are PID 1s too: not 04's
    inits = [pid for pid in ownership.lab_processes() if pidns.is_namespace_init(pid) and pid not in grouped]
    stopped = [f"stopped PID {p} (and its namespace)" for p in ownership.kill_processes(inits)]
    return stopped + [f"removed {root}" for root in pidns.remove_roots()]
