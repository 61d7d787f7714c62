"""The cgroups API on a real kernel: every limit proved by its effect, measured from outside.

The same file runs on the lab's hybrid host (v1 controllers, a v2 tree with
no controllers) and on a pure cgroup v2 guest. Expectations come from the
layout the kernel reports, never from a fixed path: each test is
parametrised by where its controller lives here, so ``pytest -v`` shows
``[v1]``, ``[v2]`` or ``[bpf]`` - which back end really ran. A controller
this host lacks makes its test skip with the reason; none is missing on
either machine the lab is tested on.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from labsupport import cgroups, ownership, process
from labsupport.cgroups import devices_bpf, workloads
from labsupport.cgroups.loopdev import LoopDevice
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.net import shaping as netshape

LAYOUT = cgroups.detect_layout()
MiB = 1 << 20


def on(controller: str, devices: str | None = None) -> pytest.MarkDecorator:
    """Parametrise a test by the back end serving ``controller`` here; skip (with the reason) if none."""
    home = cgroups.home_of(controller, devices, LAYOUT)
    mark = [] if home else [pytest.mark.skip(reason=f"no {controller} ({devices or 'any'}) on "
                                                    f"this host: {LAYOUT.summary()}")]
    return pytest.mark.parametrize("home", [pytest.param(home or "none", marks=mark)])


def _file(group: cgroups.CGroup, controller: str, name: str) -> str:
    """Read a group's file from the tree that serves ``controller`` (what `cat` would show)."""
    if group.homes[controller] == "v1":
        hierarchy = {"io": "blkio"}.get(controller, controller)
        return (group.v1.paths[hierarchy] / name).read_text()
    return (group.v2.path / name).read_text()


# -- the group itself -------------------------------------------------------------

def test_a_group_lives_under_the_lab_parent_in_every_tree_it_needs() -> None:
    with cgroups.create() as group:
        assert group.exists()
        for directory in group.directories:
            assert directory.parent.name == "lab" and directory.name == group.name
            assert directory.parent.parent in hoststate.cgroup_mounts()
        for controller, where in group.homes.items():
            expected = {"v1": "v1", "bpf": "v2"}.get(where, where)
            if expected == "v1":
                for tree in cgroups.api.HIERARCHIES[controller]:
                    assert LAYOUT.v1_controllers[tree] / "lab" / group.name in group.directories
            else:
                assert LAYOUT.v2_mount / "lab" / group.name in group.directories
        if LAYOUT.v2_mount is not None:  # the v2 tree always tracks the group's processes
            assert (LAYOUT.v2_mount / "lab" / group.name).is_dir()
        # What `clean` would find is exactly this group's directories (plus others' groups).
        assert set(group.directories) <= set(ownership.lab_cgroups())
    assert not any(d.exists() for d in group.directories)


def test_v2_controllers_are_enabled_for_the_lab_parent_only_where_v2_serves_them() -> None:
    with cgroups.create() as group:
        on_v2 = sorted(c for c, where in group.homes.items() if where == "v2")
        if group.v2 is not None:
            parent = (LAYOUT.v2_mount / "lab" / "cgroup.subtree_control").read_text().split()
            assert set(on_v2) <= set(parent)
            assert set(on_v2) <= set((group.v2.path / "cgroup.controllers").read_text().split())
        if LAYOUT.kind == "v2":
            assert {"memory", "cpu", "io", "pids"} <= set(on_v2)
        else:
            assert on_v2 == []  # hybrid here: every controller the lab uses lives in v1


def test_a_started_process_is_inside_from_both_sides() -> None:
    with cgroups.create() as group:
        inside = group.run_command(["cat", "/proc/self/cgroup"]).stdout
        lines = [line.split(":", 2) for line in inside.splitlines()]
        own = {tree: path for _, tree, path in lines}
        for directory in group.directories:
            mount = directory.parent.parent
            tree = "" if mount == LAYOUT.v2_mount else ",".join(
                sorted(c for c, m in LAYOUT.v1_controllers.items() if m == mount))
            assert own.get(tree) == f"/lab/{group.name}", (tree, own)
        with group.start(["sleep", "30"]) as child:
            for procs in group.procs_files:
                assert str(child.pid) in procs.read_text().split()
            assert group.running() == [child.pid]
        assert group.running() == []


