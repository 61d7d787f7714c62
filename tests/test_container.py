"""The lab's container runtime on the real kernel: each property seen from inside and from the host."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from labsupport import container
from labsupport.container import hardening, runtime, store
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.namespaces import chroot
from labsupport.process import residue


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _fetch(url: str, seconds: float = 5) -> str:
    """The server starts listening a moment after its exec: ask again until it answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def box():
    cid = container.run("busybox", ["sleep", "60"], name="labtest-box")
    try:
        yield cid
    finally:
        container.remove(cid, force=True)


def test_lifecycle_seen_from_the_host_and_from_the_cli(box):
    current = container.state(box)
    assert current["status"] == "running"
    pid = current["pid"]
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    cli = [sys.executable, "-m", "labsupport"]
    listed = subprocess.run(cli + ["ps"], capture_output=True, text=True, check=True).stdout
    assert "labtest-box" in listed and "running" in listed
    inside = subprocess.run(cli + ["exec", "labtest-box", "ps"], capture_output=True, text=True)
    assert inside.returncode == 0 and "sleep 60" in inside.stdout
    assert len([line for line in inside.stdout.splitlines()[1:] if line.strip()]) == 2  # sleep + ps
    subprocess.run(cli + ["stop", "-t", "1", "labtest-box"], check=True, capture_output=True)
    assert container.state(box)["status"] == "exited"
    assert not store.alive(pid)
    assert current["cgroup"] not in str(residue.snapshot())


def test_stop_sends_sigterm_first():
    cid = container.run("busybox", ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; "
                                    "while true; do sleep 0.1; done"], name="labtest-term")
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert container.stop(cid, grace=10)["exit_code"] == 0
        assert time.monotonic() - started < 5
        assert "got TERM" in container.logs(cid)
    finally:
        container.remove(cid, force=True)


def test_the_chroot_escape_stays_inside(box):
    marker = chroot.write_host_marker()
    try:
        assert chroot.try_escape(store.read_state(store.find(box))["root"], marker).escaped
        outcome = container.runtime.try_escape(box, marker)
        assert not outcome.escaped
        assert "proc" in outcome.root_after and "marker.txt" not in outcome.root_after
    finally:
        chroot.remove_scratch(marker.parent)


def test_capabilities_are_the_default_set_and_no_new_privs(box):
    pid = container.state(box)["pid"]
    host_view = _status(pid)
    expected = f"{hardening.capability_mask(container.spec.DEFAULT_CAPABILITIES):016x}"
    assert host_view["CapEff"] == host_view["CapBnd"] == expected
    assert host_view["CapAmb"] == "0" * 16
    assert host_view["NoNewPrivs"] == "1"
    inside = container.exec_in(box, ["grep", "-E", "CapBnd|NoNewPrivs", "/proc/self/status"]).stdout
    assert expected in inside and "NoNewPrivs:\t1" in inside
    denied = container.exec_in(box, ["mount", "-t", "tmpfs", "x", "/mnt"])
    assert denied.returncode != 0  # no CAP_SYS_ADMIN


def test_proc_sys_is_read_only_and_paths_are_masked(box):
    result = container.exec_in(box, ["sh", "-c", "echo 1 > /proc/sys/kernel/printk_ratelimit"])
    assert result.returncode != 0 and "Read-only" in result.stderr
    assert container.exec_in(box, ["cat", "/proc/kcore"]).stdout == ""
    assert container.exec_in(box, ["ls", "/sys/firmware"]).stdout.strip() == ""
    assert sorted(container.exec_in(box, ["ls", "/dev"]).stdout.split()) == sorted(
        ["full", "null", "random", "urandom", "tty", "zero", "pts", "shm", "ptmx", "fd",
         "stdin", "stdout", "stderr", "mqueue"])
    # The host's /proc/sys is still writable: the mount stayed inside.
    assert os.access("/proc/sys/kernel/printk_ratelimit", os.W_OK)


