"""chroot (notebook 01) and the checks of notebooks 00 and 01, proved on the live kernel.

Each test looks from both sides: what the chrooted process reports, and what
the host reads itself (its mount table, /proc/PID/root, file owners, the
marker file). Exercise tests run in a scratch exercise directory, never in a
learner's real /var/lib/labsupport/exercises.
"""
from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

import labsupport as lab
from labsupport import ownership
from labsupport.course.exercises import check, workdir
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.namespaces import chroot, rootfs

PROGRAMS = ["bash", "ls", "cat", "sleep"]


@pytest.fixture()
def root() -> Path:
    path = ownership.temp_dir("test-chroot") / "root"
    lab.build_from_programs(path, PROGRAMS)
    yield path
    chroot.stop_processes_rooted_in(path)
    chroot.remove_scratch(path)


@pytest.fixture()
def marker() -> Path:
    path = chroot.write_host_marker()
    yield path
    chroot.remove_scratch(path.parent)




def _listing(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def _wait_for_root(pid: int, root: Path) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/root") == str(root.resolve()):
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"PID {pid} never had its root in {root}")


# -- building and entering a root ----------------------------------------------

def test_the_library_table_lists_what_ldd_finds() -> None:
    table = chroot.libraries_table(["ls", "cat"])
    libs = table.column("shared libraries it loads (ldd)")
    assert table.column("program") == ["ls", "cat"]
    for program, listed in zip(["ls", "cat"], libs):
        assert listed.splitlines() == [str(p) for p in rootfs.shared_libraries(program)]
        assert "ld-linux" in listed


def test_the_tree_is_each_program_and_its_libraries_at_the_same_path(root: Path) -> None:
    table = chroot.tree_table(root)
    inside = table.column("path inside the root")[:-1]  # the last row is the total
    # The root mirrors the host's merged /usr (/lib -> usr/lib): each file keeps the name
    # ldd prints, in the directory that name really lives in.
    def real_dir(path: Path) -> str:
        return os.path.join(os.path.realpath(path.parent), path.name)

    expected = {real_dir(rootfs.find_program(p)) for p in PROGRAMS}
    expected |= {real_dir(lib) for p in PROGRAMS for lib in rootfs.shared_libraries(p)}
    assert set(inside) == expected
    for path in inside:
        assert (root / path.lstrip("/")).stat().st_size == Path(path).stat().st_size


def test_inside_the_root_is_only_what_was_copied(root: Path) -> None:
    table = chroot.host_and_inside(root, [["ls", "/"], ["bash", "-c", "cd ../../..; pwd; ls"]])
    ls_host, climb_host = table.column("on the host")
    ls_inside, climb_inside = table.column("inside the chroot")
    assert ls_inside.split() == _listing(root)
    assert ls_host.replace(",", " ").split() == sorted(n for n in os.listdir("/") if not n.startswith("."))
    assert climb_inside.split() == ["/", *_listing(root)]  # ".." stops at the process's root


def test_a_program_without_its_loader_cannot_start() -> None:
    bare = ownership.temp_dir("test-bare") / "root"
    try:
        inside = chroot.copy_program_only(bare, "ls")
        assert (bare / str(inside).lstrip("/")).is_file()
        with pytest.raises(LabError, match="No such file or directory"):
            lab.run_command(["ls", "/"], root=bare)
    finally:
        chroot.remove_scratch(bare)


# -- what chroot does not isolate -----------------------------------------------

def test_chroot_changes_the_files_and_nothing_else(root: Path) -> None:
    before = _listing(root)
    comparison = chroot.compare_host_and_chroot(root)
    seen = comparison.inside
    assert seen["root"] == before
    assert seen["sees_kernel"] and seen["may_signal"]  # this test process is the "kernel"
    assert abs(seen["pids"] - len([p for p in os.listdir("/proc") if p.isdigit()])) < 30
    assert seen["interfaces"] == sorted(name for _, name in socket.if_nameindex())
    assert seen["hostname"] == socket.gethostname()
    assert seen["uid"] == 0 and (root / chroot.MADE_INSIDE).stat().st_uid == 0
    # The mount made inside was in the host's own table, and is gone again.
    mnt = str((root / "mnt").resolve())
    assert comparison.mount_line.split()[4] == mnt and "tmpfs" in comparison.mount_line
    assert not [m for m in hoststate.mounts() if m.mountpoint.startswith(str(root))]
    assert [a.isolated for a in comparison.aspects] == [True] + [False] * (len(comparison.aspects) - 1)