def test_add_moves_a_running_process_in() -> None:
    with cgroups.create(controllers=["pids"]) as group, process.start(["sleep", "30"]) as child:
        assert child.pid not in group.processes()
        group.add(child.pid)
        assert child.pid in group.processes()
        assert f"/lab/{group.name}" in cgroups.groups_of(child.pid).values()


def test_remove_kills_what_is_left_inside() -> None:
    group = cgroups.create(controllers=["pids"])
    child = group.start(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    deadline = time.monotonic() + 5
    while len(group.running()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    inside = group.running()
    assert len(inside) == 3
    group.remove()
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert not group.exists()
    deadline = time.monotonic() + 5  # the orphaned sleeps are reaped by init a moment later
    while any(hoststate.read_process(p) for p in inside) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(hoststate.read_process(p) for p in inside)


def test_open_group_finds_a_lab_group_by_name_and_by_path() -> None:
    with cgroups.create(controllers=["pids"]) as made:
        by_name = cgroups.open_group(made.name)
        by_path = cgroups.open_group(made.directories[0])
        assert by_name.directories == by_path.directories == made.directories
        assert by_name.homes.keys() >= {"pids"}


# -- memory -----------------------------------------------------------------------

@on("memory")
def test_memory_limit_ends_in_an_oom_kill(home: str) -> None:
    limit = 32 * MiB
    with cgroups.create(controllers=["memory"]) as group:
        group.limit_memory("32M")
        child = group.start_function(workloads.grow_memory, 2 * MiB, 0.01, 256 * MiB)
        highest = 0
        while group.running():
            highest = max(highest, group.usage().memory_bytes or 0)
            time.sleep(0.005)
        assert child.wait(timeout=30) == -signal.SIGKILL  # killed, not finished: it wanted 256 MiB
        used = group.usage()
        assert used.oom_kills == 1
        assert used.memory_limit_bytes == limit
        assert used.memory_limit_hits >= 1
        assert limit * 0.75 <= used.memory_peak_bytes <= limit
        assert highest <= limit
        if home == "v1":
            oom = dict(line.split() for line in _file(group, "memory", "memory.oom_control").splitlines())
            assert oom["oom_kill"] == "1"
            assert int(_file(group, "memory", "memory.failcnt")) >= 1
        else:
            events = dict(line.split() for line in _file(group, "memory", "memory.events").splitlines())
            assert events["oom_kill"] == "1" and int(events["max"]) >= 1
            assert _file(group, "memory", "memory.max").strip() == str(limit)


# -- CPU --------------------------------------------------------------------------

@on("cpu")
def test_cpu_weights_split_one_core_one_to_three(home: str) -> None:
    core = workloads.quiet_core()
    with cgroups.create(controllers=["cpu"]) as light, cgroups.create(controllers=["cpu"]) as heavy:
        light.weight_cpu(100)
        heavy.weight_cpu(300)
        if home == "v1":
            assert (_file(light, "cpu", "cpu.shares"), _file(heavy, "cpu", "cpu.shares")) == ("1024\n", "3072\n")
        else:
            assert (_file(light, "cpu", "cpu.weight"), _file(heavy, "cpu", "cpu.weight")) == ("100\n", "300\n")
        burners = [g.start_function(workloads.burn_cpu, 3.0, core) for g in (light, heavy)]
        time.sleep(0.5)
        before = [g.usage().cpu_seconds for g in (light, heavy)]
        time.sleep(2.0)
        after = [g.usage().cpu_seconds for g in (light, heavy)]
        for child in burners:
            assert child.wait(timeout=30) == 0
    got_light, got_heavy = after[0] - before[0], after[1] - before[1]
    assert 2.4 <= got_heavy / got_light <= 3.6, (got_light, got_heavy)
    assert got_light + got_heavy <= 2.0 * 1.05  # one core between them, never two


@on("cpu")
def test_cpu_quota_caps_a_busy_loop_at_a_fifth_of_a_core(home: str) -> None:
    with cgroups.create(controllers=["cpu"]) as group:
        group.limit_cpu("20%")
        if home == "v1":
            assert _file(group, "cpu", "cpu.cfs_quota_us").strip() == "20000"
            assert _file(group, "cpu", "cpu.cfs_period_us").strip() == "100000"
        else:
            assert _file(group, "cpu", "cpu.max").split() == ["20000", "100000"]
        start = time.monotonic()
        group.run_function(workloads.burn_cpu, 2.0, timeout=20)
        share = group.usage().cpu_seconds / (time.monotonic() - start)
        assert 0.16 <= share <= 0.24, share
        assert group.usage().cpu_throttled_periods > 5
        group.limit_cpu("max")  # lifted: the same loop is never throttled again
        before = group.usage()
        group.run_function(workloads.burn_cpu, 1.0, timeout=20)
        after = group.usage()
        assert after.cpu_throttled_periods == before.cpu_throttled_periods
        assert after.cpu_seconds - before.cpu_seconds > 0.24  # more than the old cap allowed


# -- I/O --------------------------------------------------------------------------

@on("io")
def test_io_throttle_holds_reads_and_writes_within_a_fifth_of_the_limit(home: str) -> None:
    with LoopDevice("64M") as disk, cgroups.create(controllers=["io"]) as group:
        assert str(disk.path) in {d for d in ownership.lab_loop_devices()}  # clean would detach it
        free = group.run_function(workloads.stream_device, str(disk.path), False, 0.5, timeout=20)
        group.limit_io(disk, read="8M", write="4M")
        number = cgroups.device_number(disk)
        if home == "v1":
            assert _file(group, "io", "blkio.throttle.read_bps_device").split() == [number, str(8 * MiB)]
            assert _file(group, "io", "blkio.throttle.write_bps_device").split() == [number, str(4 * MiB)]
        else:
            assert f"{number} rbps={8 * MiB} wbps={4 * MiB}" in _file(group, "io", "io.max")
        rates = {}
        for write in (False, True):
            samples = group.run_function(workloads.stream_device, str(disk.path), write, 2.0, timeout=30)
            (t0, n0), (t1, n1) = samples[0], samples[-1]
            rates[write] = (n1 - n0) / (t1 - t0)
        counted = group.io_bytes(disk)
    assert 0.8 * 8 * MiB <= rates[False] <= 1.2 * 8 * MiB, rates
    assert 0.8 * 4 * MiB <= rates[True] <= 1.2 * 4 * MiB, rates
    assert free[-1][1] / free[-1][0] > 10 * 8 * MiB  # unthrottled: far above the cap
    assert counted["wbytes"] >= 0.8 * 2.0 * 4 * MiB and counted["rbytes"] > 0
    assert not disk.attached()


# -- pids -------------------------------------------------------------------------

@on("pids")
def test_a_fork_bomb_never_passes_the_maximum_and_the_host_is_fine(home: str) -> None:
    maximum = 16
    with cgroups.create(controllers=["pids"]) as group:
        group.limit_pids(maximum)
        assert _file(group, "pids", "pids.max").strip() == str(maximum)
        child = group.start_function(workloads.fork_bomb_as_init, 1.5, namespaces=["pid"])
        counts, host_ok = [], []
        start = time.monotonic()
        while time.monotonic() - start < 1.5:
            counts.append(group.usage().pids)
            if len(counts) % 20 == 0:
                host_ok.append(subprocess.run(["true"]).returncode == 0)
            time.sleep(0.005)
        refused = group.usage().refused_forks
        group.kill()
        child.wait(timeout=10)
        assert group.running() == []
        peak = group.usage().pids_peak
    assert max(counts) == maximum, max(counts)      # it got there ...
    assert all(n <= maximum for n in counts)        # ... and never past it
    assert peak is None or peak <= maximum
    assert refused > 0                              # the kernel said no (EAGAIN)
    assert host_ok and all(host_ok)  # the host went on starting programs meanwhile


# -- devices ----------------------------------------------------------------------

def _null_twin() -> Path:
    """A lab-made node with /dev/null's numbers (c 1:3): what counts is the numbers, not the path."""
    scratch = ownership.temp_dir("devices")
    node = scratch / "mynull"
    os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))
    return node