def test_web_server_on_a_published_port_with_a_memory_limit():
    cid = container.run("busybox", ["httpd", "-f", "-p", "80", "-h", "/etc"], name="labtest-web",
                        publish=["127.0.0.1:18480:80"], memory="48M", pids=20)
    try:
        page = _fetch("http://127.0.0.1:18480/hosts")
        assert "labtest-web" in page and "10.89.0." in page
        group = container.state(cid)["cgroup"]
        from labsupport import cgroups
        # cgroup v1 names the limit memory.limit_in_bytes, v2 memory.max (a pure-v2 host).
        limits = [d / name for d in cgroups.open_group(group).directories
                  for name in ("memory.limit_in_bytes", "memory.max")]
        assert str(48 * 1024 * 1024) in " ".join(f.read_text() for f in limits if f.exists())
        with pytest.raises(LabError, match="in use|already published"):
            container.run("busybox", ["sleep", "5"], publish=["127.0.0.1:18480:80"])
    finally:
        container.remove(cid, force=True)
    with pytest.raises(OSError):
        urllib.request.urlopen("http://127.0.0.1:18480/hosts", timeout=2)


def test_name_in_use_and_unknown_image(box):
    with pytest.raises(LabError, match="in use"):
        container.run("busybox", ["true"], name="labtest-box")
    with pytest.raises(LabError, match="no image 'nosuchimage:1'"):
        container.run("nosuchimage:1", ["true"])
    assert [c["name"] for c in container.list_containers()].count("labtest-box") == 1


def test_port_in_use_by_someone_else():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(LabError):
            container.run("busybox", ["sleep", "5"], publish=[f"127.0.0.1:{port}:80"])
        assert not [c for c in container.list_containers() if c.get("publish")]
    finally:
        taken.close()


def test_clean_removes_a_container_whose_kernel_died():
    script = ("import labsupport.container as c, time; "
              "print(c.state(c.run('busybox', ['sleep', '300'], name='labtest-orphan'))['pid'], flush=True); "
              "time.sleep(300)")
    kernel = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(kernel.stdout.readline())
    os.kill(kernel.pid, signal.SIGKILL)
    kernel.wait()
    time.sleep(0.3)
    assert Path(f"/proc/{pid}").exists()  # the container outlived its notebook
    assert "labtest-orphan" in runtime.clean_all()
    assert not store.alive(pid)
    assert not store.CONTAINERS_DIR.exists() or not list(store.CONTAINERS_DIR.iterdir())


def test_the_default_seccomp_filter_denies_new_namespaces_and_can_be_turned_off():
    """Root inside keeps no CAP_SYS_ADMIN, yet a user namespace needs none: only seccomp stops it."""
    unshare = ["unshare", "-U", "true"]
    filtered = container.run("busybox", ["sleep", "60"], name="labtest-seccomp", network="none")
    open_ = container.run("busybox", ["sleep", "60"], name="labtest-unconfined", network="none",
                          seccomp=False)
    try:
        pid = container.state(filtered)["pid"]
        assert _status(pid)["Seccomp"].strip() == "2" and _status(pid)["NoNewPrivs"].strip() == "1"
        assert _status(container.state(open_)["pid"])["Seccomp"].strip() == "0"
        denied = container.exec_in(filtered, unshare)
        assert denied.returncode != 0 and "Operation not permitted" in denied.stderr
        assert container.exec_in(filtered, ["grep", "Seccomp:", "/proc/self/status"]).stdout.split()[-1] == "2"
        assert container.exec_in(open_, unshare).returncode == 0
    finally:
        container.remove(filtered, force=True)
        container.remove(open_, force=True)


def test_a_disk_bandwidth_cap_lands_in_the_containers_cgroup():
    """Docker's --device-write-bps: the throttle, as the host's cgroup files show it (its
    effect on real writes is measured in tests/test_cgroups.py)."""
    from labsupport import cgroups
    from labsupport.cgroups.loopdev import LoopDevice

    with LoopDevice("16M") as disk:
        number = f"{os.major(disk.path.stat().st_rdev)}:{os.minor(disk.path.stat().st_rdev)}"
        box = container.run("busybox", ["sleep", "60"], name="labtest-io", network="none",
                            device_write_bps=[f"{disk.path}:2M"], device_read_bps=[f"{disk.path}:8M"])
        try:
            group = cgroups.open_group(container.state(box)["cgroup"])
            rules = " ".join((d / name).read_text() for d in group.directories
                             for name in ("blkio.throttle.write_bps_device", "blkio.throttle.read_bps_device",
                                          "io.max") if (d / name).exists())
            v1 = f"{number} {2 * 1024 * 1024}" in rules and f"{number} {8 * 1024 * 1024}" in rules
            v2 = f"{number} rbps={8 * 1024 * 1024} wbps={2 * 1024 * 1024}" in rules
            assert v1 or v2, rules
            assert container.inspect(box)["config"]["linux"]["resources"]["blockIO"]["throttleWriteBpsDevice"] == [
                {"major": os.major(disk.path.stat().st_rdev), "minor": os.minor(disk.path.stat().st_rdev),
                 "rate": 2 * 1024 * 1024}]
        finally:
            container.remove(box, force=True)
    with pytest.raises(LabError, match="DEVICE:RATE"):
        container.run("busybox", ["true"], device_write_bps=["2M"])


