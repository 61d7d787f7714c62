"""Mount namespaces (notebook 05) and its checks: every crossing looked at from the box and from the host.

The shared mount is always a lab tmpfs in a scratch directory: the trap is
sprung on the lab's own mount, never on the host's / or /proc.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from labsupport import ownership, process
from labsupport.course.exercises import check, workdir
from labsupport.kernel.errors import LabError
from labsupport.namespaces import chroot, rootfs
from labsupport.namespaces import mount as mounts

#: What crosses, per runner mode: (host -> box, box -> host, unmount in box -> host).
CROSSINGS = {"unchanged": (True, True, True), "slave": (True, False, False), "private": (False, False, False)}


@pytest.fixture()
def scratch() -> Path:
    path = ownership.temp_dir("test-mounts")
    yield path
    chroot.remove_scratch(path)


@pytest.fixture()
def shared(scratch: Path) -> Path:
    path = scratch / "shared"
    mount = mounts.shared_tmpfs(path)
    assert mount.propagation.startswith("shared:") and mount.source == "lab-shared"
    return path




@pytest.mark.parametrize("mode", list(CROSSINGS))
def test_a_mount_made_in_a_box_reaches_the_host_only_through_a_peer(shared: Path, mode: str) -> None:
    target = shared / "from-inside"
    with mounts.start_box(mode) as box:
        mounts.mount_inside(box.pid, target)
        inside = mounts.at(target, box.pid)
    host = mounts.at(target)
    assert inside is not None and inside.source == "lab-inside"
    leaked = CROSSINGS[mode][1]
    assert (host is not None) == leaked
    assert (f" {target} " in Path("/proc/self/mountinfo").read_text()) == leaked
    if leaked:
        assert host.source == "lab-inside" and host.propagation.startswith("shared:")


@pytest.mark.parametrize("mode", list(CROSSINGS))
def test_an_unmount_in_a_box_removes_the_hosts_mount_only_through_a_peer(shared: Path, mode: str) -> None:
    victim = shared / "victim"
    mounts.tmpfs(victim, "lab-victim")
    with mounts.start_box(mode) as box:
        assert mounts.at(victim, box.pid) is not None  # the box has its copy
        mounts.unmount_inside(box.pid, victim)
        assert mounts.at(victim, box.pid) is None
    assert (mounts.at(victim) is None) == CROSSINGS[mode][2]


@pytest.mark.parametrize("mode", list(CROSSINGS))
def test_a_trial_reports_what_the_kernel_did(scratch: Path, mode: str) -> None:
    result = mounts.trial(scratch / mode, mode)
    assert (result.host_to_box, result.box_to_host, result.unmount_to_host) == CROSSINGS[mode]
    expected_copy = {"unchanged": "shared:", "slave": "master:", "private": "private"}[mode]
    assert result.box_copy.startswith(expected_copy)
    assert mounts.below(scratch) == []  # the trial removed its own mounts


def test_a_slave_copy_names_the_hosts_peer_group(shared: Path) -> None:
    group = mounts.at(shared).propagation.removeprefix("shared:")
    with mounts.start_box("slave") as box:
        line = mounts.mountinfo_line(shared, box.pid)
    fields = dict(chroot.mountinfo_fields(line).rows)
    assert fields["propagation (optional fields)"] == f"master:{group}"
    assert fields["mount point"] == str(shared) and fields["source"] == "lab-shared"


def test_a_read_only_bind_shows_a_subdirectory_with_its_own_flags(scratch: Path) -> None:
    mounts.tmpfs(scratch / "fs", "lab-fs")
    (scratch / "fs" / "sub").mkdir()
    view = mounts.bind(scratch / "fs" / "sub", scratch / "view", read_only=True)
    assert (view.fstype, view.source, view.root) == ("tmpfs", "lab-fs", "/sub")
    assert view.options.split(",")[0] == "ro"
    with pytest.raises(OSError) as refused:
        (scratch / "view" / "x").write_text("no")
    assert refused.value.errno == 30  # EROFS
    (scratch / "fs" / "sub" / "x").write_text("yes")  # the same directory, through its writable mount
    assert (scratch / "view" / "x").read_text() == "yes"


def test_volumes_and_a_tmpfs_in_a_pivoted_container(scratch: Path) -> None:
    root = rootfs.new_busybox_root("test-mounts")
    volume = scratch / "volume"
    volume.mkdir()
    try:
        mounts.add_volumes(root, volume)
        look = mounts.look_inside_container(root, volume)
        assert look.writes["/data"] == "written"
        assert look.writes["/data-ro"].startswith("refused") and "EROFS" in look.writes["/data-ro"]
        assert look.writes["/tmp"] == "written"
        # The host's side: the writable bind wrote into the host's directory, the rest did not.
        assert (volume / "via-data.txt").exists()
        assert not (volume / "via-data-ro.txt").exists()
        assert not (root / "tmp" / "via-tmp.txt").exists()
        assert look.host_mounts_at_tmp == 0 and mounts.at(root / "tmp") is None
        # After pivot_root the table holds the new root and what is mounted below it, nothing else.
        inside = {m.mountpoint: m for m in look.inside}
        assert set(inside) == {"/", "/data", "/data-ro", "/proc", "/tmp"}
        assert inside["/data-ro"].options.startswith("ro") and inside["/data"].options.startswith("rw")
        assert inside["/tmp"].source == "lab-box-tmp"
        assert len(mounts.table()) > len(inside)
    finally:
        chroot.remove_scratch(root)


def test_the_chroot_escape_fails_only_under_pivot_root(scratch: Path) -> None:
    root = rootfs.new_busybox_root("test-mounts")
    marker = scratch / "marker.txt"
    marker.write_text("on the host\n")
    try:
        table = mounts.escape_attempts(root, marker)
    finally:
        chroot.remove_scratch(root)
    escaped = dict(zip(table.column("root changed with"), table.column("escaped?")))
    assert escaped["chroot"].startswith("YES")
    assert escaped["pivot_root + mount namespace"].startswith("no")


def test_mounts_outside_the_lab_are_refused(scratch: Path) -> None:
    with pytest.raises(LabError, match="is not below a lab directory"):
        mounts.tmpfs("/mnt/labtest", "lab-x")
    (scratch / "link").symlink_to("/tmp")
    with pytest.raises(LabError, match="is not below a lab directory"):
        mounts.tmpfs(scratch / "link", "lab-x")
    with pytest.raises(LabError, match="bind it read-only"):
        mounts.bind("/etc", scratch / "etc")
    with pytest.raises(LabError, match="Nothing is mounted at"):
        mounts.set_propagation(scratch, "shared")


def test_clean_up_after_a_half_run_notebook(exercises: Path) -> None:
    """As if cells failed half-way: a box still runs, a mount leaked, the exercise dir holds a mount."""
    scratch = ownership.temp_dir(mounts.SCRATCH)
    mounts.shared_tmpfs(scratch / "shared")
    box = mounts.start_box("unchanged")
    mounts.mount_inside(box.pid, scratch / "shared" / "from-inside")
    work = workdir.exercise_dir("05")
    (work / "notes").mkdir()
    (work / "notes" / "mine.txt").write_text("keep me\n")
    mounts.bind(work / "notes", work / "window", read_only=True)
    report = mounts.clean_up_notebook(exercises=work)
    done = dict(report.rows)
    assert str(box.pid) in done["boxes this Python started"]
    assert str(work / "window") in done["mounts in your exercise directory"]
    assert str(scratch) in done["scratch directories (and every mount in them)"]
    assert not scratch.exists() and mounts.below(work) == []
    assert (work / "notes" / "mine.txt").read_text() == "keep me\n"
    assert box.wait() != 0  # stopped by the clean-up


def _wait_for(condition, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_exercise_1_a_mount_only_a_box_sees(scratch: Path) -> None:
    with mounts.start_box() as empty:  # a namespace of its own, but nothing mounted in it yet
        verdict = check("05", 1)
        assert not verdict.passed and "copies of the host's mounts" in verdict.message
        target = scratch / "inner"
        target.mkdir()
        with process.start(["sh", "-c", f"mount -t tmpfs labex {target} && exec sleep 60"],
                           namespaces=["mnt"]) as box:
            assert _wait_for(lambda: mounts.at(target, box.pid) is not None)
            verdict = check("05", 1)
            assert verdict.passed and f"PID {box.pid}" in verdict.message and str(target) in verdict.message
            assert mounts.at(target) is None  # the host's side
        assert mounts.at(target, empty.pid) is None  # nor the other box's


def test_exercise_2_a_read_only_window(exercises: Path) -> None:
    work = workdir.exercise_dir("05")
    assert "Make the directory" in check("05", 2).message
    (work / "notes").mkdir()
    assert "is not a mount point" in check("05", 2).message
    mounts.bind(work / "notes", work / "window")
    assert "anyone may write through it" in check("05", 2).message
    mounts.unmount(work / "window")
    mounts.bind(work / "notes", work / "window", read_only=True)
    verdict = check("05", 2)
    assert verdict.passed, verdict.message
    with pytest.raises(OSError):
        (work / "window" / "x").write_text("no")


def test_exercise_3_a_one_way_mirror(exercises: Path) -> None:
    mirror = workdir.exercise_dir("05") / "mirror"
    assert "is not a mount point yet" in check("05", 3).message
    mounts.tmpfs(mirror, "lab-mirror")
    mounts.set_propagation(mirror, "private")
    assert "peer group" in check("05", 3).message
    mounts.set_propagation(mirror, "shared")
    assert "No running box" in check("05", 3).message
    expected = {"private": "will ever reach it", "unchanged": "a peer of the host's", "slave": None}
    for mode, message in expected.items():
        with mounts.start_box(mode) as box:
            verdict = check("05", 3)
            if message is None:
                assert verdict.passed and f"PID {box.pid}" in verdict.message
            else:
                assert not verdict.passed and message in verdict.message