def _device_effects(devices: str | None) -> None:
    node = _null_twin()
    try:
        with cgroups.create(controllers=["devices"], devices=devices) as group:
            def opens() -> dict[str, str]:
                seen = {}
                for path in (str(node), "/dev/zero"):
                    try:
                        os.close(os.open(path, os.O_RDWR))
                        seen[path] = "ok"
                    except OSError as err:
                        seen[path] = errno.errorcode[err.errno or 0]
                return seen

            assert group.run_function(opens) == {str(node): "ok", "/dev/zero": "ok"}
            group.deny_device(str(node))
            assert group.run_function(opens) == {str(node): "EPERM", "/dev/zero": "ok"}
            os.close(os.open(node, os.O_RDWR))  # the host, outside the group, still may
            group.allow_device("c 1:3 rw")
            assert group.run_function(opens) == {str(node): "ok", "/dev/zero": "ok"}
            group.deny_device("a")
            group.allow_device("/dev/zero rw")
            assert group.run_function(opens) == {str(node): "EPERM", "/dev/zero": "ok"}
            if group.homes["devices"] == "v1":
                assert group.device_rules() == ["c 1:5 rw"]
            else:
                programs = devices_bpf.attached_programs(group.v2.path)
                assert len(programs) == 1  # each change replaced the program before it
    finally:
        shutil.rmtree(node.parent)


