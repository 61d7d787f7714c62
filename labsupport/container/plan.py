"""A container as data: what was asked (a ``Spec``) -> what the kernel must be told, in order (a ``Plan``).

Every way of asking for a container - ``run`` with Docker-like flags, a
notebook call, a bundle's config.json - ends in one ``Spec``. ``plan(spec)``
turns it into the ordered list of steps that make it: each step says who
takes it (the host, or the container's first process before or after
pivot_root), which config.json field asks for it and which Docker flag. The
shim and the container's first process then run the plan's steps, in the
plan's order; nothing else decides it. Notebook 10 and appendix A show the
plan of a real container, so the table a learner reads is the one that ran.

The steps before pivot_root are the child runner's own (``process.ENTER_STEPS``):
the plan takes their names and order from there.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from labsupport import process
from labsupport.container import hardening
from labsupport.container.spec import Spec
from labsupport.kernel.tables import Table

HOST = "host"
BEFORE_PIVOT = "container, before pivot_root"
AFTER_PIVOT = "container, after pivot_root"
#: The field of a step that no config.json asks for: the engine (Docker, the lab) does it around runc.
ENGINE = "(none: the engine's work, not runc's)"


@dataclass(frozen=True)
class Step:
    """One thing done to make the container: who does it, and what asks for it."""

    name: str
    where: str       # HOST, BEFORE_PIVOT or AFTER_PIVOT
    field: str       # the config.json field that asks for it; "" when runc always does it, ENGINE
    docker: str      # the docker command or flag that leads to it
    notebook: str    # where the learner did it by hand


@dataclass(frozen=True)
class Plan:
    """The ordered steps for one spec, and the facts the runtime decided them by."""

    spec: Spec
    network: str
    steps: tuple[Step, ...]
    detached: bool = False   # the first process outlives its starter (``labsupport oci create``)

    def names(self, where: str | None = None) -> list[str]:
        return [s.name for s in self.steps if where is None or s.where == where]

    def table(self) -> Table:
        rows = [(i, s.where, s.name, s.field or "(always)", s.docker, s.notebook)
                for i, s in enumerate(self.steps, 1)]
        return Table(["#", "who", "step", "config.json field", "Docker", "notebook"], rows,
                     f"The plan of this container: {len(self.steps)} steps, in the order they ran")

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __str__(self) -> str:
        return str(self.table())


#: What asks for each of the child runner's steps: (config.json field, Docker, notebook).
_ENTER_ASKED_BY: dict[str, tuple[str, str, str]] = {
    "die with the parent": ("", "(the runtime's own safety: no orphan if the shim dies)", "-"),
    "join the cgroups": ("linux.resources", "--memory, --cpus, --pids-limit", "08"),
    "join existing namespaces": ("", "docker exec", "02-07"),
    # A host group (root's 0) kept into a user namespace would still open the host's group-readable
    # files: unmapped, it shows as 65534 inside, yet the kernel checks it as gid 0.
    "drop the host's supplementary groups": ("process.user", "(runc: setgroups before the maps)", "07"),
    "unshare the new namespaces": ("linux.namespaces", "default; --pid/--ipc/--network=host share", "02-06"),
    "become root of the user namespace (the parent writes the maps)":
        ("linux.uidMappings", "dockerd --userns-remap", "07"),
    "fork again, to be PID 1 of the PID namespace": ("linux.namespaces", "default; --pid=host", "04"),
    "make every mount private or slave": ("", "always (runc: rslave)", "05"),
    "set the hostname": ("hostname", "--hostname", "02"),
    "mount a fresh /proc": ("mounts", "always", "04"),
    "mount into the new root": ("mounts", "-v SRC:DST, --tmpfs", "05"),
    "change the root: pivot_root with the old root detached (chroot without a mount namespace)":
        ("root.path", "docker run IMAGE", "01, 05"),
    "change to the working directory": ("", "always", "-"),
}

_FIELDS = {
    # host, before the first process exists
    "create the cgroup and set its limits": (HOST, "linux.resources", "--memory, --cpus, --pids-limit", "08"),
    "make a PID namespace for the next child": (HOST, "linux.namespaces", "default; --pid=host", "04"),
    "fork the container's first process": (HOST, "process", "docker run", "-"),
    # the first process, after pivot_root (labsupport.container.hardening runs these)
    "give /proc the bundle's options": (AFTER_PIVOT, "mounts", "(runc: /proc as the bundle says)", "04"),
    "mount /sys read-only": (AFTER_PIVOT, "mounts", "always", "10"),
    "mount the cgroup file system": (AFTER_PIVOT, "mounts", "always (--cgroupns private: its own view)", "08"),
    "make a minimal /dev": (AFTER_PIVOT, "mounts", "--device adds more", "08, 10"),
    "mount /dev/mqueue": (AFTER_PIVOT, "mounts", "always (--ipc=host shares the host's)", "03"),
    "make the bundle's device nodes": (AFTER_PIVOT, "linux.devices", "--device", "08"),
    "mount the bundle's other kernel file systems": (AFTER_PIVOT, "mounts", "--mount type=...", "05"),
    "set the sysctls": (AFTER_PIVOT, "linux.sysctl", "--sysctl", "03, 06"),
    "mask paths": (AFTER_PIVOT, "linux.maskedPaths", "--security-opt systempaths=unconfined lifts it", "10"),
    "make paths read-only": (AFTER_PIVOT, "linux.readonlyPaths", "the same flag", "10"),
    "make the root read-only": (AFTER_PIVOT, "root.readonly", "--read-only", "10"),
    "bring up lo": (AFTER_PIVOT, "linux.namespaces", "default", "06"),
    "say ready, wait for the host's go-ahead": (AFTER_PIVOT, "", "(runc create, then runc start)", "10"),
    # host, while the first process waits before exec
    "move the first process into the cgroup": (HOST, "linux.resources", "--memory, --cpus, --pids-limit", "08"),
    "wait until it is ready": (HOST, "", "(runc create returns here)", "10"),
    "plug into the lab bridge, with an address and /etc/hosts": (HOST, ENGINE, "--network", "06, 11"),
    "publish ports on the host": (HOST, ENGINE, "-p 127.0.0.1:8080:80 (docker-proxy)", "06"),
    "give the go-ahead": (HOST, "", "(runc start)", "10"),
    # the first process: its identity, then exec (hardening again)
    "set the resource limits": (AFTER_PIVOT, "process.rlimits", "--ulimit", "08"),
    "set the OOM score": (AFTER_PIVOT, "process.oomScoreAdj", "--oom-score-adj", "08"),
    "set the user and groups": (AFTER_PIVOT, "process.user", "--user", "07"),
    "drop capabilities": (AFTER_PIVOT, "process.capabilities", "--cap-drop / --cap-add", "07, 10"),
    "set no_new_privs": (AFTER_PIVOT, "process.noNewPrivileges", "--security-opt no-new-privileges", "10"),
    "install the seccomp filter": (AFTER_PIVOT, "linux.seccomp", "default; --security-opt seccomp=unconfined", "10"),
    "exec the program": (AFTER_PIVOT, "process.args", "docker run IMAGE COMMAND", "10"),
}


#: The system mounts the steps above make by name; any other in a bundle is one of "the others".
_STANDARD = {"/proc", "/sys", "/sys/fs/cgroup", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"}


def _system_mounts(spec: Spec) -> list[str]:
    """The steps that mount /sys, its cgroups, /dev and /dev/mqueue (and any other kernel file
    system) - in the bundle's order when it lists them, as runc mounts them in list order."""
    in_user_ns = "user" in spec.namespaces
    own_ipc = "ipc" in spec.namespaces or "ipc" in spec.join
    others = [d for d in spec.system_mounts if d not in _STANDARD]
    wanted = {"/sys": ("mount /sys read-only", spec.wants_mount("/sys") and not in_user_ns),
              "/sys/fs/cgroup": ("mount the cgroup file system",
                                 spec.wants_mount("/sys/fs/cgroup") and not in_user_ns),
              "/dev": ("make a minimal /dev", True),
              "/dev/mqueue": ("mount /dev/mqueue", own_ipc and spec.wants_mount("/dev/mqueue")),
              others[0] if others else "": ("mount the bundle's other kernel file systems", bool(others))}
    order = list(spec.system_mounts)
    place = {dest: order.index(dest) if dest in order else len(order) for dest in wanted}
    if not order:
        place = {dest: i for i, dest in enumerate(wanted)}  # the lab's own order
    return [name for dest, (name, asked) in sorted(wanted.items(), key=lambda item: place[item[0]]) if asked]


