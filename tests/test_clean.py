"""Ownership, the residue check and ``labsupport clean``.

The residue check must be able to fail (a check that cannot fail proves
nothing), and clean must remove exactly what the lab made - even after the
notebook kernel that made it was killed with SIGKILL mid-cell.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel

import labsupport
from labsupport import ownership, process
from labsupport.kernel import hoststate, syscalls
from labsupport.process import residue

REPO = Path(__file__).resolve().parent.parent


def _clean_cli() -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labsupport", "clean"], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_residue_check_sees_a_leftover_mount_and_clean_removes_it() -> None:
    before = residue.snapshot()
    target = ownership.temp_dir("leak")
    syscalls.mount("lableak", target, "tmpfs")
    found = residue.residue(before, residue.snapshot())
    assert f"mount: tmpfs lableak on {target}" in found
    report = labsupport.clean()
    assert str(target) in report.removed["mounts"]
    assert residue.residue_since(before) == []


def test_the_residue_check_sees_an_orphaned_process() -> None:
    before = residue.snapshot()
    process.run_command(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
    found = residue.residue_since(before, settle_seconds=0.3)
    assert any(line.startswith("process:") and "sleep" in line for line in found), found
    assert "processes" in labsupport.clean().removed
    assert residue.residue_since(before) == []


def test_clean_leaves_what_is_not_the_labs_alone() -> None:
    """A mount and a process that are not the lab's survive clean."""
    outside = Path("/tmp/not-the-labs-mount")
    outside.mkdir(exist_ok=True)
    sleeper = subprocess.Popen(["sleep", "60"])  # no lab marker, not registered
    syscalls.mount("notlab", outside, "tmpfs")
    try:
        labsupport.clean()
        assert any(m.mountpoint == str(outside) for m in hoststate.mounts())
        assert sleeper.poll() is None
    finally:
        syscalls.umount(outside)
        outside.rmdir()
        sleeper.kill()
        sleeper.wait()


def test_clean_twice_is_harmless() -> None:
    labsupport.clean()
    second = _clean_cli()
    assert second.returncode == 0
    assert second.stdout.strip() == "Nothing to clean: the host holds nothing of the lab's."


_LEAKY_CELL = textwrap.dedent("""
    import os, subprocess, time
    import labsupport as lab
    from labsupport import ownership
    from labsupport.kernel import syscalls
    root = lab.new_busybox_root("killed")
    syscalls.mount("labkilled", root / "mnt", "tmpfs")           # a host-visible mount
    image = root.parent / "disk.img"
    image.write_bytes(bytes(1 << 20))
    subprocess.run(["losetup", "--find", str(image)], check=True)  # a loop device
    lab.run_command(["sh", "-c", "sleep 600 >/dev/null 2>&1 &"])   # an orphan
    keeper = lab.start(["sleep", "600"], namespaces=["pid", "mnt", "uts", "net"])
    (root / "ready").write_text(str(keeper.pid))
    time.sleep(600)
""")


def test_clean_after_a_kernel_killed_mid_cell() -> None:
    before = residue.snapshot()
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(REPO / "notebooks"),
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        kc.execute(_LEAKY_CELL)
        deadline = time.monotonic() + 60
        while not list(ownership.TEMP_DIR.glob("lab-killed-*/rootfs/ready")):
            assert time.monotonic() < deadline, "the leaky cell never got going"
            time.sleep(0.1)
        kernel = km.provisioner.process
        os.kill(kernel.pid, signal.SIGKILL)
        kernel.wait()
    finally:
        kc.stop_channels()
        km.cleanup_resources()
    left = residue.residue_since(before, settle_seconds=0.5)
    kinds = {line.split(":")[0] for line in left}
    assert {"mount", "loop device", "process"} <= kinds, left

    result = _clean_cli()
    assert result.returncode == 0, result.stderr
    assert "mounts" in result.stdout and "loop devices" in result.stdout
    assert residue.residue_since(before) == []
    assert not list(ownership.TEMP_DIR.glob("lab-killed-*"))
