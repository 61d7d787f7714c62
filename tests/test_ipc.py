"""IPC objects and the IPC namespace: each object seen on one side only, checked from both."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from labsupport import namespaces, ownership, process
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.namespaces import ipc
from labsupport.process import residue


def _sysv_keys_here(kind: str) -> set[int]:
    """Keys in /proc/sysvipc/<kind> as this process reads it (its own IPC namespace)."""
    lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    return {int(line.split()[0]) & 0xFFFFFFFF for line in lines}


def _sysv_keys_inside(pid: int, kind: str) -> set[int]:
    return process.run_function(_sysv_keys_here, kind, enter=pid, enter_namespaces=["ipc"])


@pytest.fixture()
def box() -> Iterator[int]:
    with namespaces.start(["sleep", "30"], namespaces=["ipc"]) as child:
        yield namespaces.command_pid(child)


@pytest.fixture()
def on_host() -> Iterator[list[hoststate.IpcObject]]:
    """Objects a test makes on the host; removed afterwards even when the test fails."""
    made: list[hoststate.IpcObject] = []
    yield made
    for obj in made:
        if (obj.kind, obj.name) in {(o.kind, o.name) for o in residue.ipc_objects()}:
            ipc.remove(obj)


@pytest.mark.parametrize("kind", ["shm", "msg"])
def test_sysv_made_inside_is_absent_on_the_host(box: int, kind: str) -> None:
    key = ipc.lab_key()
    make = ipc.make_shared_memory if kind == "shm" else ipc.make_message_queue
    make(key, "inside", inside=box)
    assert key in _sysv_keys_inside(box, kind)
    assert key not in _sysv_keys_here(kind)


@pytest.mark.parametrize("kind", ["shm", "msg"])
def test_sysv_made_on_the_host_is_absent_inside(box: int, kind: str,
                                                on_host: list[hoststate.IpcObject]) -> None:
    key = ipc.lab_key()
    make = ipc.make_shared_memory if kind == "shm" else ipc.make_message_queue
    on_host.append(make(key, "host"))
    assert key in _sysv_keys_here(kind)
    assert key not in _sysv_keys_inside(box, kind)


def test_posix_queues_are_seen_on_one_side_only(box: int, on_host: list[hoststate.IpcObject]) -> None:
    host_q = ipc.make_posix_queue(text="from the host")
    on_host.append(host_q)
    box_q = ipc.make_posix_queue(text="from inside", inside=box)
    host_names = {o.name for o in ipc.objects() if o.kind == "mqueue"}
    box_names = {o.name for o in ipc.objects(inside=box) if o.kind == "mqueue"}
    assert host_q.name in host_names and host_q.name not in box_names
    assert box_q.name in box_names and box_q.name not in host_names
    table = ipc.visibility([host_q, box_q], box)
    assert [row[2:] for row in table.rows] == [("yes", "no"), ("no", "yes")]


def test_one_key_names_two_segments(box: int, on_host: list[hoststate.IpcObject]) -> None:
    key = ipc.lab_key()
    on_host.append(ipc.make_shared_memory(key, "made on the host"))
    ipc.make_shared_memory(key, "made inside", inside=box)
    assert ipc.read_shared_memory(key) == "made on the host"
    assert ipc.read_shared_memory(key, inside=box) == "made inside"


def test_a_process_sharing_our_ipc_namespace_reads_the_segment(on_host: list[hoststate.IpcObject]) -> None:
    """The other side of isolation: without a new IPC namespace, another process finds the key."""
    key = ipc.lab_key()
    on_host.append(ipc.make_shared_memory(key, "shared text"))
    assert process.run_function(ipc.read_shared_memory, key, namespaces=["uts"]) == "shared text"
    with pytest.raises(LabError, match="no such object in this IPC namespace"):
        process.run_function(ipc.read_shared_memory, key, namespaces=["ipc"])


def test_objects_die_with_their_namespace_unless_it_is_kept() -> None:
    with namespaces.start(["sleep", "30"], namespaces=["ipc"]) as child:
        pid = namespaces.command_pid(child)
        queue = ipc.make_message_queue(text="kept", inside=pid)
        path = namespaces.keep(pid, "ipc", "testipc")
    try:
        inside = ipc.objects(inside=path.parent)
        assert (queue.kind, queue.name) in {(o.kind, o.name) for o in inside}
        assert queue.name not in {o.name for o in ipc.objects()}
    finally:
        namespaces.release(path)


def test_the_residue_check_and_clean_find_a_lab_object_and_only_that() -> None:
    before = residue.snapshot()
    lab_q = ipc.make_message_queue()
    lab_mq = ipc.make_posix_queue()
    other = ipc.make_shared_memory(0x2AB00001)  # outside the lab's range: not the lab's
    try:
        found = residue.residue(before, residue.snapshot())
        assert f"IPC object: {lab_q}" in found and f"IPC object: {lab_mq}" in found
        assert [str(o) for o in ipc.lab_objects()] == sorted([str(lab_mq), str(lab_q)])
        report = ownership.CleanReport()
        ipc_kind = next(kind for kind in ownership.kinds() if kind.name == "IPC objects")
        ipc_kind.remove(report)  # as clean() walks the registry
        assert sorted(report.removed["IPC objects"]) == sorted([str(lab_mq), str(lab_q)])
        left = {(o.kind, o.name) for o in residue.ipc_objects()}
        assert ("shm", "0x2ab00001") in left
        assert ("msg", lab_q.name) not in left and ("mqueue", lab_mq.name) not in left
    finally:
        ipc.remove(other)


def test_remove_lab_objects_empties_the_hosts_lab_range(on_host: list[hoststate.IpcObject]) -> None:
    made = [ipc.make_shared_memory(), ipc.make_posix_queue()]
    on_host.extend(made)
    removed = ipc.remove_lab_objects()
    assert {str(o) for o in made} <= {str(o) for o in removed}
    assert not ipc.lab_objects()


def test_bad_keys_and_names_are_one_sentence(box: int) -> None:
    with pytest.raises(LabError, match="A SysV key is a number"):
        ipc.make_message_queue(-4)
    with pytest.raises(LabError, match="A POSIX queue name is a slash and a name"):
        ipc.make_posix_queue("labq")
    with pytest.raises(LabError, match="already exists in this IPC namespace"):
        key = ipc.lab_key()
        ipc.make_message_queue(key, inside=box)
        ipc.make_message_queue(key, inside=box)
    with pytest.raises(LabError, match="The process 999999999 is gone"):
        ipc.objects(inside=999999999)
