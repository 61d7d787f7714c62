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
                "Start one that keeps running, and check while it runs.")


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
                          f"PIDs {listed}, where the host's lists {host_count} processes.")
    return hint(f"Host PID {inits[0]} is PID 1 of its own PID namespace, but the /proc it sees "
                f"lists {len(_proc_view(inits[0]))} entries - the host's processes. /proc shows "
                "the PID namespace of whoever mounted it, not of whoever reads it.")


@exercise("04", 2, "A zombie the host can see")
def zombie_under_pid_one() -> Verdict:
    inits = _inits()
    if not inits:
        return _no_init()
    for proc in hoststate.processes().values():
        if proc.ppid in inits and hoststate.process_state(proc.pid) == "Z":
            return passed(f"Host PID {proc.pid} ({proc.name}) is a zombie (state Z in "
                          f"/proc/{proc.pid}/stat) whose parent is PID 1 of its namespace (host PID "
                          f"{proc.ppid}): it ended, and nobody collected its exit status.")
    return hint(f"The lab's PID 1s ({', '.join(map(str, inits))}) have no zombie child: every "
                "child that ended was collected. Which PID 1 never waits for its children?")


@exercise("04", 3, "A PID 1 that does stop on SIGTERM from inside")
def pid_one_stops_on_sigterm() -> Verdict:
    inits = _inits()
    if not inits:
        return _no_init()
    catching = [pid for pid in inits if pidns.handles(pid, signal.SIGTERM)]
    if not catching:
        return hint(f"PID 1 of each of the lab's namespaces (host PIDs {', '.join(map(str, inits))}) "
                    "has no handler for SIGTERM: the kernel drops a signal to a namespace's PID 1 "
                    "that PID 1 did not ask for. /proc/PID/status shows the asked-for ones.")
    init = catching[0]
    namespaces.enter(init, ["kill", "-TERM", "1"])
    if not pidns.ends_within(init, 2):
        return hint(f"Host PID {init} has a handler for SIGTERM, but after kill -TERM 1 from "
                    "inside it still runs 2 s later: the handler has to end it (and a shell runs "
                    "its traps only between commands).")
    return passed(f"kill -TERM 1 from inside ended host PID {init}: a PID 1 gets SIGTERM only when it "
                  "has a handler for it - which is why `docker stop` waits, then sends SIGKILL, "
                  "to a PID 1 that has none.")


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
                                 "lists, and whether a second fork works once that child ended")
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
        "one is mounted; and a namespace whose PID 1 has ended takes no new process.")


def reset() -> list[str]:
    """What notebook 04's exercises leave besides the exercise directory, removed (``reset 04``)."""
    grouped = ownership.processes_in_lab_cgroups()  # containers are PID 1s too: not 04's
    inits = [pid for pid in ownership.lab_processes() if pidns.is_namespace_init(pid) and pid not in grouped]
    stopped = [f"stopped PID {p} (and its namespace)" for p in ownership.kill_processes(inits)]
    return stopped + [f"removed {root}" for root in pidns.remove_roots()]
