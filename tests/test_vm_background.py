"""`python -m labsupport vm boot|ls|stop`: a microVM that outlives the command that booted it.

Booted from one process, listed from another, stopped from a third; the
host's side is read from /proc (QEMU's PID, its command line, the lab's
marker that lets ``clean`` find it), and after ``stop`` nothing is left.
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from labsupport import ownership
from labsupport.vm import background

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labsupport", "vm", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=240, env=env)


@pytest.mark.slow
def test_boot_list_from_another_process_and_stop() -> None:
    name = f"t{secrets.token_hex(3)}"
    booted = _cli("boot", name)
    try:
        assert booted.returncode == 0, booted.stderr
        qemu_pid = int(re.search(r"QEMU PID (\d+)", booted.stdout).group(1))
        # The booting command has ended; the VM has not.
        qemu = psutil.Process(qemu_pid)
        assert "microvm" in qemu.cmdline() and qemu.status() != psutil.STATUS_ZOMBIE
        assert qemu_pid in ownership.lab_processes(), "clean() would not find this QEMU"
        keeper = qemu.parent()
        assert keeper is not None and keeper.pid in ownership.lab_processes()
        listed = _cli("ls")
        assert listed.returncode == 0 and name in listed.stdout and str(qemu_pid) in listed.stdout
        state = next(vm for vm in background.ls() if vm["name"] == name)
        assert state["status"] == "running" and state["pss_mib"] > 10
        assert state["accelerator"] in ("kvm", "tcg")
    finally:
        stopped = _cli("stop", name)
    assert stopped.returncode == 0, stopped.stderr
    assert not psutil.pid_exists(qemu_pid) or psutil.Process(qemu_pid).status() == psutil.STATUS_ZOMBIE
    assert not (background.VMS_DIR / name).exists()
    assert name not in _cli("ls").stdout


def test_bad_input_is_one_sentence() -> None:
    for args, words in ((("stop", "nosuchvm"), "There is no VM 'nosuchvm'"),
                        (("boot", "Bad_Name"), "must be 1-20 lower-case letters"),
                        (("stop",), "Name the VM to stop")):
        done = _cli(*args)
        assert done.returncode == 2, done
        assert words in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_boot_without_qemu_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no qemu-system-x86_64 on this PATH
    done = _cli("boot", env=env)
    assert done.returncode == 2 and "QEMU (qemu-system-x86_64) is not installed" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(background.VMS_DIR.glob("*")) or all(
        vm["status"] == "running" for vm in background.ls()), "a refused boot left a VM entry"
