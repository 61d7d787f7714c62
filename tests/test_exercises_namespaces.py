"""The exercise checks of notebooks 02-04: a hint before the task is done, "passed" after; and the
predict-then-measure exercises of notebooks 01-05 and 07.

Each test does the exercise for real, the way a learner would. The checks look
at all of the lab's processes; here they see only this test's own, so a box
another developer runs at the same time cannot make a check pass or fail.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from labsupport import namespaces, ownership, process
from labsupport.course import predict
from labsupport.course.exercises import check, nb02_uts, nb03_ipc, nb04_pid, nb07_user
from labsupport.kernel import hoststate
from labsupport.namespaces import ipc, rootfs
from labsupport.namespaces import pid as pidns
from labsupport.process import residue


@pytest.fixture(autouse=True)
def only_this_tests_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    every = ownership.lab_processes

    def mine() -> list[int]:
        below = hoststate.descendants(os.getpid(), hoststate.processes())
        return [pid for pid in every() if pid in below]

    monkeypatch.setattr(ownership, "lab_processes", mine)


@pytest.fixture()
def release_after() -> Iterator[list[str]]:
    """Names a test keeps namespaces under; released afterwards even if the test fails."""
    names: list[str] = []
    yield names
    for each in namespaces.held():
        if each.name in names:
            namespaces.release(each.path)


# -- 02 UTS ------------------------------------------------------------------------

def test_02_box_with_its_own_hostname() -> None:
    assert not nb02_uts.box_has_its_own_hostname().passed
    with namespaces.start(["sleep", "30"], namespaces=["uts"]) as copy:
        namespaces.command_pid(copy)
        verdict = nb02_uts.box_has_its_own_hostname()
        assert not verdict.passed and "still the host's" in verdict.message
    with namespaces.start(["sleep", "30"], namespaces=["uts"], hostname=nb02_uts.BOX_HOSTNAME) as box:
        namespaces.command_pid(box)
        verdict = nb02_uts.box_has_its_own_hostname()
        assert verdict.passed, verdict.message
    assert socket.gethostname() != nb02_uts.BOX_HOSTNAME


def test_02_kept_namespace_and_rename(release_after: list[str]) -> None:
    release_after.append(nb02_uts.KEPT_NAME)
    assert not nb02_uts.namespace_outlives_its_process().passed
    assert "exercise 2 first" in nb02_uts.rename_from_inside().message
    with namespaces.start(["sleep", "30"], namespaces=["uts"], hostname="labex") as box:
        kept = namespaces.keep(namespaces.command_pid(box), "uts", nb02_uts.KEPT_NAME)
        verdict = nb02_uts.namespace_outlives_its_process()
        assert not verdict.passed and "still in it" in verdict.message
    assert nb02_uts.namespace_outlives_its_process().passed
    assert not nb02_uts.rename_from_inside().passed
    namespaces.enter(kept, ["hostname", nb02_uts.RENAMED])
    verdict = nb02_uts.rename_from_inside()
    assert verdict.passed, verdict.message
    assert socket.gethostname() != nb02_uts.RENAMED


# -- 03 IPC ------------------------------------------------------------------------

@pytest.fixture()
def ipc_box() -> Iterator[int]:
    with namespaces.start(["sleep", "30"], namespaces=["ipc"]) as child:
        yield namespaces.command_pid(child)


def test_03_queue_hidden_from_the_host(ipc_box: int) -> None:
    on_host = ipc.make_message_queue(nb03_ipc.HIDDEN_QUEUE_KEY)
    try:
        verdict = nb03_ipc.queue_hidden_from_host()
        assert not verdict.passed and "The host sees" in verdict.message
    finally:
        ipc.remove(on_host)
    assert not nb03_ipc.queue_hidden_from_host().passed
    ipc.make_message_queue(nb03_ipc.HIDDEN_QUEUE_KEY, inside=ipc_box)
    verdict = nb03_ipc.queue_hidden_from_host()
    assert verdict.passed, verdict.message
    assert nb03_ipc.HIDDEN_QUEUE_KEY not in {int(o.name, 16) for o in residue.ipc_objects()
                                             if o.kind == "msg"}


def test_03_queue_shared_by_two_boxes(ipc_box: int) -> None:
    ipc.make_posix_queue(nb03_ipc.SHARED_QUEUE, inside=ipc_box)
    verdict = nb03_ipc.queue_shared_by_two_boxes()
    assert not verdict.passed and "only PID" in verdict.message
    with process.start(["sleep", "30"], enter=ipc_box, enter_namespaces=["ipc"]) as second:
        namespaces.command_pid(second)
        verdict = nb03_ipc.queue_shared_by_two_boxes()
        assert verdict.passed, verdict.message


def test_03_segment_in_a_kept_namespace(release_after: list[str]) -> None:
    release_after.append(nb03_ipc.KEPT_NAME)
    assert not nb03_ipc.segment_in_kept_namespace().passed
    with namespaces.start(["sleep", "30"], namespaces=["ipc"]) as box:
        pid = namespaces.command_pid(box)
        namespaces.keep(pid, "ipc", nb03_ipc.KEPT_NAME)
        assert "holds no shared memory" in nb03_ipc.segment_in_kept_namespace().message
        ipc.make_shared_memory(nb03_ipc.KEPT_SEGMENT_KEY, inside=pid)
        assert "still in it" in nb03_ipc.segment_in_kept_namespace().message
    verdict = nb03_ipc.segment_in_kept_namespace()
    assert verdict.passed, verdict.message


# -- 04 PID ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = pidns.new_root("testex04")
    yield path
    rootfs.remove_root(path)


def test_04_pid_one_with_its_own_proc(root: Path) -> None:
    assert not nb04_pid.pid_one_with_its_own_proc().passed
    with namespaces.start(["sleep", "30"], namespaces=["pid"]) as hosts_proc:
        namespaces.command_pid(hosts_proc)
        verdict = nb04_pid.pid_one_with_its_own_proc()
        assert not verdict.passed and "the host's processes" in verdict.message
    with pidns.box(root, ["sleep", "30"]) as box:
        namespaces.command_pid(box)
        verdict = nb04_pid.pid_one_with_its_own_proc()
        assert verdict.passed, verdict.message


def test_04_zombie_under_pid_one(root: Path) -> None:
    with pidns.box(root, ["sh", "-c", pidns.ORPHAN_SCRIPTS["sh (waits for any child)"]]) as box:
        namespaces.command_pid(box)
        time.sleep(1.5)  # the orphan ends, and sh collects it
        assert not nb04_pid.zombie_under_pid_one().passed
    with pidns.box(root, ["sh", "-c", pidns.ORPHAN_SCRIPTS["sleep (never calls wait)"]]) as box:
        init = namespaces.command_pid(box)
        deadline = time.monotonic() + 5
        while not [p for p in hoststate.processes().values()
                   if p.ppid == init and hoststate.process_state(p.pid) == "Z"]:
            assert time.monotonic() < deadline, "the orphan never became a zombie"
            time.sleep(0.05)
        verdict = nb04_pid.zombie_under_pid_one()
        assert verdict.passed, verdict.message


def test_04_pid_one_that_stops_on_sigterm(root: Path) -> None:
    with pidns.box(root, ["sleep", "30"]) as box:
        init = namespaces.command_pid(box)
        verdict = nb04_pid.pid_one_stops_on_sigterm()
        assert not verdict.passed and "no handler for SIGTERM" in verdict.message
        assert hoststate.read_process(init) is not None
    with pidns.box(root, ["sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"]) as box:
        init = namespaces.command_pid(box)
        verdict = nb04_pid.pid_one_stops_on_sigterm()
        assert verdict.passed, verdict.message
        assert hoststate.process_state(init) in ("", "Z")


# -- predict, then measure: the fourth exercise of notebooks 01-05 and 07 ----------------------


def _predicted_then_measured(notebook: str, guess: str) -> str:
    """A fresh check asks for a prediction; after one, it measures and shows both."""
    verdict = check(notebook, 4)
    assert not verdict.passed and f'predict("{notebook}", 4, ' in verdict.message
    predict(notebook, 4, guess)
    verdict = check(notebook, 4)
    assert verdict.passed, verdict.message
    assert f"You predicted: {guess!r}" in verdict.message
    return verdict.message


def test_01_the_escape_stops_without_cap_sys_chroot(exercises: Path) -> None:
    seen = _predicted_then_measured("01", "it escapes either way")
    assert "root with its capabilities: escaped" in seen
    assert "root without CAP_SYS_CHROOT: stopped: Operation not permitted at chroot()" in seen


def test_02_the_hostname_file_answers_for_the_readers_namespace(exercises: Path) -> None:
    host = socket.gethostname()
    seen = _predicted_then_measured("02", "the host's name")
    assert "/proc/sys/kernel/hostname reads: lab-box" in seen and "gethostname(): lab-written" in seen
    assert socket.gethostname() == host


def test_03_a_new_ipc_namespace_starts_from_the_defaults(exercises: Path) -> None:
    host = open(nb03_ipc.LIMIT).read().strip()
    seen = _predicted_then_measured("03", "a copy of its parent's")
    doubled = 2 * int(host)
    assert f"it sets its own to {doubled}" in seen
    assert f"an IPC namespace it makes then starts with {doubled}" not in seen
    assert open(nb03_ipc.LIMIT).read().strip() == host, "the host's limit is untouched"


def test_04_unshare_pid_moves_only_the_next_child(exercises: Path) -> None:
    seen = _predicted_then_measured("04", "the caller becomes PID 1")
    assert "its child read getpid() = 1 and getppid() = 0" in seen
    assert "the second fork: refused: Cannot allocate memory" in seen


def test_05_only_the_mounts_own_namespace_undoes_read_only(exercises: Path) -> None:
    seen = _predicted_then_measured("05", "nobody can")
    assert "write while read-only: refused (Read-only file system (EROFS))" in seen
    assert "root of a new user namespace remounts it writable: refused" in seen
    assert "this namespace's root remounts it writable: done; write afterwards: done" in seen


def test_07_a_nested_user_namespace_maps_through_its_parent(exercises: Path) -> None:
    seen = _predicted_then_measured("07", "host uid 0")
    assert "/proc/self/uid_map reads 0 0 1" in seen
    assert f"on the host the file belongs to uid {nb07_user.NESTED_UID}" in seen
