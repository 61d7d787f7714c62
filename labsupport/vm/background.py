"""MicroVMs that outlive the command that started them: ``python -m labsupport vm boot|ls|stop``.

A ``VM`` object dies with the Python that made it (QEMU gets SIGKILL when
its parent ends), which is right for a notebook cell but useless from a
terminal: the command returns, and the guest would go with it. So ``boot``
starts a small keeper - ``python -m labsupport.vm.background DIR``, in its
own session like a container's shim - that holds the ``VM`` and waits;
``stop`` asks the keeper to end it. Both carry the lab's marker in their
environment, so ``clean`` finds them even when nobody calls ``stop``.

State lives in /run/labsupport/vms/<name>/state.json, so ``ls`` in another
process (or a notebook) sees what a terminal started.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import psutil

from labsupport import ownership, process
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.ownership import records
from labsupport.vm import platforms
from labsupport.vm.guest_kernel import fetch_kernel
from labsupport.vm.initramfs import FAILED_MARKER, READY_MARKER, guest_config
from labsupport.vm.qemu import QEMU, VM

#: Records of background microVMs: stale once their QEMUs are killed, so clean() empties it.
VMS_DIR = ownership.STATE_DIR / "vms"
ownership.add_scratch(VMS_DIR)
BOOT_TIMEOUT = 120.0
NAME = re.compile(r"[a-z][a-z0-9-]{0,19}")
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


# -- the keeper (its own process) -------------------------------------------------

def keep(directory: Path) -> None:
    """Boot the VM the state asks for, report it, and hold it until SIGTERM."""
    wanted = records.read(directory)
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        config = guest_config(fetch_kernel(), memory_mb=wanted["memory_mb"], cpus=wanted["cpus"])
        machine = VM.start(config)
    except Exception as err:  # noqa: BLE001 - the booting command shows it to the learner
        records.write(directory, status="failed", error=str(err))
        return
    with machine:
        records.write(directory, status="booting", qemu_pid=machine.pid,
                      qemu_started=records.started(machine.pid),
                      accelerator=machine.accelerator, console=str(machine.console_path))
        try:
            reached = machine.wait_for(READY_MARKER, BOOT_TIMEOUT, fail_on=(FAILED_MARKER,))
        except LabError as err:
            records.write(directory, status="failed", error=str(err))
            return
        records.write(directory, status="running", boot_seconds=round(reached.seconds, 3))
        while not stopping and machine.is_running():
            time.sleep(0.2)
    shutil.rmtree(directory, ignore_errors=True)


# -- the commands -----------------------------------------------------------------

def _check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise LabError(f"The VM name {name!r} must be 1-20 lower-case letters, digits or -, "
                       "starting with a letter.")
    return name


def _fresh_name() -> str:
    taken = {vm["name"] for vm in ls()}
    return next(f"vm{n}" for n in range(1, 10_000) if f"vm{n}" not in taken)


def boot(name: Optional[str] = None, memory_mb: int = 256, cpus: int = 2,
         timeout: float = BOOT_TIMEOUT) -> dict[str, Any]:
    """Boot an idle microVM in the background; return its state once the guest's /init ran."""
    if shutil.which(QEMU) is None:
        raise LabError(f"QEMU ({QEMU}) is not installed: run `sudo ./lab install` "
                       f"(it installs the {platforms.host_or_x86().qemu_package} package).")
    name = _check_name(name) if name else _fresh_name()
    if any(vm["name"] == name for vm in ls()):
        raise LabError(f"A VM called {name} is running already: stop it first or pick another name.")
    guest_config(fetch_kernel(), memory_mb=memory_mb, cpus=cpus).check()  # bad input, before anything starts
    directory = VMS_DIR / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    records.write(directory, name=name, status="starting", memory_mb=memory_mb, cpus=cpus)
    env = process.command_env({"PYTHONPATH": _PACKAGE_PARENT})
    with open(directory / "keeper.log", "ab") as log:
        keeper = subprocess.Popen([sys.executable, "-m", "labsupport.vm.background", str(directory)],
                                  env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=log)
    records.write(directory, keeper_pid=keeper.pid, keeper_started=records.started(keeper.pid))
    deadline = time.monotonic() + timeout + 30
    while time.monotonic() < deadline:
        state = records.read(directory)
        if state.get("status") == "running":
            return state
        if state.get("status") == "failed" or keeper.poll() is not None:
            stop(name)
            raise LabError(f"The VM {name} did not boot: {state.get('error') or 'its keeper ended'}.")
        time.sleep(0.05)
    stop(name)
    raise LabError(f"The VM {name} did not boot within {timeout:g} s.")


def ls() -> list[dict[str, Any]]:
    """Every background VM that is still alive, with QEMU's memory now; dead entries are pruned."""
    found = []
    for directory in sorted(VMS_DIR.glob("*")) if VMS_DIR.is_dir() else []:
        state = records.read(directory)
        if not records.alive(state.get("keeper_pid"), state.get("keeper_started")):
            if state.get("status") != "starting":
                shutil.rmtree(directory, ignore_errors=True)
            continue
        if records.alive(state.get("qemu_pid"), state.get("qemu_started")):
            info = psutil.Process(state["qemu_pid"]).memory_full_info()
            state.update(rss_mib=round(info.rss / 2 ** 20, 1), pss_mib=round(info.pss / 2 ** 20, 1))
        found.append(state)
    return found


def find(name: str) -> dict[str, Any]:
    for state in ls():
        if state["name"] == name:
            return state
    known = ", ".join(vm["name"] for vm in ls()) or "none is running"
    raise LabError(f"There is no VM {name!r} ({known}): `python -m labsupport vm ls` lists them.")


def stop(name: str, grace: float = 10.0) -> None:
    """End the VM: SIGTERM to its keeper (which stops QEMU), then SIGKILL if it lingers."""
    directory = VMS_DIR / _check_name(name)
    state = records.read(directory)
    if not state:
        find(name)  # raises the one-sentence error
    keeper = (state.get("keeper_pid"), state.get("keeper_started"))
    qemu = (state.get("qemu_pid"), state.get("qemu_started"))
    if records.alive(*keeper):
        os.kill(keeper[0], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while (records.alive(*keeper) or records.alive(*qemu)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid, started in (keeper, qemu):
        if records.alive(pid, started):
            os.kill(pid, signal.SIGKILL)  # QEMU also dies with its keeper (parent-death signal)
    deadline = time.monotonic() + 5
    while (records.alive(*keeper) or records.alive(*qemu)) and time.monotonic() < deadline:
        time.sleep(0.02)
    _reap(keeper[0])
    shutil.rmtree(directory, ignore_errors=True)


def _reap(pid: Optional[int]) -> None:
    """Collect the keeper if this process started it (a notebook did): no zombie is left."""
    if pid:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # started by another process (a terminal), which collected it


def table() -> Table:
    rows = [(vm["name"], vm.get("status"), vm.get("qemu_pid", ""), vm.get("accelerator", "").upper(),
             vm.get("boot_seconds", ""), vm.get("pss_mib", ""), vm.get("rss_mib", ""))
            for vm in ls()]
    return Table(["name", "status", "QEMU PID", "accelerator", "boot s", "PSS MiB", "RSS MiB"], rows,
                 "Background microVMs (python -m labsupport vm ls)")


if __name__ == "__main__":
    keep(Path(sys.argv[1]))
