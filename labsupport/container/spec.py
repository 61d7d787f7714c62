"""The part of the OCI runtime spec (config.json) this lab's runtime understands.

Why a strict subset: a field silently ignored is a promise silently broken -
a learner who writes ``linux.sysctl`` and sees no error would believe the
setting took effect. So every field is either used, accepted on purpose (and
listed in ``ACCEPTED_UNUSED`` with the reason), or named in a refusal.
What ``runc spec`` writes by default parses once ``process.terminal`` is
false (this runtime has no terminal: output goes to the container's log).

Accepted on purpose but not acted on: ``process.consoleSize`` (needs a
terminal) and ``linux.cgroupsPath`` (the lab always puts a container's group
at <hierarchy>/lab/lab<id>: a bundle's path could name a group the lab does not
own). ``linux.seccomp`` is taken as a deny-list (see
labsupport.container.seccomp); an allow-list is refused. Acted on since the
lab's runtime took runc's command line (labsupport.container.oci): every
mount type a bundle from ``runc spec`` or podman holds, ``process.rlimits``,
``process.user`` with additionalGids and umask, ``process.oomScoreAdj``,
namespaced ``linux.sysctl`` keys, ``hooks`` (prestart, createRuntime,
poststart, poststop) and ``linux.namespaces[].path`` for the network, IPC,
UTS and cgroup namespaces. Refused by name: apparmor/selinux, blockIO weights
and IOPS caps (its bandwidth caps are used), the other hooks, joining a PID,
mount or user namespace, sysctls that are the whole host's.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labsupport.cgroups.devices import DevicePolicy, DeviceRule, parse_rule
from labsupport.container import seccomp as seccomp_profiles
from labsupport.kernel.errors import LabError

#: The namespace names of config.json, and the /proc/PID/ns names the lab's process module uses.
NAMESPACES = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
              "user": "user", "cgroup": "cgroup"}

_KNOWN_TOP = {"ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations", "hooks"}
_KNOWN_PROCESS = {"args", "env", "cwd", "user", "capabilities", "noNewPrivileges", "terminal",
                  "rlimits", "consoleSize", "oomScoreAdj"}
_KNOWN_LINUX = {"namespaces", "resources", "maskedPaths", "readonlyPaths", "uidMappings",
                "gidMappings", "cgroupsPath", "seccomp", "sysctl", "devices"}
#: The hooks the lab runs (labsupport.container.oci), each by the verb the spec gives it to.
HOOKS = ("prestart", "createRuntime", "poststart", "poststop")
#: The sysctl prefixes that belong to a container's own namespaces (IPC, network, UTS): any
#: other key would change the whole host, so it is refused, as runc refuses it.
NAMESPACED_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                      "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
                      "fs.mqueue.", "net.", "kernel.domainname", "kernel.hostname")
_KNOWN_RESOURCES = {"memory", "cpu", "pids", "blockIO", "devices"}

#: Docker's default capability set, which the lab's `run` gives an image's container. (A bundle
#: brings its own list: `runc spec` writes only AUDIT_WRITE, KILL and NET_BIND_SERVICE.)
DEFAULT_CAPABILITIES = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
DEFAULT_MASKED = ("/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                  "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                  "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
DEFAULT_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

#: The devices every container may use, after runc's defaults (which Docker keeps): any node may
#: be *made* (m), but only these opened - null, zero, full, random, urandom, tty, console, ptmx,
#: the pseudo-terminals and tun. Everything else (a disk, the loop controller, /dev/mem) is denied.
DEFAULT_DEVICES = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
                   "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm")


def default_devices() -> DevicePolicy:
    """Deny every device, then allow ``DEFAULT_DEVICES``: the device cgroup of a Docker container."""
    policy = DevicePolicy(default_allow=False)
    for rule in DEFAULT_DEVICES:
        policy.allow(parse_rule(rule))
    return policy


@dataclass
class Resources:
    memory: int | None = None          # bytes
    cpu_quota: int | None = None       # microseconds per period
    cpu_period: int | None = None
    cpu_shares: int | None = None
    pids: int | None = None
    #: "MAJ:MIN" -> (read, write) bytes per second; None leaves a direction free.
    io: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    #: Which device nodes the container may open (and make): Docker's list unless asked otherwise.
    devices: DevicePolicy = field(default_factory=default_devices)


@dataclass(frozen=True)
class Device:
    """A node of linux.devices, made in the container's /dev (``docker run --device``)."""

    path: str
    kind: str          # c (or u), b, p
    major: int = 0
    minor: int = 0
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass
class Mount:
    destination: str
    type: str
    source: str
    options: list[str] = field(default_factory=list)