def _step(name: str) -> Step:
    where, field, docker, notebook = _FIELDS[name]
    return Step(name, where, field, docker, notebook)


def pid_namespace_from_host(spec: Spec) -> bool:
    """The shim makes the PID namespace (its next child is PID 1, with no process between),
    except with a user namespace: the PID namespace must belong to it, so the child makes both."""
    return "pid" in spec.namespaces and "user" not in spec.namespaces


def root_mounts(spec: Spec) -> list[process.RootMount]:
    """What must be mounted in the root from the host's side, before pivot_root: the
    bundle's mounts, and - in a user namespace, where no device node can be made - a
    /dev with the host's six harmless devices bound in, as rootless runc does."""
    mounts = [process.RootMount(m.destination, m.source if m.type == "bind" else None,
                                "ro" in m.options) for m in spec.mounts]
    if "user" in spec.namespaces:
        mounts.insert(0, process.RootMount("/dev"))
        mounts[1:1] = [process.RootMount(f"/dev/{name}", f"/dev/{name}") for name, _, _ in hardening.DEVICES]
    return mounts


def child_joins_cgroup(spec: Spec) -> bool:
    """Does the first process move itself into its cgroup, first thing? Where it is PID 1 of a
    namespace the shim made, the shim moves it - unless it must be in its group before it reads
    /proc/self/cgroup (to mount /sys/fs/cgroup) or makes a cgroup namespace rooted there."""
    return (not pid_namespace_from_host(spec) or "cgroup" in spec.namespaces
            or spec.wants_mount("/sys/fs/cgroup"))


