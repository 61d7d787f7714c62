"""The child-process runner: namespaces, roots, results and output, checked from both sides."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from labsupport import ownership, process
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.namespaces import rootfs


@pytest.fixture()
def root():
    path = rootfs.new_busybox_root("test")
    yield path
    rootfs.remove_root(path)


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def test_a_command_returns_code_and_output() -> None:
    result = process.run_command(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_exactly_the_namespaces_asked_for_are_new() -> None:
    asked = {"uts", "ipc", "net"}
    with process.start(["sleep", "30"], namespaces=sorted(asked)) as child:
        deadline = time.monotonic() + 5
        while _ns(child.pid, "net") == _ns("self", "net") and time.monotonic() < deadline:
            time.sleep(0.01)
        for kind in ("uts", "ipc", "net", "mnt", "pid", "user", "cgroup"):
            differs = _ns(child.pid, kind) != _ns("self", kind)
            assert differs == (kind in asked), kind


def test_pid_namespace_makes_pid_one_and_proc_shows_only_it(root: Path) -> None:
    result = process.run_command(["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"],
                                 namespaces=["pid", "mnt"], root=root, mount_proc=True)
    pid_inside, count = result.stdout.split()
    assert pid_inside == "1"
    assert int(count) <= 3  # sh, and the ls and grep it runs
    assert not any(m.mountpoint.startswith(str(root)) for m in hoststate.mounts())


def test_hostname_inside_leaves_the_host_alone() -> None:
    host = socket.gethostname()
    result = process.run_command(["hostname"], namespaces=["uts"], hostname="labbox")
    assert result.stdout.strip() == "labbox"
    assert socket.gethostname() == host


def test_a_function_runs_chrooted_without_python_inside(root: Path) -> None:
    assert not (root / "usr/lib/python3").exists()
    listing = process.run_function(lambda: sorted(os.listdir("/")), root=root)
    assert "bin" in listing and "home" not in listing


def test_pivot_root_leaves_no_way_back(root: Path) -> None:
    def climb() -> list[str]:
        os.chdir("/")
        for _ in range(20):
            os.chdir("..")
        return sorted(os.listdir("."))

    assert process.run_function(climb, root=root, namespaces=["mnt"], pivot=True) == \
        sorted(os.listdir(root))


def test_user_namespace_maps_root_inside(root: Path) -> None:
    uid = process.run_function(os.getuid, namespaces=["user"], uid_map="0 100000 1000",
                               gid_map="0 100000 1000")
    assert uid == 0


def test_what_the_function_prints_arrives_here(capsys: pytest.CaptureFixture[str]) -> None:
    process.run_function(lambda: print("hello from the child"), namespaces=["uts"])
    assert "hello from the child" in capsys.readouterr().out


def test_an_exception_inside_is_raised_here() -> None:
    def fail() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        process.run_function(fail)


def test_a_missing_program_is_one_sentence(root: Path) -> None:
    with pytest.raises(LabError, match="Cannot run 'nosuch' inside: No such file"):
        process.run_command(["nosuch"], root=root)


def test_a_root_that_does_not_exist_is_refused_before_forking() -> None:
    with pytest.raises(LabError, match="The root /no/such/root does not exist"):
        process.run_command(["true"], root="/no/such/root")


def test_requests_that_would_touch_the_host_are_refused() -> None:
    with pytest.raises(LabError, match="needs a UTS namespace"):
        process.run_command(["true"], hostname="oops")
    with pytest.raises(LabError, match="needs a mount namespace"):
        process.run_command(["true"], mount_proc=True)


def test_a_time_out_kills_the_whole_tree() -> None:
    with pytest.raises(LabError, match="did not finish within 0.5 s"):
        process.run_command(["sh", "-c", "sleep 60 & sleep 60"], timeout=0.5,
                            namespaces=["pid", "mnt"], mount_proc=True)


def test_children_die_with_their_parent() -> None:
    """A kernel killed with SIGKILL takes its children along (PR_SET_PDEATHSIG)."""
    def parent() -> int:
        child = process.start(["sleep", "60"], namespaces=["pid"])
        return child.pid

    # The middle process returns the grandchild's PID, then exits: the
    # grandchild's parent is gone, so the kernel kills it.
    pid = process.run_function(parent)
    deadline = time.monotonic() + 5
    while hoststate.read_process(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hoststate.read_process(pid) is None
    ownership.unregister_process(pid)


def test_a_running_command_is_known_to_clean_by_its_marker() -> None:
    with process.start(["sleep", "30"]) as child:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child.pid}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert child.pid in ownership.lab_processes()
    assert child.pid not in ownership.lab_processes()
    assert child.returncode == -signal.SIGKILL


def test_a_running_function_is_known_to_clean_by_the_registry() -> None:
    child = process.Child(lambda: time.sleep(30), process.Isolation.make())
    try:
        assert child.pid in ownership.lab_processes()
    finally:
        child.stop()
    assert child.pid not in ownership.lab_processes()


def test_enter_joins_a_running_process_namespaces(root: Path) -> None:
    with process.start(["sleep", "30"], namespaces=["uts", "pid", "mnt", "net"], root=root, pivot=True,
                       hostname="labinner", mount_proc=True) as child:
        deadline = time.monotonic() + 5
        while _ns(child.pid, "uts") == _ns("self", "uts") and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        result = process.run_command(["sh", "-c", "hostname; cat /proc/1/comm; ip -o link | cut -d: -f2"],
                                     enter=child.pid)
        name, pid_one, links = result.stdout.split("\n", 2)
        assert (name, pid_one) == ("labinner", "sleep")
        assert links.split() == ["lo"]


def test_entering_a_process_that_is_gone_is_one_sentence() -> None:
    with process.start(["true"]) as child:
        child.wait()
    with pytest.raises(LabError, match=f"The process {child.pid} is gone"):
        process.run_command(["true"], enter=child.pid)


def test_enter_a_directory_of_kept_namespace_files() -> None:
    """A namespace file bind-mounted elsewhere is entered like /proc/PID/ns, after its process ended."""
    kept = ownership.temp_dir("keptns")
    with process.start(["sleep", "30"], namespaces=["uts"], hostname="labkept") as child:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child.pid}/comm").read_text() != "sleep\n":  # named, then exec'd
            assert time.monotonic() < deadline, "the child never ran sleep"
            time.sleep(0.01)
        (kept / "uts").touch()
        syscalls.mount(f"/proc/{child.pid}/ns/uts", kept / "uts", None, syscalls.MS_BIND)
    try:
        assert hoststate.read_process(child.pid) is None
        assert process.run_command(["hostname"], enter=kept).stdout == "labkept\n"
        assert socket.gethostname() != "labkept"
        with pytest.raises(LabError, match="holds no ipc namespace"):
            process.run_command(["true"], enter=kept, enter_namespaces=["ipc"])
    finally:
        syscalls.umount(kept / "uts")
        rootfs.remove_root(kept)


def test_entering_a_pid_namespace_child_lands_inside_its_pid_namespace(root: Path) -> None:
    """The runner's child waits outside the PID namespace it made; entering it by PID still goes in."""
    with process.start(["sleep", "30"], namespaces=["pid", "mnt"], root=root, pivot=True,
                       mount_proc=True) as child:
        children = Path(f"/proc/{child.pid}/task/{child.pid}/children")
        deadline = time.monotonic() + 5
        while not any(Path(f"/proc/{pid}/comm").read_text() == "sleep\n"
                      for pid in children.read_text().split()):
            assert time.monotonic() < deadline, "PID 1 never ran"
            time.sleep(0.01)
        assert _ns(child.pid, "pid_for_children") != _ns("self", "pid")
        shell = process.run_command(["sh", "-c", "echo $$; cat /proc/1/comm"], enter=child.pid)
        pid_inside, pid_one = shell.stdout.split()
        assert pid_one == "sleep"
        assert int(pid_inside) < 10  # numbered in the box's namespace, not the host's
        assert _ns(child.pid, "pid") == _ns("self", "pid")  # the waiting parent itself stays outside