@on("devices")
def test_devices_deny_and_allow_by_number(home: str) -> None:
    _device_effects(None)


@on("devices", devices="bpf")
def test_devices_via_an_ebpf_program_on_the_v2_tree(home: str) -> None:
    """On the hybrid host too: a BPF device program attaches to any cgroup2 directory."""
    assert home == "bpf"
    _device_effects("bpf")


# -- network ------------------------------------------------------------------------

def test_a_shaped_veth_carries_tcp_within_a_fifth_of_the_rate() -> None:
    with netshape.LinkedPair() as pair:
        free = pair.transfer(1.0).rate_bits()
        limit = pair.shape("20mbit")
        shaped = pair.transfer(2.0).rate_bits()
        stats = netshape.qdisc_stats(pair.link, pair.sender_ns)
        pair.unshape()
        assert netshape.qdisc_stats(pair.link, pair.sender_ns)["kind"] != "tbf"
    assert limit == 20_000_000
    assert 0.8 * limit <= shaped <= 1.2 * limit, shaped
    assert free > 5 * limit
    assert stats["kind"] == "tbf" and stats["bytes"] > 0.8 * 2.0 * limit / 8


def test_net_cls_works_where_mounted_and_is_refused_in_words_elsewhere() -> None:
    if LAYOUT.where("net_cls") == "v1":
        with cgroups.create(controllers=["net_cls"]) as group:
            group.set_net_class(0x100001)
            assert (group.v1.paths["net_cls"] / "net_cls.classid").read_text().strip() == str(0x100001)
    else:
        with pytest.raises(LabError, match="no net_cls controller"):
            cgroups.create(controllers=["net_cls"])


# -- clear errors -------------------------------------------------------------------

def _foreign_groups() -> list[Path]:
    """Groups the lab did not make: the ones this test process sits in, and each tree's root."""
    found = []
    for tree, path in cgroups.groups_of(os.getpid()).items():
        mount = LAYOUT.v2_mount if tree == "(v2)" else LAYOUT.v1_controllers.get(tree.split(",")[0])
        if mount is not None:
            found += [mount / path.lstrip("/"), mount]
    return found


def test_mistakes_get_one_sentence_and_touch_nothing() -> None:
    with cgroups.create(controllers=["memory", "pids"]) as group:
        for bad in ("-5M", "12 parsecs"):
            with pytest.raises(LabError, match="size"):
                group.limit_memory(bad)
        assert group.usage().memory_limit_bytes is None  # nothing was written
        with pytest.raises(LabError, match="without the cpu controller"):
            group.limit_cpu("20%")
        ended = process.start(["true"])
        ended.wait()
        with pytest.raises(LabError, match=f"The process {ended.pid} is gone"):
            group.add(ended.pid)
    with pytest.raises(LabError, match="knows no controller 'bogus'"):
        cgroups.create(controllers=["bogus"])
    with pytest.raises(LabError, match="not a usable group name"):
        cgroups.create("../escape")
    for foreign in _foreign_groups():
        with pytest.raises(LabError, match="not one of the lab's groups"):
            cgroups.open_group(foreign)
    with pytest.raises(LabError, match="no lab group named"):
        cgroups.open_group("labnosuchgroup")
    with pytest.raises(LabError, match="exists already"):
        with cgroups.create(controllers=["pids"]) as group:
            cgroups.create(group.name, controllers=["pids"])