def test_mountinfo_fields_name_each_field() -> None:
    line = "42 27 0:39 / /run/x/mnt rw,relatime shared:5 - tmpfs lab-chroot-tmpfs rw,size=1024k"
    fields = dict(chroot.mountinfo_fields(line).rows)
    assert fields["mount point"] == "/run/x/mnt"
    assert fields["propagation (optional fields)"] == "shared:5"
    assert (fields["filesystem type"], fields["source"]) == ("tmpfs", "lab-chroot-tmpfs")


# -- the escape ------------------------------------------------------------------

def test_the_classic_escape_reaches_the_hosts_root(root: Path, marker: Path) -> None:
    outcome = chroot.try_escape(root, marker)
    assert outcome.escaped
    assert outcome.marker_text == marker.read_text()
    assert outcome.root_after == _listing(Path("/"))


def test_pivot_root_in_a_mount_namespace_stops_the_escape(root: Path, marker: Path) -> None:
    outcome = chroot.try_escape(root, marker, pivot=True)
    assert not outcome.escaped
    assert outcome.root_after == _listing(root)  # the climb ended at the container's /
    assert chroot.HATCH in outcome.root_after
    assert marker.read_text().startswith("written on the host")
    table = chroot.outcomes_table([outcome])
    assert table.column("escaped?") == ["no - still in the container"]


# -- under the hood ----------------------------------------------------------------

def test_the_host_reads_a_chrooted_process_root_in_proc(root: Path) -> None:
    with chroot.waiting_process_in(root) as pid:
        assert os.readlink(f"/proc/{pid}/root") == str(root.resolve())
        rows = {what: value for what, value, _ in chroot.proc_links_table(pid).rows}
        assert rows[f"/proc/{pid}/root"] == str(root.resolve())
        assert rows[f"ls /proc/{pid}/root/"] == ", ".join(_listing(root))
    assert hoststate.read_process(pid) is None


def test_chroot_shares_the_mount_table_and_pivot_root_gets_its_own(root: Path) -> None:
    table = chroot.mount_views(root)
    host_ns, chrooted_ns, pivoted_ns = table.column("/proc/PID/ns/mnt")
    assert host_ns == os.readlink("/proc/self/ns/mnt") == chrooted_ns
    assert pivoted_ns != host_ns
    pivoted = table.column("/proc/PID/mountinfo")[2].splitlines()
    assert pivoted[0] == "2 lines"
    assert pivoted[1].split()[3] == str(root.resolve())  # the new root's "root" field
    assert pivoted[2].split()[4] == "/proc"


# -- clean up --------------------------------------------------------------------

def test_stopping_ends_only_processes_rooted_there(root: Path) -> None:
    inside = lab.start(["sleep", "60"], root=root)
    outside = lab.start(["sleep", "60"])
    try:
        _wait_for_root(inside.pid, root)
        assert chroot.stop_processes_rooted_in(root) == [inside.pid]
        assert hoststate.read_process(inside.pid) is None  # gone, not a zombie
        assert hoststate.read_process(outside.pid) is not None
    finally:
        outside.stop()


def test_remove_scratch_unmounts_first_and_refuses_other_paths() -> None:
    scratch = ownership.temp_dir("test-scratch")
    (scratch / "mnt").mkdir()
    syscalls.mount("labtest", scratch / "mnt", "tmpfs", 0, "size=1m")
    assert chroot.remove_scratch(scratch / "mnt") == [scratch]
    assert not scratch.exists()
    assert not [m for m in hoststate.mounts() if m.mountpoint.startswith(str(scratch))]
    with pytest.raises(LabError, match="not a lab scratch directory"):
        chroot.remove_scratch("/etc")


