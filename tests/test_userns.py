"""User namespaces (notebook 07) and its checks: ids, owners and capabilities from both sides.

Inside is read by a process that joins the box's user namespace (or by the
box's own function); the host reads /proc/PID/status, /proc/PID/uid_map and
file owners itself. Expectations come from the map in use and from the
doctor's finding, not from this machine's numbers.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from labsupport import process
from labsupport.course import doctor
from labsupport.course.exercises import check, workdir
from labsupport.namespaces import chroot
from labsupport.namespaces import user as userns

NOBODY_IN_OWN_NAMESPACE = ["setpriv", f"--reuid={userns.NOBODY}", f"--regid={userns.NOBODY}", "--clear-groups",
                           "unshare", "--user", "--map-root-user", "sleep", "60"]


@pytest.fixture()
def scratch() -> Path:
    path = userns.scratch_dir()
    yield path
    chroot.remove_scratch(path)




def _remap_root() -> int:
    """The host uid that root inside stands for under the notebook's map."""
    return userns.outside_id(0, [userns.MapLine(*map(int, userns.REMAP.split()))])


def _wait_for_comm(pid: int, name: str) -> None:
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}/comm").read_text().strip() != name and time.monotonic() < deadline:
        time.sleep(0.01)


def test_root_inside_is_the_mapped_uid_on_the_host() -> None:
    with userns.start_box() as box:
        inside = process.run_function(lambda: (os.getuid(), os.getgid(), userns.id_map()),
                                      enter=box.pid, enter_namespaces=["user"])
        host = userns.host_ids(box.pid), userns.id_map(box.pid)
    assert inside[:2] == (0, 0)
    assert host[0] == (_remap_root(), _remap_root())
    assert host[1] == inside[2] == [userns.MapLine(0, _remap_root(), 65536)]


def test_a_file_made_inside_belongs_to_the_mapped_uid_on_the_host(scratch: Path) -> None:
    uid = _remap_root()
    box_dir = userns.owned_directory(scratch / "box", uid, uid)
    host_file = userns.host_owned_file(scratch / "host-owned.txt")
    made = box_dir / "made-inside.txt"
    with userns.start_box() as box:
        table = userns.both_sides(box.pid, made, host_file)
    rows = {row[0]: row[1:] for row in table.rows}
    inside, outside = rows["box/made-inside.txt (made inside)"]
    assert (inside, outside) == ("owner uid 0", f"owner uid {uid}")
    assert made.stat().st_uid == uid and made.stat().st_gid == uid
    host_inside, host_outside = rows[f"{scratch.name}/host-owned.txt (the host's root's)"]
    assert "EACCES" in host_inside and "owner uid 65534" in host_inside  # host uid 0 is unmapped inside
    assert host_file.read_text() == "written by the host's root\n" and host_file.stat().st_uid == 0
    assert rows["setgroups"] == ("deny", "deny")


def test_capabilities_are_all_inside_and_none_for_nobody(scratch: Path) -> None:
    full = userns.full_set()
    with userns.start_box() as box:
        inside = process.run_function(userns.effective, enter=box.pid, enter_namespaces=["user"])
        seen_by_host = userns.effective(box.pid)
    assert inside == seen_by_host == full
    with process.start(["setpriv", f"--reuid={userns.NOBODY}", f"--regid={userns.NOBODY}",
                        "--clear-groups", "sleep", "60"]) as nobody:
        _wait_for_comm(nobody.pid, "sleep")
        assert userns.host_ids(nobody.pid) == (userns.NOBODY, userns.NOBODY)
        assert userns.effective(nobody.pid) == 0
    story = userns.unprivileged_story(scratch / "nobody")
    assert story.steps[0].caps == 0 and story.steps[0].uid == userns.NOBODY  # its own view, before
    after_unshare = [s for s in story.steps if s.what.startswith("unshare")]
    if after_unshare and not after_unshare[0].failed:
        assert after_unshare[0].caps == full


def test_root_inside_cannot_reach_what_the_host_owns(scratch: Path) -> None:
    uid = _remap_root()
    box_dir = userns.owned_directory(scratch / "box", uid, uid)
    host_file = userns.host_owned_file(scratch / "host-owned.txt")
    said = dict((row[0], row[1]) for row in userns.attempts(box_dir, host_file).rows)
    assert said["create a file in the box's directory"] == "done"
    assert said["mount a tmpfs (own mount namespace)"] == "done"
    assert "EACCES" in said["write the host root's file"]
    assert "EPERM" in said["mount the host's disk read-only"]
    assert "EPERM" in said["create a device node (mknod)"]
    assert "EACCES" in said["read /etc/shadow"]
    # The host's side: its file is unchanged, nothing of the box is mounted here, no node was made.
    assert host_file.read_text() == "written by the host's root\n"
    assert (box_dir / "made-by-root-inside.txt").stat().st_uid == uid
    assert not os.path.ismount(box_dir / "tmp") and not os.path.ismount(box_dir / "disk")
    assert not (box_dir / "null").exists()


