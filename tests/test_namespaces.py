"""The namespaces module: ids and comparison, entering, keeping - each checked from both sides."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from labsupport import namespaces, ownership, process
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError

HOSTNAME_FILE = Path("/proc/sys/kernel/hostname")


def _link_number(pid: int | str, kind: str) -> int:
    """The inode in the link text 'uts:[4026531838]', read independently of the module."""
    return int(os.readlink(f"/proc/{pid}/ns/{kind}").split("[")[1].rstrip("]"))


def test_namespace_ids_are_the_proc_link_numbers() -> None:
    ids = namespaces.namespace_ids()
    assert set(ids) == {"mnt", "uts", "ipc", "pid", "net", "user", "cgroup"}
    assert all(ids[kind] == _link_number("self", kind) for kind in ids)


@pytest.mark.parametrize("asked", [["uts"], ["ipc", "net"], ["user", "uts"],
                                   ["uts", "ipc", "pid", "mnt", "net", "cgroup"]])
def test_exactly_the_namespaces_asked_for_are_new(asked: list[str]) -> None:
    with namespaces.start(["sleep", "30"], namespaces=asked) as box:
        pid = namespaces.command_pid(box)
        comparison = namespaces.compare(pid)
        assert sorted(comparison.new) == sorted(asked)
        for kind in namespaces.KINDS:  # the host's own view agrees, kind by kind
            differs = _link_number(pid, kind) != _link_number("self", kind)
            assert differs == (kind in asked), kind
        text = str(comparison)
        assert text.count("NEW") == len(asked) and text.count("shared") == 7 - len(asked)
        assert comparison._repr_html_().count("NEW") == len(asked)


def test_own_hostname_inside_and_the_host_unchanged() -> None:
    host = socket.gethostname()
    with namespaces.start(["sleep", "30"], namespaces=["uts"], hostname="labbox") as box:
        pid = namespaces.command_pid(box)
        assert namespaces.enter(pid, ["hostname"]).stdout == "labbox\n"
        table = namespaces.side_by_side(pid, {"hostname": ["hostname"]})
        assert table.rows == [("hostname", host, "labbox")]
        # Renaming from inside a running box changes only the box.
        assert namespaces.enter(pid, ["hostname", "labrenamed"]).ok
        assert namespaces.enter(pid, ["uname", "-n"]).stdout == "labrenamed\n"
    assert socket.gethostname() == host
    assert HOSTNAME_FILE.read_text().strip() == host


def test_a_kept_namespace_outlives_its_process_and_is_entered_by_path() -> None:
    host = socket.gethostname()
    with namespaces.start(["sleep", "30"], namespaces=["uts"], hostname="labkept") as box:
        pid = namespaces.command_pid(box)
        inode = namespaces.namespace_ids(pid)["uts"]
        path = namespaces.keep(pid, "uts", "testkeep")
    try:
        assert hoststate.read_process(pid) is None
        assert path == namespaces.HELD_DIR / "testkeep" / "uts"
        assert [(h.name, h.kind, h.inode) for h in namespaces.held() if h.name == "testkeep"] == \
            [("testkeep", "uts", inode)]
        assert os.stat(path).st_ino == inode  # the same namespace, with no process in it
        assert namespaces.enter(path, ["hostname"]).stdout == "labkept\n"
        assert namespaces.enter(path.parent, ["hostname"]).stdout == "labkept\n"
        assert socket.gethostname() == host
        assert str(path) in [m.mountpoint for m in ownership.lab_mounts()]  # clean would find it
    finally:
        namespaces.release(path)
    assert not path.exists() and not path.parent.exists()
    assert str(path) not in [m.mountpoint for m in hoststate.mounts()]
    assert "testkeep" not in [h.name for h in namespaces.held()]


def test_clean_removes_the_files_a_kept_namespace_sat_on() -> None:
    """After clean unmounts a kept namespace, its empty file and directory go too."""
    with namespaces.start(["sleep", "30"], namespaces=["uts"]) as box:
        path = namespaces.keep(namespaces.command_pid(box), "uts", "testleft")
    syscalls.umount(path)  # what clean's unmount step does
    assert path.exists()
    report = ownership.CleanReport()
    ownership._remove_held_namespace_files(report)
    assert "testleft" in report.removed["kept namespace files"]
    assert not path.parent.exists()


def test_a_mount_namespace_is_kept_only_when_it_is_not_ours() -> None:
    with pytest.raises(LabError, match="cannot be kept inside itself"):
        namespaces.keep(os.getpid(), "mnt", "testself")
    with namespaces.start(["sleep", "30"], namespaces=["mnt"]) as box:
        path = namespaces.keep(namespaces.command_pid(box), "mnt", "testmnt")
    try:
        assert namespaces.enter(path, ["true"]).ok
    finally:
        namespaces.release(path)


def test_stop_children_stops_every_box_of_this_process() -> None:
    boxes = [namespaces.start(["sleep", "30"], namespaces=["uts"]) for _ in range(2)]
    stopped = namespaces.stop_children()
    assert sorted(stopped) == sorted(b.pid for b in boxes)
    for box in boxes:
        assert hoststate.read_process(box.pid) is None  # gone, not left a zombie
        assert box.stop() == box.returncode  # the Child object copes with it


def test_an_unknown_namespace_name_is_one_sentence() -> None:
    with pytest.raises(LabError, match="Unknown namespace 'utz': choose from mnt, uts"):
        namespaces.start(["true"], namespaces=["utz"])
    with pytest.raises(LabError, match="Unknown namespace 'utz'"):
        namespaces.keep(os.getpid(), "utz", "testbad")
    with pytest.raises(LabError, match="Unknown namespace 'utz'"):
        namespaces.enter(os.getpid(), ["true"], kinds=["utz"])


def test_a_pid_that_is_gone_is_one_sentence() -> None:
    with process.start(["true"]) as child:
        child.wait()
    gone = child.pid
    for call in (lambda: namespaces.namespace_ids(gone), lambda: namespaces.compare(gone),
                 lambda: namespaces.keep(gone, "uts", "testgone"),
                 lambda: namespaces.enter(gone, ["true"])):
        with pytest.raises(LabError, match=f"The process {gone} is gone"):
            call()
    assert not (namespaces.HELD_DIR / "testgone").exists()


def test_keeping_a_name_twice_and_releasing_what_is_not_kept_are_one_sentence() -> None:
    with namespaces.start(["sleep", "30"], namespaces=["uts"]) as box:
        pid = namespaces.command_pid(box)
        path = namespaces.keep(pid, "uts", "testtwice")
        try:
            with pytest.raises(LabError, match="already kept as 'testtwice'.*release it first"):
                namespaces.keep(pid, "uts", "testtwice")
        finally:
            namespaces.release(path)
    with pytest.raises(LabError, match="is not a namespace the lab keeps: held\\(\\) lists those"):
        namespaces.release(path)
    with pytest.raises(LabError, match="is not a namespace the lab keeps"):
        namespaces.release("/etc/hostname")
    with pytest.raises(LabError, match="cannot name a kept namespace"):
        namespaces.keep(os.getpid(), "uts", "../escape")


def test_command_pid_explains_a_command_that_never_ran() -> None:
    box = namespaces.start(["no-such-program"], namespaces=["uts"])
    with pytest.raises(LabError, match="ended before it ran"):
        namespaces.command_pid(box, timeout=5)
    box.wait()


def test_the_explorer_shows_the_picked_process() -> None:
    with namespaces.start(["sleep", "30"], namespaces=["net"]) as box:
        pid = namespaces.command_pid(box)
        view = namespaces.explorer({"host": os.getpid(), "box": pid})
        choice = view.children[0]
        assert [value for _, value in choice.options] == [os.getpid(), pid]
        choice.value = pid  # turning the knob re-renders without error
        time.sleep(0.05)
        with pytest.raises(LabError, match="at least one process"):
            namespaces.explorer({})