def test_clean_removes_a_group_with_processes_and_a_device_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """ownership.clean's own cgroup step, pointed at this group only (others work beside us)."""
    group = cgroups.create(controllers=["pids", "devices"], devices="bpf" if LAYOUT.v2_mount else None)
    child = group.start(["sleep", "60"])
    if "devices" in group.homes:
        group.deny_device("/dev/null")
    ours = [d for d in ownership.lab_cgroups() if d.name == group.name]
    assert sorted(ours) == sorted(group.directories)
    monkeypatch.setattr(ownership, "lab_cgroups", lambda: ours)
    report = ownership.CleanReport()
    ownership._remove_cgroups(report)
    assert not report.failed
    assert not group.exists()
    assert child.wait(timeout=10) == -signal.SIGKILL
    group.remove()  # idempotent: nothing left, no error


# -- the notebook's exercises ---------------------------------------------------------

@pytest.fixture()
def exercise_groups(monkeypatch: pytest.MonkeyPatch, exercises: Path) -> dict[int | str, str]:
    """Point the checks at scratch names, so a learner's own ex1..ex3 are never touched."""
    from labsupport.course.exercises import nb08_cgroups

    names = {k: ownership.owned_name(f"ex{k}") for k in nb08_cgroups.GROUPS}
    monkeypatch.setattr(nb08_cgroups, "GROUPS", names)
    return names


def test_exercise_1_the_weights_split_a_core_as_predicted(exercise_groups: dict[int | str, str]) -> None:
    from labsupport.course import predict
    from labsupport.course.exercises import check

    assert "Predict first" in check("08", 1).message
    predict("08", 1, "4 to 1")
    assert "no lab group named" in check("08", 1).message
    with cgroups.create(exercise_groups[1], controllers=["cpu"]) as light, \
            cgroups.create(exercise_groups["1b"], controllers=["cpu"]) as heavy:
        light.weight_cpu(100)
        heavy.weight_cpu(300)
        assert "3.00 times the weight" in check("08", 1).message
        heavy.weight_cpu(400)
        verdict = check("08", 1)
        assert verdict.passed, verdict.message
        share = int(verdict.message.split(f"'{heavy.name}' got ")[1].split("%")[0])
        assert 70 <= share <= 90, verdict.message  # 4:1 of one core is 80 %
        assert "You predicted: '4 to 1'" in verdict.message


def test_exercise_2_a_moved_parent_leaves_its_older_child(exercise_groups: dict[int | str, str]) -> None:
    from labsupport.course import predict
    from labsupport.course.exercises import check

    predict("08", 2, "the child moves too")
    with cgroups.create(exercise_groups[2], controllers=["pids"]) as group:
        assert "holds no running process" in check("08", 2).message
        # Forked inside, the child is in the group too: nothing to show.
        with group.start(["sh", "-c", "sleep 30 & exec sleep 31"]) as inside:
            _wait_for_child(inside.pid)
            assert "all its children in" in check("08", 2).message
        with process.start(["sh", "-c", "sleep 30 & exec sleep 31"]) as parent:
            child = _wait_for_child(parent.pid)
            group.add(parent.pid)
            verdict = check("08", 2)
            assert verdict.passed, verdict.message
            assert f"PID {parent.pid} is in" in verdict.message and f"PID {child} is not" in verdict.message


def _wait_for_child(parent: int) -> int:
    for _ in range(500):
        children = [p for p, proc in hoststate.processes().items() if proc.ppid == parent]
        if children:
            return children[0]
        time.sleep(0.01)
    raise AssertionError(f"PID {parent} forked no child")


def test_exercise_3_devices_proved_by_opening(exercise_groups: dict[int, str]) -> None:
    from labsupport.course.exercises import check

    with cgroups.create(exercise_groups[3], controllers=["devices"]) as group:
        assert "opened /dev/null" in check("08", 3).message
        group.deny_device("a")
        assert "so is /dev/zero" in check("08", 3).message
        group.allow_device("a")
        group.deny_device("/dev/null")
        assert check("08", 3).passed