def test_the_child_joins_cgroups_before_it_runs() -> None:
    """cgroup_procs: the child writes itself into each cgroup.procs before exec - no race, no outside time."""
    from labsupport import cgroups

    with cgroups.create() as group:
        first = process.run_command(["cat", "/proc/self/cgroup"], cgroup_procs=group.procs_files)
        inside = {line.split(":", 2)[2] for line in first.stdout.splitlines()
                  if line.split(":", 2)[1] != "name=systemd"}
        assert f"/lab/{group.name}" in inside
        with process.start(["sleep", "30"], cgroup_procs=group.procs_files) as child:
            deadline = time.monotonic() + 5  # once it runs sleep, it has joined every group
            while Path(f"/proc/{child.pid}/comm").read_text() != "sleep\n" and time.monotonic() < deadline:
                time.sleep(0.01)
            for procs in group.procs_files:
                assert str(child.pid) in procs.read_text().split(), procs
    with pytest.raises(LabError, match="is not the cgroup.procs file of an existing cgroup"):
        process.run_command(["true"], cgroup_procs=[group.procs_files[0]])


@pytest.fixture()
def shared_mount():
    """A lab tmpfs marked shared, as a systemd host's / is: a new mount namespace starts as its peer."""
    path = ownership.temp_dir("test-propagation") / "shared"
    path.mkdir()
    syscalls.mount("lab-shared", path, "tmpfs", 0, "size=1m")
    syscalls.mount(None, path, None, syscalls.MS_SHARED)
    yield path
    syscalls.umount(path, syscalls.MNT_DETACH)
    path.rmdir()
    path.parent.rmdir()


def _mount_at(path: Path, pid: int | str = "self") -> hoststate.Mount:
    return [m for m in hoststate.mounts(f"/proc/{pid}/mountinfo") if m.mountpoint == str(path)][-1]


@pytest.mark.parametrize("propagation, tag", [("private", None), ("slave", "master"), ("unchanged", "shared")])
def test_propagation_decides_what_the_child_makes_of_a_shared_mount(
        shared_mount: Path, propagation: str, tag: str | None) -> None:
    group = _mount_at(shared_mount).propagation.removeprefix("shared:")
    with process.start(["sleep", "30"], namespaces=["mnt"], propagation=propagation) as child:
        deadline = time.monotonic() + 5  # once it runs sleep, the runner's mount step is done
        while Path(f"/proc/{child.pid}/comm").read_text() != "sleep\n" and time.monotonic() < deadline:
            time.sleep(0.01)
        copy = _mount_at(shared_mount, child.pid)
    assert copy.propagation == ("private" if tag is None else f"{tag}:{group}")
    assert _mount_at(shared_mount).propagation == f"shared:{group}"  # the host's own mount is untouched


def test_propagation_requests_are_checked_before_forking() -> None:
    with pytest.raises(LabError, match="Unknown propagation 'rshared': choose from private, slave, unchanged"):
        process.run_command(["true"], namespaces=["mnt"], propagation="rshared")
    with pytest.raises(LabError, match="add 'mnt' to namespaces"):
        process.run_command(["true"], propagation="slave")
    with pytest.raises(LabError, match="could reach the host's table"):
        process.run_command(["true"], namespaces=["mnt"], propagation="unchanged", mount_proc=True)