def test_the_notebooks_clean_up_keeps_the_exercise_work(exercises: Path) -> None:
    mine = workdir.exercise_dir("01") / "myroot"
    mine.mkdir()
    other = ownership.temp_dir("test-other")
    made = [ownership.temp_dir("chroot"), ownership.temp_dir("chroot-bare"), chroot.write_host_marker().parent]
    try:
        table = chroot.clean_up_notebook(exercises=workdir.exercise_dir("01"))
        assert not any(p.exists() for p in made)
        assert mine.is_dir() and other.is_dir()
        assert set(table.column("removed")[1].splitlines()) == {str(p) for p in made}
    finally:
        chroot.remove_scratch(other)


# -- exercises of notebook 01 ------------------------------------------------------

def test_exercise_01_1_runs_ls_in_the_learners_root(exercises: Path) -> None:
    myroot = workdir.exercise_dir("01") / "myroot"
    assert not check("01", 1).passed
    lab.build_from_programs(myroot, ["ls"])
    verdict = check("01", 1)
    assert verdict.passed, verdict.message
    assert lab.run_command(["ls", "/"], root=myroot).stdout.split() == _listing(myroot)


def test_exercise_01_1_hints_at_libraries_and_the_loader(exercises: Path) -> None:
    myroot = workdir.exercise_dir("01") / "myroot"
    myroot.mkdir()
    assert "PATH" in check("01", 1).message  # no ls at all
    shutil.rmtree(myroot)
    lab.build_from_programs(myroot, ["ls"])
    selinux = next(myroot.rglob("libselinux.so*"))
    selinux.unlink()
    verdict = check("01", 1)
    assert not verdict.passed and "libselinux" in verdict.message and "ldd" in verdict.message
    for loader in myroot.rglob("ld-linux*"):
        loader.unlink()
    verdict = check("01", 1)
    assert not verdict.passed and "loader" in verdict.message


def test_exercise_01_2_names_come_from_the_root_numbers_from_the_host(exercises: Path) -> None:
    myroot = workdir.exercise_dir("01") / "myroot"
    lab.build_from_programs(myroot, ["ls"])
    verdict = check("01", 2)
    assert not verdict.passed and "number" in verdict.message
    (myroot / "etc").mkdir()
    (myroot / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    verdict = check("01", 2)
    assert not verdict.passed and "group" in verdict.message
    (myroot / "etc/group").write_text("root:x:0:\n")
    verdict = check("01", 2)
    assert verdict.passed, verdict.message
    # Inside the names read "root"; on the host the same files are owned by uid 0.
    listing = lab.run_command(["ls", "-l", "/"], root=myroot).stdout
    assert {ln.split()[2] for ln in listing.splitlines()[1:]} == {"root"}
    assert {(myroot / n).stat().st_uid for n in os.listdir(myroot)} == {0}


def test_exercise_01_3_finds_the_chrooted_program_from_the_host(exercises: Path) -> None:
    myroot = workdir.exercise_dir("01") / "myroot"
    lab.build_from_programs(myroot, ["sleep"])
    assert "No process" in check("01", 3).message
    with chroot.waiting_process_in(myroot):  # a forked Python: its program lies outside
        verdict = check("01", 3)
        assert not verdict.passed and "outside" in verdict.message
    with lab.start(["sleep", "60"], root=myroot) as child:
        _wait_for_root(child.pid, myroot)
        verdict = check("01", 3)
        assert verdict.passed, verdict.message
        assert f"PID {child.pid}" in verdict.message
        assert os.readlink(f"/proc/{child.pid}/exe") == str(myroot.resolve() / "usr/bin/sleep")
    assert not check("01", 3).passed


# -- exercises of notebook 00 ------------------------------------------------------

def test_exercise_00_2_the_box_runs_the_hosts_kernel(exercises: Path) -> None:
    answer = workdir.exercise_dir("00") / "kernel-inside.txt"
    assert not check("00", 2).passed
    answer.write_text("5.4.0-guest\n")
    assert not check("00", 2).passed
    inside = lab.run_command(["uname", "-r"], namespaces=["uts", "pid", "mnt"], hostname="labbox")
    answer.write_text(inside.stdout)
    verdict = check("00", 2)
    assert verdict.passed, verdict.message
    assert inside.stdout.strip() == os.uname().release
