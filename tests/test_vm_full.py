"""The full Debian guest: a disk image built offline, booted to SSH, measured, powered off.

Both sides are checked: the host sees the cached image, QEMU's process and the
forwarded port on 127.0.0.1; the guest answers over SSH with its own kernel and
its own root filesystem. The boot is slow (about 25-35 s under TCG).
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from labsupport import ownership
from labsupport.kernel.errors import LabError
from labsupport.vm import debian_image, fullvm


@pytest.fixture(scope="module")
def image() -> debian_image.DiskImage:
    return debian_image.build(show_progress=False)


def test_the_image_is_cached_in_the_lab_and_is_a_qcow2_with_ext4_inside(image) -> None:
    assert ownership.is_lab_path(image.path) and image.format == "qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image.path)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == image.virtual_size
    assert 100 << 20 < image.size < 1 << 30  # compressed: a few hundred MiB
    assert image.kernel.read_bytes()[0x202:0x206] == b"HdrS"
    assert debian_image.build(show_progress=False) == image  # the second call is the cache


def test_a_customized_image_must_be_named() -> None:
    with pytest.raises(LabError, match="variant name"):
        debian_image.build(customize=lambda root: None)


def test_the_mirror_comes_from_apts_own_sources() -> None:
    assert "://" in debian_image.apt_mirror()


def test_a_full_disk_is_refused_in_one_sentence(monkeypatch) -> None:
    monkeypatch.setattr(debian_image, "NEEDED_FREE_BYTES", 1 << 60)
    with pytest.raises(LabError, match="needs .* GiB free"):
        debian_image._check_space(debian_image.IMAGE_CACHE)


@pytest.mark.slow
def test_the_full_guest_boots_to_ssh_and_powers_off(image) -> None:
    with fullvm.boot(image) as guest:
        assert guest.ssh_ready is not None and guest.ssh_ready.line.startswith("SSH-2.0-OpenSSH")
        assert guest.ssh_ready.accelerator in ("kvm", "tcg")
        memory = guest.vm.memory()
        assert memory.pss > 100 << 20 and memory.accelerator == guest.ssh_ready.accelerator
        # The guest's side: its own kernel (not the host's) and its own disk as /.
        assert guest.ssh("uname -r").strip() == image.release != os.uname().release
        assert guest.ssh("findmnt -no SOURCE /").strip() == "/dev/vda"
        # The host's side: the forward listens on loopback only.
        assert fullvm.ssh_banner(guest.port) is not None
        seconds = guest.shutdown()
        assert not guest.vm.is_running() and seconds < 60
    assert fullvm.ssh_banner(guest.port, timeout=0.5) is None
    assert not guest.vm.console_path.exists()  # scratch removed


@pytest.mark.slow
def test_a_guest_that_never_answers_times_out_with_its_console(image) -> None:
    with pytest.raises(LabError, match="did not answer within 3 s.*last console lines"):
        fullvm.boot(image, timeout=3)