@dataclass
class Spec:
    """A validated config.json: only what the runtime acts on."""

    args: list[str]
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    no_new_privileges: bool = True
    root: str = "rootfs"
    root_readonly: bool = False
    hostname: str | None = None
    mounts: list[Mount] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=lambda: ["pid", "net", "ipc", "uts", "mnt"])
    resources: Resources = field(default_factory=Resources)
    masked_paths: tuple[str, ...] = DEFAULT_MASKED
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY
    uid_map: str | None = None
    gid_map: str | None = None
    seccomp: seccomp_profiles.Profile | None = None
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None
    #: (RLIMIT_NAME, soft, hard), set before exec.
    rlimits: tuple[tuple[str, int, int], ...] = ()
    oom_score_adj: int | None = None
    sysctl: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: The bundle's entries for the file systems the runtime mounts after pivot_root (/proc,
    #: /sys, /dev ... and any proc, sysfs, devpts, mqueue or cgroup mount), by destination.
    #: Empty: the lab's own defaults (/proc, /sys, /dev with pts and shm, /dev/mqueue).
    system_mounts: dict[str, Mount] = field(default_factory=dict)
    #: Existing namespaces to join instead of making new ones: /proc/PID/ns kind -> file
    #: (linux.namespaces[].path: podman's pods share a network, IPC and UTS namespace so).
    join: dict[str, str] = field(default_factory=dict)
    devices: tuple[Device, ...] = ()

    def wants_mount(self, destination: str) -> bool:
        """Is this system mount made: asked for by the bundle, or by default (all but the cgroups)?"""
        if not self.system_mounts:
            return destination != "/sys/fs/cgroup"
        return destination in self.system_mounts

    def to_json(self) -> dict[str, Any]:
        """The config.json this spec stands for (written into the container's state dir)."""
        res = self.resources
        resources: dict[str, Any] = {}
        if res.memory is not None:
            resources["memory"] = {"limit": res.memory}
        cpu = {k: v for k, v in (("quota", res.cpu_quota), ("period", res.cpu_period),
                                 ("shares", res.cpu_shares)) if v is not None}
        if cpu:
            resources["cpu"] = cpu
        if res.pids is not None:
            resources["pids"] = {"limit": res.pids}
        throttles = {key: [{"major": int(device.split(":")[0]), "minor": int(device.split(":")[1]),
                            "rate": rates[side]} for device, rates in res.io.items() if rates[side]]
                     for key, side in _THROTTLES.items()}
        if any(throttles.values()):
            resources["blockIO"] = {key: rules for key, rules in throttles.items() if rules}
        resources["devices"] = _devices_to_json(res.devices)
        linux: dict[str, Any] = {
            "namespaces": [{"type": t} for t, ours in NAMESPACES.items() if ours in self.namespaces]
            + [{"type": t, "path": self.join[ours]} for t, ours in NAMESPACES.items() if ours in self.join],
            "resources": resources, "maskedPaths": list(self.masked_paths),
            "readonlyPaths": list(self.readonly_paths)}
        if self.seccomp is not None:
            linux["seccomp"] = seccomp_profiles.to_oci(self.seccomp)
        for key, text in (("uidMappings", self.uid_map), ("gidMappings", self.gid_map)):
            if text:
                inside, outside, size = (int(x) for x in text.split())
                linux[key] = [{"containerID": inside, "hostID": outside, "size": size}]
        out: dict[str, Any] = {
            "ociVersion": "1.0.2",
            "process": {"terminal": False, "user": self._user_json(),
                        "args": self.args, "env": self.env, "cwd": self.cwd,
                        "capabilities": {k: list(self.capabilities) for k in
                                         ("bounding", "effective", "permitted")},
                        "noNewPrivileges": self.no_new_privileges},
            "root": {"path": self.root, "readonly": self.root_readonly},
            "mounts": [{"destination": m.destination, "type": m.type, "source": m.source,
                        "options": m.options} for m in [*self.system_mounts.values(), *self.mounts]],
            "linux": linux}
        if self.rlimits:
            out["process"]["rlimits"] = [{"type": t, "soft": soft, "hard": hard}
                                         for t, soft, hard in self.rlimits]
        if self.oom_score_adj is not None:
            out["process"]["oomScoreAdj"] = self.oom_score_adj
        if self.sysctl:
            linux["sysctl"] = dict(self.sysctl)
        if self.devices:
            linux["devices"] = [{"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor,
                                 "fileMode": d.mode, "uid": d.uid, "gid": d.gid} for d in self.devices]
        if self.hooks:
            out["hooks"] = self.hooks
        if self.hostname:
            out["hostname"] = self.hostname
        if self.seccomp is not None and self.seccomp.no_new_namespaces:
            out["annotations"] = {seccomp_profiles.NO_NEW_NAMESPACES: "true"}
        return out


    def _user_json(self) -> dict[str, Any]:
        user: dict[str, Any] = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            user["additionalGids"] = list(self.additional_gids)
        if self.umask is not None:
            user["umask"] = self.umask
        return user