def _request(spec: Spec, detached: bool) -> dict[str, Any]:
    """The child runner's request for this spec, but for the cgroup files (known once it exists)."""
    namespaces = set(spec.namespaces) - ({"pid"} if pid_namespace_from_host(spec) else set())
    return dict(namespaces=sorted(namespaces), root=spec.root, pivot="mnt" in namespaces,
                outlive_parent=detached,
                hostname=spec.hostname if "uts" in namespaces else None,
                mount_proc="mnt" in namespaces, uid_map=spec.uid_map, gid_map=spec.gid_map,
                propagation="slave" if "mnt" in namespaces else "private",
                root_mounts=tuple(root_mounts(spec)))


def isolation(spec: Spec, group_procs: Sequence[Path], detached: bool = False,
              stdio: tuple[int, int, int] | None = None, keep_fds: Sequence[int] = ()) -> process.Isolation:
    """What the shim asks the child runner for. Where the shim made the PID namespace it moves
    the child into the cgroup itself; otherwise the child joins it, first thing. A detached
    child (``labsupport oci``) outlives its starter and keeps the starter's ``stdio``;
    ``keep_fds`` are the shim's pipes to it, kept when joining namespaces closes the rest."""
    procs = tuple(group_procs) if child_joins_cgroup(spec) else ()
    iso = process.Isolation.make(cgroup_procs=procs, stdio=stdio, **_request(spec, detached))
    return replace(iso, enter=_joined(spec), keep_fds=tuple(keep_fds), mark_steps=True)


def _joined(spec: Spec) -> tuple[tuple[str, str], ...]:
    """The bundle's namespaces to join, as the child runner's (kind, file) pairs."""
    return tuple(sorted(spec.join.items()))


def _before_pivot(spec: Spec, detached: bool) -> list[Step]:
    """The child runner's steps for this spec, by its own list: drawn without touching the kernel."""
    request = _request(spec, detached)
    request["namespaces"] = frozenset(request["namespaces"])
    request["root"] = Path(spec.root)
    model = process.Isolation(cgroup_procs=(Path("cgroup.procs"),) if child_joins_cgroup(spec) else (),
                              enter=_joined(spec), **request)
    return [Step(name, BEFORE_PIVOT, *_ENTER_ASKED_BY[name]) for name in process.steps_for(model)]


def plan(spec: Spec, network: str = "bridge", publish: bool = False, detached: bool = False) -> Plan:
    """The ordered steps that make ``spec`` a running container: only those it asks for.
    ``detached``: the container outlives the process that creates it, as under ``runc create``."""
    from_host = pid_namespace_from_host(spec)
    net = "net" in spec.namespaces
    names = ["create the cgroup and set its limits"]
    names += ["make a PID namespace for the next child"] if from_host else []
    names += ["fork the container's first process"]
    steps = [_step(n) for n in names] + _before_pivot(spec, detached)
    system = spec.system_mounts
    after = ["give /proc the bundle's options"] if "/proc" in system and "mnt" in spec.namespaces else []
    after += _system_mounts(spec)
    after += ["make the bundle's device nodes"] if spec.devices else []
    after += ["set the sysctls"] if spec.sysctl else []
    after += ["mask paths", "make paths read-only"]
    after += ["make the root read-only"] if spec.root_readonly else []
    after += ["bring up lo"] if net else []
    host = ["move the first process into the cgroup"] if from_host else []
    host += ["wait until it is ready"]
    host += ["plug into the lab bridge, with an address and /etc/hosts"] if net and network == "bridge" else []
    host += ["publish ports on the host"] if net and network == "bridge" and publish else []
    host += ["give the go-ahead"]
    identity = ["set the resource limits"] if spec.rlimits else []
    identity += ["set the OOM score"] if spec.oom_score_adj is not None else []
    identity += ["set the user and groups"]
    if spec.seccomp is not None and not spec.no_new_privileges:
        # Without no_new_privs the kernel takes a filter only from a holder of CAP_SYS_ADMIN:
        # install it while the capabilities are still there (runc does the same).
        identity += ["install the seccomp filter", "drop capabilities"]
    else:
        identity += ["drop capabilities"]
        identity += ["set no_new_privs"] if spec.no_new_privileges else []
        identity += ["install the seccomp filter"] if spec.seccomp is not None else []
    wait = ["say ready, wait for the host's go-ahead"]
    if detached:
        # As runc's init: the process is all it will be - user, capabilities, seccomp - while
        # it waits in the created state; `start` only lets it exec.
        order = after + identity + wait + host + ["exec the program"]
    else:
        order = after + wait + host + identity + ["exec the program"]
    steps += [_step(n) for n in order]
    return Plan(spec, network, tuple(steps), detached)


def every_step() -> list[Step]:
    """Every step any plan can hold (for the test that holds them to the spec parser)."""
    enter = [Step(name, BEFORE_PIVOT, *_ENTER_ASKED_BY[name]) for name, _, _ in process.ENTER_STEPS]
    return [_step(name) for name in _FIELDS] + enter
