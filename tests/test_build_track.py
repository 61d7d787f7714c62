"""Notebook B, the build-your-own-container track: the learner's runtime, checked on the real kernel.

The skeleton a learner starts from passes no level, each for its own reason; the teacher's runtime
passes every one. Each defense is also shown failing with the teacher's runtime changed in one
place - the attack or the leak a check looks for then really happens, and the check says so.
Every run's container, cgroup, network namespace and root are gone afterwards (conftest's residue
check), and while it runs the lab's clean-up would find it.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from pathlib import Path

from labsupport import ownership
from labsupport.course import exercises_of, grading
from labsupport.course.exercises import check
from labsupport.kernel import hoststate

REPO = Path(__file__).resolve().parent.parent
TEACHER = REPO / "teacher" / "solutions" / "mycontainer.py"
LEVELS = range(1, 9)
build = exercises_of("B")


def _install(text: str) -> None:
    target = build.runtime_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def _changed(text: str, code: str, *instead: str) -> str:
    """``text`` with the line whose code (its comment aside) is ``code`` replaced by ``instead``."""
    lines = text.splitlines()
    found = [i for i, line in enumerate(lines) if line.split("  #")[0].strip() == code]
    assert len(found) == 1, code
    indent = lines[found[0]][:len(lines[found[0]]) - len(lines[found[0]].lstrip())]
    lines[found[0]:found[0] + 1] = [indent + line for line in instead]
    return "\n".join(lines) + "\n"


def _teacher_with(code: str, *instead: str) -> None:
    """The teacher's runtime with one line changed: that one defense turned off."""
    _install(_changed(TEACHER.read_text(), code, *instead))


def test_a_missing_file_says_where_to_start(exercises: Path) -> None:
    verdict = check("B", 1)
    assert not verdict.passed and "skeleton" in verdict.message


def test_the_skeleton_passes_no_level_each_with_its_reason(exercises: Path) -> None:
    build.start_file()
    verdicts = {k: check("B", k) for k in LEVELS}
    assert not [k for k, v in verdicts.items() if v.passed]
    assert "nothing runs yet" in verdicts[1].message and "exit code 1" in verdicts[1].message
    for k in LEVELS[1:]:
        assert verdicts[k].message.startswith(f"Level {k} looks at a running container"), verdicts[k]
    assert build.start_file().read_text() == build.SKELETON.read_text()


def test_the_teachers_runtime_passes_every_level(exercises: Path) -> None:
    shutil.copyfile(TEACHER, build.start_file())  # the learner's own file, filled in
    failed = {k: str(v) for k in LEVELS if not (v := check("B", k)).passed}
    assert not failed, failed
    assert build.start_file().read_text() == TEACHER.read_text(), "start_file kept the learner's work"