def test_an_unprivileged_user_makes_a_namespace_as_the_doctor_predicts(scratch: Path) -> None:
    story = userns.unprivileged_story(scratch / "nobody")
    expected = userns.expected_refusal(doctor.check("user namespaces"))
    unplanned = [s for s in story.steps if s.failed and not s.meant_to_fail]
    if expected is None:
        assert unplanned == []
        def step(start: str, end: str = "") -> userns.Step:
            return next(s for s in story.steps if s.what.startswith(start) and s.what.endswith(end))

        assert "EPERM" in step("write gid_map", "allowed").outcome  # setgroups still allowed: refused
        assert (step("write uid_map").uid, step("write uid_map").gid) == (0, userns.NOBODY)
        assert step("write gid_map", "again").gid == 0
        assert story.made_owner == userns.NOBODY  # the host's side: nobody's file
        assert "EACCES" in story.steps[-1].outcome  # root inside still cannot read /etc/shadow
    else:
        assert unplanned and unplanned[0].what.startswith(expected)
        assert story.made_owner is None


def test_the_runners_box_has_setgroups_denied() -> None:
    def drop_groups() -> str:
        try:
            os.setgroups([])
            return "allowed"
        except OSError as err:
            return errno.errorcode[err.errno]

    with userns.start_box() as box:
        assert Path(f"/proc/{box.pid}/setgroups").read_text().strip() == "deny"
        assert process.run_function(drop_groups, enter=box.pid, enter_namespaces=["user"]) == "EPERM"


@pytest.mark.skipif(shutil.which("capsh") is None, reason="capsh (libcap2-bin) is not installed")
def test_capability_names_match_libcaps_decoding() -> None:
    for mask in (userns.effective(), userns.full_set(), 1 << 21 | 1 << 7):
        out = subprocess.run(["capsh", f"--decode={mask:x}"], capture_output=True, text=True, check=True)
        theirs = out.stdout.strip().split("=", 1)[1].split(",")
        assert [name.lower() for name in userns.capability_names(mask)] == theirs


def test_masks_are_described_in_a_few_words() -> None:
    total = userns.last_capability() + 1
    full = userns.full_set()
    assert userns.describe(0) == "none"
    assert userns.describe(full) == f"all {total}"
    assert userns.describe(full & ~(1 << 24)) == f"{total - 1} of {total}: all but CAP_SYS_RESOURCE"
    assert userns.describe(1 << 21) == f"1 of {total}: CAP_SYS_ADMIN"


def test_the_switches_table_shows_this_kernels_values() -> None:
    shown = {row[0]: row[1] for row in userns.switches_table().rows}
    for path, _ in userns.SWITCHES:
        key = path.removeprefix("/proc/sys/").replace("/", ".")
        expected = Path(path).read_text().strip() if Path(path).exists() else "(not in this kernel)"
        assert shown[key] == expected


def test_clean_up_stops_boxes_and_removes_scratch(exercises: Path) -> None:
    scratch = userns.scratch_dir()
    box = userns.start_box()
    work = workdir.exercise_dir("07")
    (work / "mine.txt").write_text("keep me\n")
    done = dict(userns.clean_up_notebook(exercises=work).rows)
    assert str(box.pid) in done["boxes this Python started"]
    assert str(scratch) in done["scratch directories"] and not scratch.exists()
    assert (work / "mine.txt").exists()
    assert box.wait() != 0


def test_exercise_1_root_inside_someone_else_outside() -> None:
    with process.start(["sleep", "60"], namespaces=["user"]) as same:  # the runner's default map: 0 -> 0
        _wait_for_comm(same.pid, "sleep")
        verdict = check("07", 1)
        assert not verdict.passed and "the host's root" in verdict.message
        with userns.start_box() as box:
            verdict = check("07", 1)
            assert verdict.passed and f"PID {box.pid}" in verdict.message
            assert f"uid {_remap_root()}" in verdict.message


def test_exercise_2_a_file_owned_by_the_mapped_root(exercises: Path) -> None:
    from labsupport.course.exercises.nb07_user import TARGET_UID

    box = workdir.exercise_dir("07") / "box"
    assert "There is no" in check("07", 2).message
    box.mkdir()
    (box / "hello.txt").write_text("by the host's root\n")
    assert "belongs to the host's root" in check("07", 2).message
    (box / "hello.txt").unlink()
    os.chown(box, TARGET_UID, TARGET_UID)
    idmap = f"0 {TARGET_UID} 1"
    process.run_function(lambda: (box / "hello.txt").write_text("by root inside\n"),
                         namespaces=["user"], uid_map=idmap, gid_map=idmap)
    verdict = check("07", 2)
    assert verdict.passed, verdict.message
    assert (box / "hello.txt").stat().st_uid == TARGET_UID


def test_exercise_3_a_namespace_nobody_made() -> None:
    with userns.start_box() as made_by_root:
        verdict = check("07", 3)
        assert not verdict.passed and "created by uid 0" in verdict.message
        with process.start(NOBODY_IN_OWN_NAMESPACE) as nobody:
            _wait_for_comm(nobody.pid, "sleep")
            assert userns.namespace_owner(nobody.pid) == userns.NOBODY
            assert userns.namespace_owner(made_by_root.pid) == 0
            verdict = check("07", 3)
            assert verdict.passed and f"PID {nobody.pid}" in verdict.message