def accepts(field: str) -> bool:
    """Does ``parse`` take this dotted config.json field (``linux.resources.memory``, ``mounts``)?

    The plan names the field behind each of its steps; this is how a test holds
    those names to what the parser really reads.
    """
    parts = field.replace("[", ".").split(".")
    known: dict[str, set[str]] = {"": _KNOWN_TOP, "process": _KNOWN_PROCESS, "linux": _KNOWN_LINUX,
                                  "root": {"path", "readonly"}, "linux.resources": _KNOWN_RESOURCES}
    path = ""
    for part in parts[:3]:
        if path not in known:
            return True  # below what the parser checks by name (e.g. linux.resources.memory.limit)
        if part not in known[path]:
            return False
        path = f"{path}.{part}" if path else part
    return True


def _type(value: Any, kind: type | tuple[type, ...], where: str, words: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LabError(f"config.json field {where} must be {words}, not {type(value).__name__}.")
    return value


def _unknown(data: dict[str, Any], known: set[str], prefix: str) -> list[str]:
    return [f"{prefix}{key}" for key in data if key not in known]


def _limit(value: Any, where: str) -> int | None:
    if value is None:
        return None
    _type(value, int, where, "a whole number")
    if value == -1 and where.endswith(("memory.limit", "pids.limit", "cpu.quota")):
        return None  # the spec's own word for "no limit"
    if value < 0:
        raise LabError(f"config.json field {where} is {value}: a limit cannot be negative.")
    return value


def _devices_to_json(policy: DevicePolicy) -> list[dict[str, Any]]:
    """The policy as linux.resources.devices: the default first, then each exception."""
    rules: list[dict[str, Any]] = [{"allow": policy.default_allow, "access": "rwm"}]
    for rule in policy.exceptions:
        entry: dict[str, Any] = {"allow": not policy.default_allow, "type": rule.kind, "access": rule.access}
        entry.update({k: v for k, v in (("major", rule.major), ("minor", rule.minor)) if v is not None})
        rules.append(entry)
    return rules


def _devices(entries: Any) -> DevicePolicy:
    """linux.resources.devices, applied in order on a deny-all start, then runc's own defaults
    (as runc does: a bundle's rules cannot take /dev/null away from a container)."""
    where = "linux.resources.devices"
    policy = DevicePolicy(default_allow=False)
    for entry in _type(entries, list, where, "a list"):
        _type(entry, dict, where, "a list of objects")
        allow = _type(entry.get("allow"), bool, f"{where}[].allow", "true or false")
        access = _type(entry.get("access", "rwm"), str, f"{where}[].access", "letters from r, w and m")
        kind = _type(entry.get("type", "a"), str, f"{where}[].type", "'a', 'c' or 'b'")
        if kind not in ("a", "c", "b") or set(access) - set("rwm"):
            raise LabError(f"config.json {where} has a rule of type {kind!r} with access {access!r}: "
                           "use type a, c or b and access letters from r, w and m.")
        numbers = [entry.get(k) for k in ("major", "minor")]
        for n in numbers:
            if n is not None:
                _type(n, int, f"{where}[].major/minor", "a whole number")
        rule = None if kind == "a" else DeviceRule(kind, numbers[0], numbers[1], access)
        (policy.allow if allow else policy.deny)(rule)
    for text in DEFAULT_DEVICES:
        policy.allow(parse_rule(text))
    return policy


def _resources(data: dict[str, Any], unsupported: list[str]) -> Resources:
    _type(data, dict, "linux.resources", "an object")
    unsupported += _unknown(data, _KNOWN_RESOURCES, "linux.resources.")
    memory = _type(data.get("memory", {}), dict, "linux.resources.memory", "an object")
    cpu = _type(data.get("cpu", {}), dict, "linux.resources.cpu", "an object")
    pids = _type(data.get("pids", {}), dict, "linux.resources.pids", "an object")
    unsupported += [f"linux.resources.memory.{k}" for k in memory if k != "limit"]
    unsupported += [f"linux.resources.cpu.{k}" for k in cpu if k not in ("quota", "period", "shares")]
    block = _type(data.get("blockIO", {}), dict, "linux.resources.blockIO", "an object")
    unsupported += [f"linux.resources.blockIO.{k}" for k in block if k not in _THROTTLES]
    return Resources(_limit(memory.get("limit"), "linux.resources.memory.limit"),
                     _limit(cpu.get("quota"), "linux.resources.cpu.quota"),
                     _limit(cpu.get("period"), "linux.resources.cpu.period"),
                     _limit(cpu.get("shares"), "linux.resources.cpu.shares"),
                     _limit(pids.get("limit"), "linux.resources.pids.limit"),
                     _throttles(block), _devices(data.get("devices", [])))


#: blockIO's bandwidth caps, and which side of Resources.io each fills.
_THROTTLES = {"throttleReadBpsDevice": 0, "throttleWriteBpsDevice": 1}


def _throttles(block: dict[str, Any]) -> dict[str, tuple[int | None, int | None]]:
    """``blockIO.throttle{Read,Write}BpsDevice`` -> {"MAJ:MIN": (read, write)}."""
    io: dict[str, list[int | None]] = {}
    for key, side in _THROTTLES.items():
        where = f"linux.resources.blockIO.{key}"
        for entry in _type(block.get(key, []), list, where, "a list"):
            _type(entry, dict, where, "a list of objects")
            major, minor = (_type(entry.get(k), int, f"{where}[].{k}", "a whole number")
                            for k in ("major", "minor"))
            io.setdefault(f"{major}:{minor}", [None, None])[side] = _limit(entry.get("rate"), f"{where}[].rate")
    return {device: (rates[0], rates[1]) for device, rates in io.items()}


def _rlimits(entries: Any) -> tuple[tuple[str, int, int], ...]:
    import resource
    where = "process.rlimits"
    found = []
    for entry in _type(entries, list, where, "a list"):
        _type(entry, dict, where, "a list of objects")
        kind = _type(entry.get("type"), str, f"{where}[].type", "a name such as RLIMIT_NOFILE")
        if not kind.startswith("RLIMIT_") or not hasattr(resource, kind):
            raise LabError(f"config.json {where} names {kind!r}, which is no resource limit: "
                           "use names such as RLIMIT_NOFILE (getrlimit(2) lists them).")
        soft, hard = (_type(entry.get(k), int, f"{where}[{kind}].{k}", "a whole number")
                      for k in ("soft", "hard"))
        if soft > hard:
            raise LabError(f"config.json {where} {kind} has soft {soft} above hard {hard}.")
        found.append((kind, soft, hard))
    return tuple(found)


def _sysctl(data: Any) -> dict[str, str]:
    _type(data, dict, "linux.sysctl", "an object")
    for key, value in data.items():
        _type(value, str, f"linux.sysctl.{key}", "a string")
        if not key.startswith(NAMESPACED_SYSCTLS) or "/" in key or ".." in key:
            raise LabError(f"config.json linux.sysctl.{key} would change the whole host, not only "
                           "the container (it belongs to no namespace of it): remove it.")
    return dict(data)


def _device_nodes(entries: Any) -> tuple[Device, ...]:
    where = "linux.devices"
    nodes = []
    for entry in _type(entries, list, where, "a list"):
        _type(entry, dict, where, "a list of objects")
        path = _type(entry.get("path"), str, f"{where}[].path", "a path")
        if not path.startswith("/dev/") or ".." in path.split("/"):
            raise LabError(f"config.json {where} path {path!r}: this lab runtime makes device nodes "
                           "only under /dev.")
        kind = {"u": "c"}.get(entry.get("type"), entry.get("type"))
        if kind not in ("c", "b", "p"):
            raise LabError(f"config.json {where} {path} has type {entry.get('type')!r}: use c, u, b or p.")
        numbers = {k: _type(entry.get(k, 0), int, f"{where}[{path}].{k}", "a whole number")
                   for k in ("major", "minor", "uid", "gid")}
        mode = _type(entry.get("fileMode", 0o666), int, f"{where}[{path}].fileMode", "a whole number")
        nodes.append(Device(path, kind, numbers["major"], numbers["minor"], mode & 0o7777,
                            numbers["uid"], numbers["gid"]))
    return tuple(nodes)


def _hooks(data: Any) -> dict[str, list[dict[str, Any]]]:
    _type(data, dict, "hooks", "an object")
    hooks = {}
    for kind, entries in data.items():
        if kind not in HOOKS:
            raise LabError(f"config.json asks for {kind} hooks, which this lab runtime does not "
                           f"run (it runs {', '.join(HOOKS)}): remove them or run under runc.")
        for entry in _type(entries, list, f"hooks.{kind}", "a list"):
            _type(entry, dict, f"hooks.{kind}", "a list of objects")
            path = _type(entry.get("path"), str, f"hooks.{kind}[].path", "a path")
            if not os.path.isabs(path):
                raise LabError(f"config.json hooks.{kind} path {path!r} must be absolute.")
        hooks[kind] = list(entries)
    return hooks


def _id_map(entries: Any, where: str) -> str | None:
    if not entries:
        return None
    _type(entries, list, where, "a list")
    lines = []
    for entry in entries:
        _type(entry, dict, where, "a list of objects")
        values = [_type(entry.get(k), int, f"{where}.{k}", "a whole number")
                  for k in ("containerID", "hostID", "size")]
        lines.append(" ".join(str(v) for v in values))
    return "\n".join(lines)


#: Namespaces a bundle may join by path. A PID namespace joined would put a process between the
#: container and its engine; a mount or user namespace joined would undo the root and the maps.
JOINABLE = ("network", "ipc", "uts", "cgroup")


def _namespaces(entries: Any) -> tuple[list[str], dict[str, str]]:
    """linux.namespaces: the kinds to make, and {kind: path} of those to join."""
    _type(entries, list, "linux.namespaces", "a list")
    names, join = [], {}
    for entry in entries:
        _type(entry, dict, "linux.namespaces", "a list of objects")
        kind = entry.get("type")
        if kind not in NAMESPACES:
            raise LabError(f"config.json names an unknown namespace {kind!r}: "
                           f"use one of {', '.join(NAMESPACES)}.")
        if entry.get("path"):
            if kind not in JOINABLE:
                raise LabError(f"config.json linux.namespaces[{kind}].path asks to join an existing "
                               f"{kind} namespace: this lab runtime joins only {', '.join(JOINABLE)} "
                               "ones; remove the path or run under runc.")
            join[NAMESPACES[kind]] = _type(entry["path"], str, f"linux.namespaces[{kind}].path", "a path")
        else:
            names.append(NAMESPACES[kind])
    return names, join


def _capabilities(data: Any) -> tuple[str, ...]:
    _type(data, dict, "process.capabilities", "an object")
    # The lab applies one set to bounding, effective and permitted: it takes the bounding list.
    caps = _type(data.get("bounding", data.get("effective", [])), list,
                 "process.capabilities.bounding", "a list")
    return tuple(_type(c, str, "process.capabilities.bounding", "a list of names") for c in caps)


def parse(data: Any) -> Spec:
    """Validate a config.json already loaded with json; every problem is one LabError sentence."""
    _type(data, dict, "(the whole file)", "an object")
    unsupported = _unknown(data, _KNOWN_TOP, "")
    proc = _type(data.get("process"), dict, "process", "an object")
    unsupported += _unknown(proc, _KNOWN_PROCESS, "process.")
    if proc.get("terminal"):
        raise LabError("config.json asks for process.terminal true: this lab runtime has no "
                       "terminal; set it to false (its output goes to the container's log).")
    args = _type(proc.get("args"), list, "process.args", "a list")
    if not args or not all(isinstance(a, str) for a in args):
        raise LabError("config.json field process.args must be a non-empty list of strings.")
    user = _type(proc.get("user", {}), dict, "process.user", "an object")
    unsupported += [f"process.user.{k}" for k in user if k not in ("uid", "gid", "additionalGids", "umask")]
    spec = Spec(args=list(args))
    spec.additional_gids = tuple(_type(g, int, "process.user.additionalGids", "a list of whole numbers")
                                 for g in _type(user.get("additionalGids", []), list,
                                                "process.user.additionalGids", "a list"))
    if user.get("umask") is not None:
        spec.umask = _type(user["umask"], int, "process.user.umask", "a whole number")
    spec.rlimits = _rlimits(proc.get("rlimits", []))
    if proc.get("oomScoreAdj") is not None:
        spec.oom_score_adj = _type(proc["oomScoreAdj"], int, "process.oomScoreAdj", "a whole number")
        if not -1000 <= spec.oom_score_adj <= 1000:
            raise LabError(f"config.json process.oomScoreAdj is {spec.oom_score_adj}: "
                           "it must be between -1000 and 1000.")
    spec.hooks = _hooks(data.get("hooks", {}))
    spec.env = list(_type(proc.get("env", spec.env), list, "process.env", "a list"))
    spec.cwd = _type(proc.get("cwd", "/"), str, "process.cwd", "a string")
    spec.uid = _type(user.get("uid", 0), int, "process.user.uid", "a whole number")
    spec.gid = _type(user.get("gid", 0), int, "process.user.gid", "a whole number")
    if "capabilities" in proc:
        spec.capabilities = _capabilities(proc["capabilities"])
    spec.no_new_privileges = _type(proc.get("noNewPrivileges", True), bool,
                                   "process.noNewPrivileges", "true or false")
    root = _type(data.get("root", {"path": "rootfs"}), dict, "root", "an object")
    spec.root = _type(root.get("path"), str, "root.path", "a string")
    spec.root_readonly = _type(root.get("readonly", False), bool, "root.readonly", "true or false")
    if "hostname" in data:
        spec.hostname = _type(data["hostname"], str, "hostname", "a string")
    spec.mounts, spec.system_mounts = _mounts(data.get("mounts", []))
    linux = _type(data.get("linux", {}), dict, "linux", "an object")
    unsupported += _unknown(linux, _KNOWN_LINUX, "linux.")
    if "namespaces" in linux:
        spec.namespaces, spec.join = _namespaces(linux["namespaces"])
    spec.resources = _resources(linux.get("resources", {}), unsupported)
    spec.sysctl = _sysctl(linux.get("sysctl", {}))
    spec.devices = _device_nodes(linux.get("devices", []))
    for node in spec.devices:  # as runc does: a node the bundle makes, the container may open
        if node.kind in ("c", "b"):
            spec.resources.devices.allow(DeviceRule(node.kind, node.major, node.minor, "rwm"))
    for key, attr in (("maskedPaths", "masked_paths"), ("readonlyPaths", "readonly_paths")):
        if key in linux:
            paths = _type(linux[key], list, f"linux.{key}", "a list")
            setattr(spec, attr, tuple(_type(p, str, f"linux.{key}", "a list of paths") for p in paths))
    if "seccomp" in linux:
        spec.seccomp = seccomp_profiles.from_oci(linux["seccomp"])
        notes = _type(data.get("annotations", {}), dict, "annotations", "an object")
        if notes.get(seccomp_profiles.NO_NEW_NAMESPACES) == "true":
            spec.seccomp = replace(spec.seccomp, no_new_namespaces=True)
    spec.uid_map = _id_map(linux.get("uidMappings"), "linux.uidMappings")
    spec.gid_map = _id_map(linux.get("gidMappings"), "linux.gidMappings")
    if (spec.uid_map or spec.gid_map) and "user" not in spec.namespaces:
        raise LabError("config.json has uidMappings/gidMappings but no user namespace: "
                       "add {\"type\": \"user\"} to linux.namespaces.")
    if unsupported:
        raise LabError("This lab runtime does not support these config.json fields: "
                       f"{', '.join(unsupported)}; remove them or run under runc.")
    return spec


#: Mounts the runtime makes itself after pivot_root, with the bundle's options: at these
#: destinations, and any mount of the kernel's own file systems. (A bind at /dev/shm - podman's
#: shared memory - gives way to a fresh tmpfs: /dev is mounted after the binds.)
_OWN_MOUNTS = {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}
KERNEL_FILE_SYSTEMS = ("proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2")


def _mounts(entries: Any) -> tuple[list[Mount], dict[str, Mount]]:
    """The bundle's mounts: (binds and tmpfs made before pivot_root, system mounts made after)."""
    _type(entries, list, "mounts", "a list")
    mounts, system = [], {}
    for entry in entries:
        _type(entry, dict, "mounts", "a list of objects")
        dest = _type(entry.get("destination"), str, "mounts[].destination", "a path")
        kind = _type(entry.get("type", "bind"), str, f"mounts[{dest}].type", "a file system type")
        options = _type(entry.get("options", []), list, f"mounts[{dest}].options", "a list")
        source = _type(entry.get("source", kind), str, f"mounts[{dest}].source", "a path")
        is_bind = kind == "bind" or "bind" in options or "rbind" in options
        if dest in _OWN_MOUNTS or kind in KERNEL_FILE_SYSTEMS:
            if is_bind and dest == "/dev/shm":
                kind, source = "tmpfs", "shm"
                options = [o for o in options if o not in ("bind", "rbind")] + ["mode=1777", "size=65536k"]
            _check_options(dest, options)
            system[dest] = Mount(dest, kind, source, options)
            continue
        if kind != "tmpfs" and not is_bind:
            raise LabError(f"config.json mount {dest} has type {kind!r}: this lab runtime mounts "
                           f"{', '.join(KERNEL_FILE_SYSTEMS)}, tmpfs and bind mounts; remove it or "
                           "run under runc.")
        mounts.append(Mount(dest, "bind" if is_bind else kind, source, options))
    return mounts, system


#: Mount options that are flags of mount(2); any other option goes to the file system as data.
MOUNT_FLAGS = {"ro": 1, "rw": 0, "nosuid": 2, "suid": 0, "nodev": 4, "dev": 0, "noexec": 8,
               "exec": 0, "sync": 16, "dirsync": 128, "noatime": 1024, "nodiratime": 2048,
               "relatime": 1 << 21, "strictatime": 1 << 24, "atime": 0, "diratime": 0, "async": 0}
#: Propagation options: each system mount is private to the container already (its mount
#: namespace is made slave or private first), so these change nothing there.
PROPAGATION_OPTIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                       "unbindable", "runbindable")