def _teacher_solution():
    spec = importlib.util.spec_from_file_location("teacher_solution_B", REPO / "teacher" / "solutions" / "nbB.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_each_level_is_a_complete_program(exercises: Path) -> None:
    """The runtime after level k runs and passes level k, not yet k+1: each level stands on its
    own. (That a later level keeps the earlier ones passing, the whole runtime shows above.)"""
    teacher = _teacher_solution()
    for k in range(1, teacher.LEVELS + 1):
        _install(teacher.level_program(k))
        assert check("B", k).passed, (k, check("B", k))
        if k < teacher.LEVELS:
            assert not check("B", k + 1).passed, k
        assert check("B", 8).passed == (k >= 4), k  # the escape fails from the pivot on
    assert teacher.level_program(teacher.LEVELS) == TEACHER.read_text()


def test_the_host_view_reads_the_kernel(exercises: Path) -> None:
    shutil.copyfile(TEACHER, build.start_file())
    view = build.host_view()
    rows = dict(zip(view.column("what the host reads"), view.column(view.headers[2])))
    assert rows["NSpid in /proc/PID/status"].split()[-1] == "1"
    assert rows["lab cgroups in /proc/PID/cgroup"] == f"/lab/{build.NAME}"
    assert "10.204.0.2/24" in rows["IPv4 on links that are up"]
    result = build.try_it(["sh", "-c", "hostname; exit 3"])
    assert (result.returncode, result.stdout.strip()) == (3, build.NAME)


def test_a_running_container_is_the_labs_to_clean(exercises: Path) -> None:
    """While it runs, the runtime and its container are lab processes: `clean` would find them."""
    shutil.copyfile(TEACHER, build.start_file())
    with build.running() as box:
        assert box.pid is not None
        assert {box.runtime.pid, box.pid} <= set(ownership.lab_processes())
        assert [g for g in ownership.lab_cgroups() if g.name == build.NAME]
        assert [n for n in ownership.lab_netns() if n.startswith(f"lab{build.NAME}")]
        assert build.BRIDGE in ownership.lab_links()
        groups = [line.split(":", 2)[2] for line in open(f"/proc/{box.pid}/cgroup").read().splitlines()]
        assert f"/{ownership.PREFIX}/{build.NAME}" in groups
    assert box.left_behind == [] and box.host_changed == []


def test_a_hostname_set_without_a_uts_namespace_stays_in_the_safety_net(exercises: Path) -> None:
    """The attack on the host with the defense off: sethostname in the runtime's own namespace.
    The check's copy of the UTS namespace takes it; the machine keeps its name."""
    host = socket.gethostname()
    _install(_changed(_teacher_solution().level_program(2), "k.unshare(k.CLONE_NEWUTS)"))
    verdict = check("B", 2)
    assert not verdict.passed and f"renamed its runtime's UTS namespace to '{build.NAME}'" in verdict.message
    assert socket.gethostname() == host


def test_a_proc_mounted_without_a_mount_namespace_stays_in_the_safety_net(exercises: Path) -> None:
    """Without the container's own mount namespace its /proc would cover the host's; the check's
    copy of the mount namespace takes it, and this process's /proc is still the host's."""
    _install(_changed(_teacher_solution().level_program(3), "k.unshare(k.CLONE_NEWNS)"))
    verdict = check("B", 3)
    assert not verdict.passed and "mounted proc on /proc in the mount namespace of the runtime" in verdict.message
    assert Path(f"/proc/{os.getpid()}").is_dir() and Path("/proc/self").exists()
    assert [m for m in hoststate.mounts() if m.mountpoint == "/proc"] == \
        [m for m in hoststate.mounts("/proc/1/mountinfo") if m.mountpoint == "/proc"]


def test_fork_without_exec_or_exec_without_fork(exercises: Path) -> None:
    _teacher_with("pid = os.fork()", "pid = 0")
    verdict = check("B", 1)
    assert not verdict.passed and "without forking" in verdict.message


def test_chroot_instead_of_pivot_root_lets_the_escape_through(exercises: Path) -> None:
    """The attack succeeds with the defense off: root climbs out of a chroot and reads the host's file."""
    _teacher_with("new_root(root)", "os.chroot(root)", "os.chdir('/')")
    assert check("B", 3).passed  # the rest still holds
    four, escape = check("B", 4), check("B", 8)
    assert not four.passed and "chroot" in four.message
    assert not escape.passed and "climbed out" in escape.message


def test_an_old_root_left_mounted_is_seen(exercises: Path) -> None:
    text = _changed(TEACHER.read_text(), 'k.pivot_root(".", ".")', 'os.makedirs("old", exist_ok=True)',
                    'k.pivot_root(".", "old")')
    _install(_changed(text, 'k.umount(".", k.MNT_DETACH)'))
    verdict = check("B", 4)
    assert not verdict.passed and "still mounted inside your container, at /old" in verdict.message


def test_capset_alone_is_refilled_by_exec(exercises: Path) -> None:
    """Without the bounding set lowered and without no_new_privs, root's exec gives every capability back."""
    drop = "k.prctl(k.PR_CAPBSET_DROP, cap)"
    _install(_changed(_changed(TEACHER.read_text(), drop, "pass"), "k.set_no_new_privs()"))
    verdict = check("B", 6)
    assert not verdict.passed and "exec fills the sets anew" in verdict.message
    _teacher_with(drop, "pass")  # no_new_privs alone stops the refill; the ceiling stays
    verdict = check("B", 6)
    assert not verdict.passed and "bounding set (CapBnd 000001" in verdict.message


def test_no_new_privs_is_looked_at(exercises: Path) -> None:
    _teacher_with("k.set_no_new_privs()")
    verdict = check("B", 6)
    assert not verdict.passed and "NoNewPrivs is 0" in verdict.message


def test_a_group_left_behind_is_named_and_removed(exercises: Path) -> None:
    _teacher_with("group.remove()")
    verdict = check("B", 5)
    assert not verdict.passed and f"lab/{build.NAME} was still there" in verdict.message
    assert not build._group_dirs()


def test_a_network_left_behind_is_named_and_removed(exercises: Path) -> None:
    _teacher_with("netrun.remove_namespace(netns)")
    verdict = check("B", 7)
    assert not verdict.passed and "network namespace lab" in verdict.message
    assert not build._own_netns()


def test_a_container_in_no_group_of_its_own(exercises: Path) -> None:
    _teacher_with("group.add(os.getpid())")
    verdict = check("B", 5)
    assert not verdict.passed and "limited by nothing of yours" in verdict.message


def test_reset_removes_the_work_and_the_bridge(exercises: Path) -> None:
    build.start_file()
    build._bridge()
    done = grading.reset("B")
    assert f"removed bridge {build.BRIDGE}" in done
    assert not build.runtime_file().parent.exists()


def test_the_track_is_notebook_b() -> None:
    assert grading._require_notebook("b") == "B" and "B" in grading.notebooks()
    assert exercises_of("B") is build
