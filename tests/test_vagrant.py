"""vagrant/: the Vagrantfile is valid, the lab's libvirtd is the lab's, and the VM really boots.

``vagrant validate`` needs no box and no libvirtd (about 2 s). The lab's
libvirtd is checked from both sides: what the daemon sees (its own
/etc/libvirt, its socket) and what the host sees (a lab cgroup, nothing in
/run/libvirt). The slow test boots the comparison VM end to end and records
the timings as a benchmark result for notebook 13.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from labsupport import ownership
from labsupport.bench import vms
from labsupport.bench.result import BenchResult
from labsupport.kernel import hoststate
from labsupport.vm import vagrant


def _validate_in(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["vagrant", "validate"], cwd=directory, env=vagrant.vagrant_env(directory),
                          capture_output=True, text=True, timeout=60)


def test_vagrantfile_validates() -> None:
    done = vagrant.validate()
    assert "validated successfully" in done.output
    assert done.seconds < 30


def test_validate_catches_a_provider_mistake() -> None:
    scratch = ownership.temp_dir("vagrantfile")
    try:
        text = (vagrant.VAGRANT_DIR / "Vagrantfile").read_text()
        assert "libvirt.qemu_use_agent = true" in text
        (scratch / "Vagrantfile").write_text(text.replace("libvirt.qemu_use_agent = true",
                                                          'libvirt.qemu_use_agent = "yes"'))
        (scratch / "provision-lab.sh").write_text("")
        done = _validate_in(scratch)
        assert done.returncode != 0
        assert "qemu_use_agent must be a boolean" in done.stdout + done.stderr
    finally:
        shutil.rmtree(scratch)


def _libvirt_processes() -> list[int]:
    return [p.pid for p in map(hoststate.read_process, hoststate.processes())
            if p is not None and p.name in ("libvirtd", "qemu-system-x86")]


def test_the_labs_libvirtd_keeps_to_lab_directories() -> None:
    with vagrant.Libvirt.start() as daemon:
        # The daemon's view: libvirt's own paths, holding the lab's configuration.
        inside = Path(f"/proc/{daemon.pid}/root/etc/libvirt/qemu.conf").read_text()
        assert "cgroup_controllers = [ ]" in inside
        assert os.stat(f"/proc/{daemon.pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
        # The host's view: a socket under /run/labsupport, nothing in libvirt's own places.
        assert vagrant.SOCKET.is_socket()
        assert not Path("/run/libvirt/libvirt-sock").exists()
        assert not Path("/etc/libvirt/qemu.conf").exists()
        assert daemon.pid in ownership.lab_processes()
        assert daemon.pid in daemon.group.processes()
        assert vagrant.virsh("version").returncode == 0
    assert daemon.pid not in hoststate.processes()
    assert not daemon.group.exists()


@pytest.mark.slow
def test_vagrant_boots_the_comparison_vm_and_leaves_nothing() -> None:
    vagrant.ensure_box()
    timed = []
    with vagrant.Libvirt.start() as daemon:
        try:
            timed.append(vagrant.up())
            # The host's view: QEMU runs under the lab's libvirtd, in the lab's cgroup.
            qemu = [p for p in daemon.group.running() if p != daemon.pid]
            assert qemu and vagrant.domains() == ["labcompare"]
            assert hoststate.read_process(qemu[0]).name == "qemu-system-x86"
            # The guest's view: a whole OS booted by systemd.
            boot = vagrant.ssh("sudo systemd-analyze; cat /proc/1/comm")
            timed.append(boot)
            assert "Startup finished" in boot.output and "systemd" in boot.output.split()[-1]
        finally:
            timed.append(vagrant.destroy())
        assert vagrant.domains() == []
        assert daemon.group.running() == [daemon.pid]   # QEMU has gone: only libvirtd is left
    assert not [p for p in _libvirt_processes() if p in ownership.lab_processes()]
    result = vms.record_vagrant(timed)
    assert isinstance(result, BenchResult) and result.machine["accelerator"] in ("tcg", "kvm")
    assert result.samples["up"][-1] == pytest.approx(timed[0].seconds, abs=0.01)