def _check_options(destination: str, options: list[Any]) -> None:
    for option in options:
        _type(option, str, f"mounts[{destination}].options", "a list of strings")
        if option in ("bind", "rbind", "remount", "mand", "nomand"):
            raise LabError(f"config.json mount {destination} has the option {option!r}, which "
                           "this lab runtime does not apply to a system mount: remove it.")


def mount_flags(options: list[str]) -> tuple[int, str]:
    """A mount's options as mount(2) takes them: (flags, data) - ["nosuid", "mode=755"] ->
    (MS_NOSUID, "mode=755")."""
    flags, data = 0, []
    for option in options:
        if option in MOUNT_FLAGS:
            flags |= MOUNT_FLAGS[option]
        elif option not in PROPAGATION_OPTIONS:
            data.append(option)
    return flags, ",".join(data)


def load(bundle: str | os.PathLike, detached: bool = False) -> Spec:
    """Read DIR/config.json, as ``runc run --bundle DIR`` would; ``detached`` reads it as
    ``runc run --detach`` with no terminal would (``runc spec`` asks for one by default)."""
    path = Path(bundle) / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"There is no config.json in {bundle}: write one with `runc spec`.") from None
    except json.JSONDecodeError as err:
        raise LabError(f"{path} is not valid JSON (line {err.lineno}): fix the file.") from None
    if detached and isinstance(data, dict) and isinstance(data.get("process"), dict):
        data["process"]["terminal"] = False
    spec = parse(data)
    if not os.path.isabs(spec.root):
        spec.root = str((Path(bundle) / spec.root).resolve())
    return spec
