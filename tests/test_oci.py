"""The lab's runtime behind runc's command line (labsupport.container.oci, bin/lab-runtime).

Each test drives runc and the lab's runtime the same way - as programs, one
verb at a time, as an engine does - on the same `runc spec` bundle, and reads
what each made from outside, in /proc/PID/*.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from labsupport import ownership, process
from labsupport.container import oci, podman
from labsupport.container import runc as runcs
from labsupport.namespaces import rootfs

REPO = Path(__file__).resolve().parent.parent
LAB_RUNTIME = REPO / "bin" / "lab-runtime"
needs_runc = pytest.mark.skipif(not runcs.available(), reason="runc is not installed")


class Runtime:
    """One OCI runtime run as a program: ``runc --root DIR`` or ``bin/lab-runtime --root DIR``."""

    def __init__(self, name: str, argv: list[str], root: Path) -> None:
        self.name, self.argv, self.root = name, argv, root
        self.env = {**os.environ, "LAB_PYTHON": sys.executable}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # Files, not pipes, for its output: a container's first process keeps create's stdio.
        with open(self.root.parent / f"{self.name}.out", "w+") as out, \
                open(self.root.parent / f"{self.name}.err", "w+") as err:
            done = subprocess.run([*self.argv, "--root", str(self.root), *args], stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=err, env=self.env, timeout=60)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(done.args, done.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)}: {result.stderr}")
        return result

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)


@pytest.fixture()
def scratch() -> Path:
    path = ownership.temp_dir("test-oci")
    path.chmod(0o755)
    parents = runcs.lab_cgroup_parents_missing()
    yield path
    shutil.rmtree(path, ignore_errors=True)
    runcs.remove_empty(parents)


def _bundle(scratch: Path, name: str, argv: list[str], **process_fields: Any) -> Path:
    """`runc spec`'s bundle running ``argv``, with no terminal and a lab-owned cgroup path."""
    bundle = scratch / name
    bundle.mkdir()
    if not (scratch / "rootfs").exists():
        shutil.copytree(rootfs.busybox_root(), scratch / "rootfs", symlinks=True)
    if runcs.available():
        subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
        config = json.loads((bundle / "config.json").read_text())
    else:
        config = json.loads(json.dumps(_RUNC_SPEC_LIKE))
    config["process"].update(args=argv, terminal=False, **process_fields)
    config["root"]["path"] = str(scratch / "rootfs")
    config["linux"]["cgroupsPath"] = f"/{ownership.PREFIX}/{ownership.owned_name('ocitest')}"
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


_RUNC_SPEC_LIKE = {"ociVersion": "1.0.2", "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/",
                   "env": ["PATH=/bin:/sbin"], "noNewPrivileges": True},
                   "root": {"path": "rootfs", "readonly": True}, "hostname": "runc",
                   "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
                   "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]}}


def _runtimes(scratch: Path) -> list[Runtime]:
    found = [Runtime("lab", [str(LAB_RUNTIME)], scratch / "lab-state")]
    if runcs.available():
        found.insert(0, Runtime("runc", ["runc"], scratch / "runc-state"))
    return found


def _hostname_of(pid: int) -> str:
    return process.run_function(socket.gethostname, enter=pid, enter_namespaces=["uts"])


def _status_fields(pid: int) -> dict[str, str]:
    wanted = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in lines) if k in wanted}


def _mounts_of(pid: int) -> set[tuple[str, str]]:
    """(mount point, file system type) of each mount the container sees."""
    found = set()
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        before, after = line.split(" - ")
        found.add((before.split()[4], after.split()[0]))
    return found


def _pids_inside(pid: int) -> list[str]:
    """The PIDs the container's own /proc lists: its PID view, read from outside."""
    return sorted(entry for entry in os.listdir(f"/proc/{pid}/root/proc") if entry.isdigit())


def _view(runtime: Runtime, cid: str) -> dict[str, Any]:
    pid = runtime.state(cid)["pid"]
    cgroup_mounts = {m for m in _mounts_of(pid) if m[0].startswith("/sys/fs/cgroup/")}
    return {"mounts": _mounts_of(pid) - cgroup_mounts,
            # hierarchy by hierarchy: which the lab has a group in may differ; that they are there may not
            "cgroup hierarchies": len(cgroup_mounts) > 0, "status": _status_fields(pid),
            "hostname": _hostname_of(pid), "pids": _pids_inside(pid)}


