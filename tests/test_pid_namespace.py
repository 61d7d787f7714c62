"""The PID namespace: PID 1 inside and outside, /proc, orphans and zombies, signals to PID 1."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from labsupport import namespaces
from labsupport.kernel import hoststate
from labsupport.namespaces import pid as pidns
from labsupport.namespaces import rootfs


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = pidns.new_root("testpid")
    yield path
    rootfs.remove_root(path)


def _host_stat(pid: int) -> tuple[str, int]:
    """(state, parent PID) from the host's /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
    return state, int(ppid)


def test_pid_one_inside_is_a_host_pid_whose_nspid_ends_in_one(root: Path) -> None:
    with pidns.box(root, ["sleep", "30"]) as box:
        init = namespaces.command_pid(box)
        nspid_line = [line for line in Path(f"/proc/{init}/status").read_text().splitlines()
                      if line.startswith("NSpid:")][0]
        assert nspid_line.split()[1:] == [str(init), "1"]
        assert pidns.is_namespace_init(init)
        assert not pidns.is_namespace_init(os.getpid())
        # Inside, the same process is 1: its own /proc says so, and a shell sees it as PID 1.
        inside = namespaces.enter(init, ["sh", "-c", "cat /proc/1/comm; grep NSpid /proc/1/status"])
        assert inside.stdout.split() == ["sleep", "NSpid:", "1"]


def test_remounted_proc_lists_only_the_namespaces_processes(root: Path) -> None:
    host_mounts = set(hoststate.mounts())
    with pidns.box(root, ["sleep", "30"]) as box:
        init = namespaces.command_pid(box)
        listed = namespaces.enter(init, ["ls", "/proc"]).stdout.split()
        numbers = sorted(int(name) for name in listed if name.isdigit())
        assert numbers[0] == 1 and len(numbers) <= 3  # sleep, and the ls that lists
        assert len([n for n in os.listdir("/proc") if n.isdigit()]) > 10  # the host still sees all
        assert str(init) in os.listdir("/proc")
    new = set(hoststate.mounts()) - host_mounts  # (other work on this machine may mount meanwhile)
    assert not [m for m in new if m.fstype == "proc" or m.mountpoint.startswith(str(root))]


def _orphan(init: int) -> int:
    """The host PID of the orphaned ``sleep 1`` under ``init``, waiting for it to be handed over."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for proc in hoststate.processes().values():
            if proc.ppid == init and Path(f"/proc/{proc.pid}/cmdline").read_bytes() == b"sleep\x001\x00":
                return proc.pid
        time.sleep(0.02)
    raise AssertionError("the orphan never reached PID 1")


def test_a_pid_one_that_never_waits_leaves_the_orphan_a_zombie(root: Path) -> None:
    script = pidns.ORPHAN_SCRIPTS["sleep (never calls wait)"]
    with pidns.box(root, ["sh", "-c", script]) as box:
        init = namespaces.command_pid(box)
        orphan = _orphan(init)
        time.sleep(1.5)
        assert _host_stat(orphan) == ("Z", init)
        ps = namespaces.enter(init, ["ps", "-o", "pid,stat,args"]).stdout
        assert any(line.split()[1:] == ["Z", "[sleep]"] for line in ps.splitlines()), ps
    assert hoststate.read_process(orphan) is None  # gone with its namespace


def test_a_pid_one_that_waits_reaps_the_orphan(root: Path) -> None:
    script = pidns.ORPHAN_SCRIPTS["sh (waits for any child)"]
    with pidns.box(root, ["sh", "-c", script]) as box:
        init = namespaces.command_pid(box)
        orphan = _orphan(init)
        assert _host_stat(orphan)[1] == init  # its own parent ended: PID 1 adopted it
        time.sleep(1.5)
        assert hoststate.read_process(orphan) is None
        assert _host_stat(init)[0] == "S"


def _pid_one_after(root: Path, argv: list[str], signame: str, from_host: bool) -> bool:
    """Whether PID 1 still runs half a second after the signal."""
    with pidns.box(root, argv) as box:
        init = namespaces.command_pid(box)
        sent = True
        if from_host:
            os.kill(init, getattr(signal, f"SIG{signame}"))
        else:
            sent = namespaces.enter(init, ["kill", f"-{signame}", "1"]).ok
        time.sleep(0.5)
        alive = hoststate.read_process(init) is not None and _host_stat(init)[0] != "Z"
        # When PID 1 ends, the kernel kills the rest of the namespace - our kill too.
        assert sent or not alive
        return alive


@pytest.mark.parametrize("signame", ["TERM", "INT", "KILL"])
def test_pid_one_ignores_signals_from_inside_it_has_no_handler_for(root: Path, signame: str) -> None:
    assert _pid_one_after(root, ["sleep", "30"], signame, from_host=False)


def test_sigterm_from_the_host_is_ignored_and_sigkill_is_not(root: Path) -> None:
    assert _pid_one_after(root, ["sleep", "30"], "TERM", from_host=True)
    assert not _pid_one_after(root, ["sleep", "30"], "KILL", from_host=True)


def test_a_pid_one_with_a_handler_does_get_sigterm_from_inside(root: Path) -> None:
    trapping = ["sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"]
    assert not _pid_one_after(root, trapping, "TERM", from_host=False)


def test_the_notebook_tables_tell_the_same_story(root: Path) -> None:
    zombie = pidns.orphan_story(root, "sleep (never calls wait)")
    assert [row[4] for row in zombie.rows if row[0] == "1.8 s"] == ["S", "Z"]
    reaped = pidns.orphan_story(root, "sh (waits for any child)")
    assert "sleep 1" not in [row[1] for row in reaped.rows if row[0] == "1.8 s"]
    trials = pidns.signal_trials(root, {"sleep": ["sleep", "30"]}, wait=0.3)
    assert trials.column("PID 1 afterwards") == ["still running"] * 4 + ["ended"]
