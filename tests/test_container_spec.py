"""config.json: what runc writes parses; every wrong input is refused in one sentence, by name."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess

import pytest

from labsupport import ownership
from labsupport.container import spec
from labsupport.kernel.errors import LabError

#: What `runc spec` writes, trimmed to the fields that matter here (the test below uses the real one).
BASE = {
    "ociVersion": "1.0.2-dev",
    "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
                "env": ["PATH=/bin"], "cwd": "/",
                "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                 "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": True},
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
               {"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "ro"]}],
    "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}],
                            "memory": {"limit": 33554432}, "cpu": {"quota": 50000, "period": 100000},
                            "pids": {"limit": 20}},
              "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}],
              "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
}


def _with(change) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def test_a_valid_config_maps_onto_the_lab_names():
    parsed = spec.parse(BASE)
    assert parsed.namespaces == ["pid", "net", "mnt"]
    assert parsed.resources.memory == 32 * 1024 * 1024 and parsed.resources.pids == 20
    assert parsed.resources.cpu_quota == 50000 and parsed.root_readonly
    assert [m.destination for m in parsed.mounts] == ["/data"]  # /proc, /dev/mqueue are the runtime's
    assert parsed.capabilities == ("CAP_KILL",)
    assert spec.parse(parsed.to_json()).resources == parsed.resources  # round trip


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_what_runc_spec_writes_parses_once_terminal_is_false():
    bundle = ownership.temp_dir("spec")
    try:
        subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
        data = json.loads((bundle / "config.json").read_text())
        with pytest.raises(LabError, match="terminal"):
            spec.parse(data)
        data["process"]["terminal"] = False
        assert spec.parse(data).args == ["sh"]
    finally:
        shutil.rmtree(bundle)


@pytest.mark.parametrize("change, words", [
    (lambda d: d["process"].update(args="sh"), "process.args must be a list"),
    (lambda d: d["process"]["user"].update(uid="0"), "process.user.uid must be a whole number"),
    (lambda d: d["process"].update(noNewPrivileges="yes"), "noNewPrivileges must be true or false"),
    (lambda d: d["linux"]["namespaces"].append({"type": "time"}), "unknown namespace 'time'"),
    (lambda d: d["linux"]["resources"]["memory"].update(limit=-5), "cannot be negative"),
    (lambda d: d["linux"]["resources"]["pids"].update(limit=-2), "pids.limit is -2"),
    (lambda d: d["linux"].update(namespaces="pid"), "linux.namespaces must be a list"),
    (lambda d: d.update(mounts=[{"destination": "/x", "type": "nfs", "source": "h:/x"}]), "type 'nfs'"),
    (lambda d: d["process"].update(terminal=True), "terminal"),
    (lambda d: d["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ERRNO"}), "allow-list"),
    (lambda d: d["linux"].update(seccomp={"syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO",
                                                        "args": [{"index": 0}]}]}), "without args"),
    (lambda d: d["linux"].update(seccomp={"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]}),
     "names read, which this lab cannot deny"),
    (lambda d: d["linux"].update(seccomp={"syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO",
                                                        "errnoRet": 0}]}), "would not refuse"),
])
def test_wrong_inputs_are_one_sentence(change, words):
    with pytest.raises(LabError) as caught:
        spec.parse(_with(change))
    message = str(caught.value)
    assert words in message
    assert message.count(". ") == 0 and message.endswith(".") and "\n" not in message


def test_unsupported_fields_are_named_not_ignored():
    def add(d):
        d["linux"]["intelRdt"] = {"closID": "x"}
        d["process"]["apparmorProfile"] = "x"
    with pytest.raises(LabError) as caught:
        spec.parse(_with(add))
    message = str(caught.value)
    for field in ("linux.intelRdt", "process.apparmorProfile"):
        assert field in message
    assert "run under runc" in message


def test_minus_one_means_no_limit_and_mappings_need_a_user_namespace():
    assert spec.parse(_with(lambda d: d["linux"]["resources"]["memory"].update(limit=-1))).resources.memory is None
    with pytest.raises(LabError, match="no user namespace"):
        spec.parse(_with(lambda d: d["linux"].update(
            uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}])))


def test_missing_or_broken_files():
    bundle = ownership.temp_dir("spec")
    try:
        with pytest.raises(LabError, match="no config.json"):
            spec.load(bundle)
        (bundle / "config.json").write_text("{not json")
        with pytest.raises(LabError, match="not valid JSON"):
            spec.load(bundle)
    finally:
        shutil.rmtree(bundle)


def test_a_seccomp_deny_list_is_read_and_written_back():
    rules = {"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"names": ["unshare", "mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    parsed = spec.parse(_with(lambda d: d["linux"].update(seccomp=rules)))
    assert parsed.seccomp is not None
    assert parsed.seccomp.denied == ("unshare", "mount") and parsed.seccomp.errno == 13
    assert spec.parse(parsed.to_json()).seccomp == parsed.seccomp
