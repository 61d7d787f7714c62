"""The shim becomes a small C reaper once its container runs: same PID, same duties, less memory.

Each duty the Python shim had is checked on the reaper, from outside: it is
still the parent of the container's PID 1, it keeps the exit code (a signal as
-N), it removes the container's cgroups, ``clean`` finds it, and a container on
the bridge is unplugged at its end. And where the reaper is not built, the
Python shim still does it all.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from labsupport import container, ownership
from labsupport.bench import instances
from labsupport.container import shim, store
from labsupport.kernel import hoststate
from labsupport.process import programs


def _parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def _exe_soon(pid: int, wanted: str, within: float = 5) -> str:
    """The program a process runs, once it is ``wanted`` (the shim execs just after it reports)."""
    deadline = time.monotonic() + within
    while (exe := os.readlink(f"/proc/{pid}/exe")) != wanted and time.monotonic() < deadline:
        time.sleep(0.01)
    return exe


def test_an_idle_containers_shim_is_the_reaper_still_the_parent_of_pid_1_in_under_1_mib() -> None:
    cid = container.run("busybox", ["sleep", "60"], network="none")
    try:
        state = container.state(cid)
        reaper = str(programs.built(shim.REAPER))
        assert _exe_soon(state["shim_pid"], reaper) == reaper
        assert _parent_of(state["pid"]) == state["shim_pid"], "PID 1 lost its parent"
        own, supervisor = instances.container_memory(cid)
        assert supervisor.pss < 1.0, f"the reaper costs {supervisor.pss:.2f} MiB PSS"
        assert sorted(os.listdir(f"/proc/{state['shim_pid']}/fd")) == ["0", "1", "2"], \
            "the reaper holds more than its log"
    finally:
        container.remove(cid, force=True)


@pytest.mark.parametrize("command, killed, code", [(["sh", "-c", "exit 7"], False, 7),
                                                   (["sleep", "60"], True, -signal.SIGKILL)])
def test_the_reaper_keeps_the_exit_code_and_removes_the_cgroups(command: list[str], killed: bool,
                                                                 code: int) -> None:
    cid = container.run("busybox", command, network="none", memory="32M")
    try:
        if killed:  # from the host: PID 1 ignores a SIGKILL sent from inside its namespace
            container.kill(cid, signal.SIGKILL)
        assert container.wait(cid, 10) == code
        state = container.state(cid)
        assert state["status"] == "exited"
        left = [path for path in hoststate.cgroups() if path.endswith(f"lab{cid}")]
        assert not left, f"the reaper left the container's groups: {left}"
        records = os.listdir(ownership.PROCS_DIR) if ownership.PROCS_DIR.is_dir() else []
        assert str(state["shim_pid"]) not in records and str(state["group"]) not in records
    finally:
        container.remove(cid, force=True)


def test_a_container_on_the_bridge_is_unplugged_at_its_end() -> None:
    cid = container.run("busybox", ["sh", "-c", "sleep 0.2"])
    try:
        netns = container.state(cid)["netns"]
        assert container.wait(cid, 20) == 0
        state = store.read_state(store.find(cid))
        assert state["exit_code"] == 0 and not state.get("address")
        assert netns not in hoststate.named_netns()
    finally:
        container.remove(cid, force=True)


def test_clean_ends_a_reaper_and_its_container() -> None:
    import labsupport
    cid = container.run("busybox", ["sleep", "60"], network="none")
    state = container.state(cid)
    labsupport.clean()
    assert not store.holds(state, "shim_pid") and not store.holds(state, "pid")


def test_without_the_reaper_the_python_shim_does_it_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(programs, "built", lambda source: None)  # the shim is forked: it sees this
    cid = container.run("busybox", ["sh", "-c", "sleep 0.3; exit 4"], network="none")
    try:
        state = container.state(cid)
        time.sleep(0.2)  # time enough for a hand-over that must not come
        assert "python" in os.readlink(f"/proc/{state['shim_pid']}/exe")
        assert container.wait(cid, 10) == 4
    finally:
        container.remove(cid, force=True)


def test_the_shim_is_forked_once_and_collected_once_its_container_ends() -> None:
    """The shim is this process's own child (one fork, not a daemon's two) until it ends;
    wait collects it, so no zombie stays behind."""
    cid = container.run("busybox", ["sh", "-c", "sleep 0.2"], network="none")
    try:
        shim_pid = container.state(cid)["shim_pid"]
        assert _parent_of(shim_pid) == os.getpid()
        assert container.wait(cid, 10) == 0
        assert not Path(f"/proc/{shim_pid}").exists(), "the ended shim stayed a zombie"
    finally:
        container.remove(cid, force=True)