@needs_runc
def test_lifecycle_states_and_hooks_match_runc(scratch: Path) -> None:
    """creating (as hooks see it), created, running, stopped - at each step, the same answer."""
    seen: dict[str, list[str]] = {}
    created: dict[str, dict[str, str]] = {}
    for runtime in _runtimes(scratch):
        hooks_dir = scratch / f"{runtime.name}-hooks"
        hooks_dir.mkdir()
        bundle = _bundle(scratch, runtime.name, ["sleep", "60"])
        config = json.loads((bundle / "config.json").read_text())
        config["hooks"] = {kind: [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {hooks_dir}/{kind}"]}]
                           for kind in ("createRuntime", "poststart", "poststop")}
        (bundle / "config.json").write_text(json.dumps(config))
        cid = ownership.owned_name("oci")
        steps = []
        runtime("create", "--bundle", str(bundle), "--pid-file", str(scratch / f"{runtime.name}.pid"), cid)
        try:
            state = runtime.state(cid)
            pid = state["pid"]
            assert int((scratch / f"{runtime.name}.pid").read_text()) == pid
            # created is real: the process is there, in its own namespaces, not yet the program
            assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
            assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
            assert b"sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            steps.append(json.loads((hooks_dir / "createRuntime").read_text())["status"])
            steps.append(state["status"])
            created[runtime.name] = _status_fields(pid)  # who it is already, while it waits
            runtime("start", cid)
            deadline = time.monotonic() + 5
            while b"sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes() and time.monotonic() < deadline:
                time.sleep(0.02)
            steps.append(runtime.state(cid)["status"])
            steps.append(json.loads((hooks_dir / "poststart").read_text())["status"])
            assert runtime("start", cid, check=False).returncode != 0  # running: no second start
            runtime("kill", cid, "KILL")
            deadline = time.monotonic() + 5
            while runtime.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
                time.sleep(0.05)
            steps.append(runtime.state(cid)["status"])
        finally:
            runtime("delete", "--force", cid)
        steps.append(json.loads((hooks_dir / "poststop").read_text())["status"])
        assert runtime("state", cid, check=False).returncode != 0  # deleted: gone
        seen[runtime.name] = steps
    # runc 1.1 gives poststart hooks the state it read before the start: "created"
    assert seen["lab"] == ["creating", "created", "running", "created", "stopped", "stopped"]
    assert seen["lab"] == seen["runc"]
    assert created["lab"] == created["runc"]


@needs_runc
@pytest.mark.parametrize("user", [None, {"uid": 1000, "gid": 1000, "additionalGids": [5, 20]}])
def test_runc_spec_bundle_gives_the_same_container(scratch: Path, user: dict[str, Any] | None) -> None:
    """Mounts, capabilities, user, hostname and PID view, read from /proc/PID/* of each."""
    views = {}
    for runtime in _runtimes(scratch):
        bundle = _bundle(scratch, runtime.name, ["sleep", "60"], **({"user": user} if user else {}))
        cid = ownership.owned_name("oci")
        runtime("create", "--bundle", str(bundle), cid)
        try:
            runtime("start", cid)
            pid = runtime.state(cid)["pid"]
            deadline = time.monotonic() + 5
            while b"sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes() and time.monotonic() < deadline:
                time.sleep(0.02)
            views[runtime.name] = _view(runtime, cid)
        finally:
            runtime("delete", "--force", cid)
    lab, runc = views["lab"], views["runc"]
    assert ("/sys/fs/cgroup", "tmpfs") in lab["mounts"] and ("/dev/mqueue", "mqueue") in lab["mounts"]
    assert lab["pids"] == ["1"] and lab["hostname"] == "runc"
    for key in ("mounts", "cgroup hierarchies", "status", "hostname", "pids"):
        assert lab[key] == runc[key], key


def test_exec_pause_and_the_process_fields(scratch: Path) -> None:
    """exec --process with additional groups, rlimits, umask and an OOM score; ps; pause/resume."""
    lab = Runtime("lab", [str(LAB_RUNTIME)], scratch / "lab-state")
    bundle = _bundle(scratch, "lab", ["sleep", "60"], user={"uid": 0, "gid": 0, "additionalGids": [7, 9]},
                     rlimits=[{"type": "RLIMIT_NOFILE", "soft": 200, "hard": 300}], oomScoreAdj=123)
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["devices"] = [{"path": "/dev/lab-null", "type": "c", "major": 1, "minor": 3,
                                   "fileMode": 0o640, "uid": 7, "gid": 9}]
    (bundle / "config.json").write_text(json.dumps(config))
    cid = ownership.owned_name("oci")
    lab("create", "--bundle", str(bundle), cid)
    try:
        lab("start", cid)
        pid = lab.state(cid)["pid"]
        assert _status_fields(pid)["Groups"].split() == ["7", "9"]
        assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "123"
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert [line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files")] == \
            [["200", "300"]]
        spec = json.loads((bundle / "config.json").read_text())["process"]
        spec.update(args=["sh", "-c", "umask; id -G; ulimit -n; exit 4"], user={"uid": 0, "gid": 0, "umask": 0o27})
        (scratch / "process.json").write_text(json.dumps(spec))
        done = lab("exec", "--process", str(scratch / "process.json"), cid, check=False)
        assert done.returncode == 4
        assert done.stdout.split() == ["0027", "0", "200"]
        node = os.stat(f"/proc/{pid}/root/dev/lab-null")
        assert (stat.S_ISCHR(node.st_mode), stat.S_IMODE(node.st_mode), node.st_uid, node.st_gid) == \
            (True, 0o640, 7, 9) and node.st_rdev == os.makedev(1, 3)
        assert [int(p) for p in json.loads(lab("ps", "--format", "json", cid).stdout)] == [pid]
        if Path("/sys/fs/cgroup/freezer/cgroup.procs").exists():
            lab("pause", cid)
            assert lab.state(cid)["status"] == "paused"
            lab("resume", cid)
            assert lab.state(cid)["status"] == "running"
        refused = lab("delete", cid, check=False)
        assert refused.returncode == 1 and "not stopped: running" in refused.stderr
    finally:
        lab("delete", "--force", cid)
    assert not (scratch / "lab-state" / cid).exists()


def test_no_descriptor_of_the_engine_reaches_the_container(scratch: Path) -> None:
    """An engine's open directory, passed down to the runtime, is gone before the program runs."""
    lab = Runtime("lab", [str(LAB_RUNTIME)], scratch / "lab-state")
    cid = ownership.owned_name("oci")
    host_dir = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # what an escape would want (CVE-2024-21626)
    try:
        plain = subprocess.run(["ls", "/proc/self/fd"], pass_fds=[host_dir], capture_output=True, text=True)
        assert str(host_dir) in plain.stdout.split()  # it is passed down: the defense has work to do
        env = {**os.environ, "LAB_PYTHON": sys.executable}
        subprocess.run([str(LAB_RUNTIME), "--root", str(lab.root), "create", "--bundle",
                        str(_bundle(scratch, "lab", ["sleep", "60"])), cid], pass_fds=[host_dir],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, check=True, timeout=60)
    finally:
        os.close(host_dir)
    try:
        lab("start", cid)
        pid = lab.state(cid)["pid"]
        deadline = time.monotonic() + 5
        while b"sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
    finally:
        lab("delete", "--force", cid)


def test_a_bundle_joins_another_containers_network_ipc_and_uts(scratch: Path) -> None:
    """linux.namespaces[].path, as podman writes it for a pod: the second container joins the first's."""
    lab = Runtime("lab", [str(LAB_RUNTIME)], scratch / "lab-state")
    first, second = ownership.owned_name("oci"), ownership.owned_name("oci")
    lab("create", "--bundle", str(_bundle(scratch, "first", ["sleep", "60"])), first)
    try:
        pid = lab.state(first)["pid"]
        bundle = _bundle(scratch, "second", ["sleep", "60"])
        config = json.loads((bundle / "config.json").read_text())
        joined = {"network": "net", "ipc": "ipc", "uts": "uts"}
        config["linux"]["namespaces"] = [{"type": t, "path": f"/proc/{pid}/ns/{joined[t]}"}
                                         if t in joined else {"type": t} for t in ("pid", "mount", *joined)]
        (bundle / "config.json").write_text(json.dumps(config))
        lab("create", "--bundle", str(bundle), second)
        try:
            lab("start", second)
            other = lab.state(second)["pid"]
            for kind in ("net", "ipc", "uts"):
                assert os.readlink(f"/proc/{other}/ns/{kind}") == os.readlink(f"/proc/{pid}/ns/{kind}")
            for kind in ("pid", "mnt"):
                assert os.readlink(f"/proc/{other}/ns/{kind}") != os.readlink(f"/proc/{pid}/ns/{kind}")
            assert lab("exec", second, "hostname").stdout == "runc\n"
        finally:
            lab("delete", "--force", second)
    finally:
        lab("delete", "--force", first)


@pytest.mark.parametrize("change, words", [
    (lambda c: c["linux"]["namespaces"].__setitem__(0, {"type": "pid", "path": "/proc/1/ns/pid"}),
     "linux.namespaces[pid].path"),
    (lambda c: c.update(hooks={"createContainer": [{"path": "/bin/true"}]}), "createContainer hooks"),
    (lambda c: c["linux"].update(sysctl={"vm.swappiness": "10"}), "linux.sysctl.vm.swappiness"),
    (lambda c: c["mounts"].append({"destination": "/x", "type": "nfs", "source": "h:/x"}), "type 'nfs'"),
    (lambda c: c["linux"].update(intelRdt={}), "linux.intelRdt"),
    (lambda c: c["process"].update(terminal=True), "process.terminal"),
])
def test_what_is_not_supported_is_refused_by_name(scratch: Path, change: Any, words: str) -> None:
    lab = Runtime("lab", [str(LAB_RUNTIME)], scratch / "lab-state")
    bundle = _bundle(scratch, "lab", ["true"])
    config = json.loads((bundle / "config.json").read_text())
    change(config)
    (bundle / "config.json").write_text(json.dumps(config))
    log = scratch / "runtime.log"
    done = Runtime("lab", [str(LAB_RUNTIME), "--log", str(log), "--log-format", "json"], scratch / "lab-state")(
        "create", "--bundle", str(bundle), "refused", check=False)
    assert done.returncode == 1 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert json.loads(log.read_text().splitlines()[-1])["level"] == "error"
    assert not (lab.root / "refused").exists()


def test_systemd_cgroup_is_refused_in_one_sentence() -> None:
    assert oci.main(["--systemd-cgroup", "state", "x"]) == 1


def test_features_and_state_of_nothing(scratch: Path) -> None:
    lab = Runtime("lab", [str(LAB_RUNTIME)], scratch / "lab-state")
    features = json.loads(lab("features").stdout)
    assert "createRuntime" in features["hooks"] and features["linux"]["cgroup"]["systemd"] is False
    missing = lab("state", "nothing-here", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert lab("delete", "--force", "nothing-here").returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not podman.available(), reason="podman is not installed")
def test_podman_runs_execs_stops_and_removes_through_the_lab_runtime() -> None:
    """A real engine, the lab's runtime: run, exec, stop, logs, rm - and nothing left on the host."""
    with podman.Podman() as engine:
        engine.import_busybox()
        assert engine.check("run", "--rm", *engine.RUN, engine.IMAGE, "echo", "hello").stdout == "hello\n"
        engine.check("run", "-d", "--name", "web", *engine.RUN, engine.IMAGE, "sh", "-c",
                     "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done")
        assert engine.check("exec", "web", "sh", "-c", "echo $((6*7)); hostname").stdout.split()[0] == "42"
        assert engine("exec", "web", "sh", "-c", "exit 3").returncode == 3
        top = engine.check("exec", "web", "ps", "-o", "pid,comm").stdout
        assert top.split()[2:4] == ["1", "sh"]  # podman's exec joined the PID namespace
        engine.check("stop", "-t", "5", "web")
        assert engine.check("logs", "web").stdout.split() == ["started", "bye"]
        assert "Exited (0)" in engine.check("ps", "-a", "--format", "{{.Status}}").stdout
        engine.check("rm", "web")
        assert engine.check("ps", "-a", "-q").stdout == ""
        verbs = [call[0] for call in engine.calls()]
        assert {"create", "start", "exec", "kill", "delete"} <= set(verbs)
        assert not list(oci.DEFAULT_ROOT.glob("*")) or all(
            not (oci.DEFAULT_ROOT / call[-1]).exists() for call in engine.calls() if call[0] == "start")


def test_run_is_create_start_wait_and_delete(scratch: Path) -> None:
    lab = Runtime("lab", [str(LAB_RUNTIME)], scratch / "lab-state")
    done = lab("run", "--bundle", str(_bundle(scratch, "lab", ["sh", "-c", "echo ran; exit 7"])), "once",
               check=False)
    assert (done.returncode, done.stdout) == (7, "ran\n")
    assert lab("list", "--quiet").stdout.strip() == ""
