"""Root filesystem builders: by hand from host programs, and the cached busybox root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from labsupport import ownership, process
from labsupport.kernel.errors import LabError
from labsupport.namespaces import rootfs


@pytest.fixture()
def scratch():
    path = ownership.temp_dir("rootfs-test")
    yield path / "root"
    rootfs.remove_root(path / "root")


def test_ldd_lists_libc_and_the_loader_for_a_dynamic_program() -> None:
    names = {p.name for p in rootfs.shared_libraries("ls")}
    assert "libc.so.6" in names
    assert any(n.startswith("ld-linux") for n in names)


def test_a_static_program_needs_no_library() -> None:
    assert rootfs.shared_libraries("/bin/busybox") == []


def test_a_root_built_by_hand_runs_its_program_under_chroot(scratch: Path) -> None:
    copied = rootfs.build_from_programs(scratch, ["ls", "cat"])
    assert Path("/usr/lib/x86_64-linux-gnu/libc.so.6") in copied or \
        any(p.name == "libc.so.6" for p in copied)
    result = process.run_command([str(rootfs.find_program("ls")), "/"], root=scratch)
    assert result.ok, result.stderr
    assert set(result.stdout.split()) == set(os.listdir(scratch))


def test_without_its_libraries_the_program_cannot_start(scratch: Path) -> None:
    rootfs.build_from_programs(scratch, ["ls"])
    libc = next(scratch.rglob("libc.so.6"))
    libc.unlink()
    result = process.run_command([str(rootfs.find_program("ls"))], root=scratch)
    assert result.returncode == 127
    assert "libc.so.6" in result.stderr


def test_a_missing_program_is_named() -> None:
    with pytest.raises(LabError, match=r"The program 'no-such-tool' is not on this host"):
        rootfs.build_from_programs("/run/labsupport/tmp/unused", ["no-such-tool"])


def test_a_root_is_never_built_over_existing_files(scratch: Path) -> None:
    scratch.mkdir()
    (scratch / "keep").write_text("learner's file")
    with pytest.raises(LabError, match="is not empty"):
        rootfs.build_from_programs(scratch, ["ls"])
    assert (scratch / "keep").read_text() == "learner's file"


def test_the_busybox_root_is_cached_and_complete() -> None:
    root = rootfs.busybox_root()
    stamp = (root / ".lab-built-from").stat().st_mtime
    assert rootfs.busybox_root() == root
    assert (root / ".lab-built-from").stat().st_mtime == stamp, "rebuilt although it was fresh"
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    assert (root / "usr/sbin/httpd").is_symlink() or (root / "sbin/httpd").is_symlink() or \
        (root / "usr/bin/httpd").is_symlink()


def test_a_fresh_copy_is_writable_and_independent() -> None:
    root = rootfs.new_busybox_root("copy")
    try:
        result = process.run_command(["sh", "-c", "echo hi > /tmp/x && cat /tmp/x && hostname"],
                                     root=root)
        assert result.stdout.splitlines()[0] == "hi"
        assert not (rootfs.busybox_root() / "tmp/x").exists()
    finally:
        rootfs.remove_root(root)
    assert not root.exists()


def test_remove_root_refuses_what_the_lab_did_not_make() -> None:
    with pytest.raises(LabError, match="is not a root the lab made"):
        rootfs.remove_root("/usr")
    assert Path("/usr/bin").is_dir()