def test_a_bundle_with_a_user_namespace_runs_as_root_inside_and_an_unprivileged_uid_outside():
    """runc's rootless shape: uid 0 inside is uid 100000 on the host (``--userns-remap``)."""
    import json

    from labsupport.container import runc

    bundle = runc.new_bundle()
    try:
        config = json.loads((bundle / "config.json").read_text())
        config["process"].update(terminal=False, args=["sleep", "60"])
        config["linux"]["namespaces"].append({"type": "user"})
        for key in ("uidMappings", "gidMappings"):
            config["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        (bundle / "config.json").write_text(json.dumps(config))
        box = container.run_bundle(bundle, name="labtest-userns")
        try:
            pid = container.state(box)["pid"]
            assert _status(pid)["Uid"].split()[0] == "100000"
            assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
            inside = container.exec_in(box, ["sh", "-c", "id -u; cat /proc/self/uid_map; ps"])
            assert inside.stdout.split()[:4] == ["0", "0", "100000", "65536"], inside
            assert "sleep 60" in inside.stdout
        finally:
            container.remove(box, force=True)
    finally:
        runc.remove_bundle(bundle)


def test_a_bundles_bind_mount_shows_the_host_directory_read_only_and_a_link_out_is_refused():
    import json
    import shutil

    from labsupport import ownership
    from labsupport.container import runc

    bundle, data = runc.new_bundle(), ownership.temp_dir("bindsrc")
    try:
        (data / "hello.txt").write_text("hi from the host\n")
        config = json.loads((bundle / "config.json").read_text())
        config["process"].update(terminal=False, args=["sh", "-c", "cat /data/hello.txt; touch /data/x"])
        config["mounts"].append({"destination": "/data", "type": "bind", "source": str(data),
                                 "options": ["rbind", "ro"]})
        (bundle / "config.json").write_text(json.dumps(config))
        box = container.run_bundle(bundle, name="labtest-bind")
        container.wait(box, 10)
        log = container.logs(box)
        container.remove(box)
        assert "hi from the host" in log and "Read-only file system" in log
        assert not (data / "x").exists()
        # A root whose /data is a link to the host's /etc: the mount would land on the host.
        (bundle / "rootfs" / "data").rmdir()  # the mount point the first run made
        (bundle / "rootfs" / "data").symlink_to("/etc")
        with pytest.raises(LabError, match="leads out of the root"):
            container.run_bundle(bundle, name="labtest-bindout")
        assert not any(m.mountpoint == "/etc" for m in hoststate.mounts())
    finally:
        runc.remove_bundle(bundle)
        shutil.rmtree(data, ignore_errors=True)


def test_containers_started_and_ended_at_once_get_distinct_addresses_and_leave_no_bridge():
    """Shims plug in and unplug one at a time: no address twice, and the last one out
    takes the bridge down."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        boxes = list(pool.map(lambda n: container.run("busybox", ["sleep", "1"], name=f"labtest-par{n}"),
                              range(6)))
    try:
        addresses = [container.state(b)["address"] for b in boxes]
        assert len(set(addresses)) == 6, addresses
        for box in boxes:
            container.wait(box, 10)
        assert "labctr0" not in hoststate.links()
    finally:
        for box in boxes:
            container.remove(box, force=True)


def test_removing_a_container_whose_shim_was_killed_undoes_its_host_side():
    """The shim undoes the network and the cgroup when the container ends - unless it is
    killed first; then rm does it, and the residue check proves nothing stays."""
    box = container.run("busybox", ["sleep", "60"], name="labtest-orphaned")
    current = container.state(box)
    assert current["netns"] in os.listdir("/run/netns")
    os.kill(current["shim_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while store.alive(current["pid"]) and time.monotonic() < deadline:
        time.sleep(0.02)  # the container dies with its shim (PDEATHSIG)
    assert container.state(box)["status"] == "exited"
    container.remove(box)
    assert current["netns"] not in os.listdir("/run/netns")
