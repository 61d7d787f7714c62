"""The container commands from a terminal: the same containers the notebooks see."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labsupport import container, ownership
from labsupport.namespaces import rootfs

CLI = [sys.executable, "-m", "labsupport"]


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=60)


def test_run_detached_then_ps_logs_exec_inspect_stop_rm():
    started = lab("run", "-d", "--name", "labcli-web", "--memory", "32M", "--pids", "30",
                  "busybox", "sh", "-c", "echo from-the-box; exec sleep 60")
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    try:
        assert container.state("labcli-web")["id"] == cid  # the library sees the CLI's container
        assert "labcli-web" in lab("ps").stdout
        assert "from-the-box" in lab("logs", "labcli-web").stdout
        inside = lab("exec", "labcli-web", "hostname")
        assert inside.returncode == 0 and inside.stdout.strip() == "labcli-web"
        info = json.loads(lab("inspect", cid[:6]).stdout)
        assert info["config"]["linux"]["resources"]["memory"]["limit"] == 32 * 1024 * 1024
        assert info["state"]["status"] == "running"
        refused = lab("rm", "labcli-web")
        assert refused.returncode == 2 and "stop it first" in refused.stderr
        assert lab("stop", "-t", "1", "labcli-web").returncode == 0
        assert "exited" in lab("ps").stdout
        assert lab("rm", "labcli-web").returncode == 0
        assert "labcli-web" not in lab("ps").stdout
    finally:
        if "labcli-web" in {c["name"] for c in container.list_containers()}:
            container.remove("labcli-web", force=True)


def test_mistakes_are_one_line_and_exit_code_2():
    for args, words in ((("exec", "labcli-none", "ls"), "no container"),
                        (("run", "no-such-image:9"), "no image"),
                        (("run", "-p", "80", "busybox"), "port mapping"),
                        (("run", "--cpus", "-1", "busybox"), "more than 0")):
        result = lab(*args)
        assert result.returncode == 2 and words in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_foreground_run_returns_the_exit_code_and_rm_removes():
    result = lab("run", "--rm", "--name", "labcli-fg", "busybox", "sh", "-c", "echo hi; exit 3")
    assert result.returncode == 3 and result.stdout == "hi\n"
    assert "labcli-fg" not in {c["name"] for c in container.list_containers()}


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (runc spec writes the bundle)")
def test_run_a_bundle_written_by_runc_spec():
    bundle = ownership.temp_dir("bundle")
    try:
        subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
        shutil.copytree(rootfs.busybox_root(), bundle / "rootfs", symlinks=True)
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["sh", "-c", "hostname; grep CapBnd /proc/self/status; touch /x"]
        (bundle / "config.json").write_text(json.dumps(config))
        result = lab("run", "--rm", "--bundle", str(bundle))
        lines = result.stdout.splitlines()
        assert lines[0] == "runc"                         # config.json's hostname
        assert lines[1].endswith("0000000020000420")  # KILL, NET_BIND_SERVICE, AUDIT_WRITE only
        assert "Read-only file system" in result.stdout   # root.readonly true
        assert result.returncode == 1
    finally:
        shutil.rmtree(bundle)


def test_userns_remap_makes_root_inside_an_unprivileged_uid_outside():
    started = lab("run", "-d", "--network", "none", "--userns-remap", "--name", "labtest-remap",
                   "busybox", "sleep", "60")
    assert started.returncode == 0, started.stderr
    box = started.stdout.strip()
    try:
        pid = container.state(box)["pid"]
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
        assert status["Uid"].split()[0] == str(100000)
        inside = lab("exec", box, "sh", "-c", "id -u; stat -c %U /; echo ok > /tmp/f && cat /tmp/f")
        assert inside.stdout.split() == ["0", "nobody", "ok"], inside.stdout + inside.stderr
    finally:
        lab("rm", "-f", box)
