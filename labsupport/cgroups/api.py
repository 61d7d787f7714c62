"""One face for cgroups v1 and v2: make a lab group, put processes in, limit, measure, remove.

The caller says *what* (a 512M memory limit, 20% of a core, 10M/s from this
disk) and never *where*: each controller is looked up in the machine's
layout, and the group's limits are written in that tree's files and words.
On a hybrid machine one group is several directories - the memory tree's,
the cpu tree's, ... and the v2 tree's - and a process is moved into all of
them::

    from labsupport import cgroups
    with cgroups.create("web") as group:
        group.limit_memory("64M")
        child = group.start(["sleep", "60"])
        group.usage().memory_bytes

Every group lives at ``<hierarchy>/lab/<name>`` by absolute path, so the lab
never creates anything below the group it happens to run in, and
``python -m labsupport clean`` finds whatever a crashed kernel left.
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from labsupport import ownership, process
from labsupport.cgroups import cgroupfs, limits
from labsupport.cgroups.devices import DevicePolicy, parse_rule
from labsupport.cgroups.layout import CgroupLayout, detect_layout
from labsupport.cgroups.v1 import HIERARCHIES, V1Group
from labsupport.cgroups.v2 import V2Group
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError, require_root
from labsupport.kernel.tables import Table

#: The controllers the lab drives, by their v2 names ("io" is v1's "blkio").
CONTROLLERS = ("memory", "cpu", "io", "pids", "devices", "net_cls")

Home = str  # "v1", "v2", or "bpf" (devices on v2: an eBPF program)

# The files worth a look in each tree (v1 names, then v2 names), in a learner's order.
_SHOWN_FILES = (
    "cgroup.procs", "cgroup.controllers", "cgroup.subtree_control",
    "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.max_usage_in_bytes",
    "memory.failcnt", "memory.oom_control", "memory.max", "memory.current", "memory.peak",
    "memory.events", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares", "cpuacct.usage",
    "cpu.max", "cpu.weight", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
    "io.max", "pids.max", "pids.current", "pids.events", "devices.list",
)


@dataclass(frozen=True)
class Usage:
    """What a group uses right now, read from its cgroup files (None: not controlled here)."""

    memory_bytes: Optional[int] = None
    memory_peak_bytes: Optional[int] = None
    memory_limit_bytes: Optional[int] = None  # None also when there is no limit
    memory_limit_hits: Optional[int] = None   # v1 memory.failcnt / v2 memory.events max
    oom_kills: Optional[int] = None           # v1 memory.oom_control / v2 memory.events oom_kill
    cpu_seconds: Optional[float] = None
    cpu_throttled_periods: Optional[int] = None
    pids: Optional[int] = None
    pids_peak: Optional[int] = None
    refused_forks: Optional[int] = None       # pids.events max


def _home(layout: CgroupLayout, controller: str, devices: Optional[str]) -> Optional[Home]:
    """Which tree serves a controller on this machine, or None if it has none."""
    if controller == "devices":
        v1_ok = layout.where("devices") == "v1"
        bpf_ok = layout.v2_mount is not None
        if devices == "bpf":
            return "bpf" if bpf_ok else None
        if devices == "v1":
            return "v1" if v1_ok else None
        return "v1" if v1_ok else ("bpf" if bpf_ok else None)
    if all(h in layout.v1_controllers for h in HIERARCHIES[controller]):
        return "v1"
    if layout.v2_mount is not None and controller in layout.v2_controllers:
        return "v2"
    return None


def _missing(layout: CgroupLayout, controller: str, devices: Optional[str]) -> LabError:
    if controller not in CONTROLLERS:
        return LabError(f"The lab knows no controller {controller!r}: choose from "
                        f"{', '.join(CONTROLLERS)}.")
    if controller == "net_cls":
        return LabError("This host has no net_cls controller: it exists only in cgroup v1 and is "
                        f"not mounted here ({layout.summary()}); shape traffic on the link instead.")
    if controller == "devices" and devices in ("v1", "bpf"):
        need = "a v1 devices tree" if devices == "v1" else "a cgroup v2 tree to attach to"
        return LabError(f"Device control via {devices} needs {need}, which this host lacks "
                        f"({layout.summary()}).")
    return LabError(f"This host has no {controller} controller in any cgroup tree "
                    f"({layout.summary()}): leave it out, or use the lab's Vagrant VM.")


def device_number(device: Union[str, os.PathLike]) -> str:
    """'MAJ:MIN' of a block device node such as /dev/loop0 (or 'MAJ:MIN' given as is)."""
    text = os.fspath(device)
    if ":" in text and text.replace(":", "").isdigit():
        return text
    try:
        mode = os.stat(text)
    except FileNotFoundError:
        raise LabError(f"There is no device {text}: give a block device such as /dev/loop0.") from None
    if not stat.S_ISBLK(mode.st_mode):
        raise LabError(f"{text} is not a block device: I/O limits apply to disks "
                       "(ls -l shows 'b' first for one).")
    return f"{os.major(mode.st_rdev)}:{os.minor(mode.st_rdev)}"


class CGroup:
    """A lab-owned control group; make one with ``create()`` or find one with ``open_group()``."""

    def __init__(self, name: str, layout: CgroupLayout, homes: dict[str, Home]) -> None:
        self.name = cgroupfs.check_name(name)
        self.layout = layout
        self.homes = homes
        v1_mounts = {h: layout.v1_controllers[h] for c, where in homes.items() if where == "v1"
                     for h in HIERARCHIES[c]}
        self.v1 = V1Group(name, v1_mounts) if v1_mounts else None
        v2_controllers = [c for c, where in homes.items() if where == "v2"]
        # The v2 tree, where there is one, always holds the group's processes too.
        self.v2 = V2Group(name, layout.v2_mount, v2_controllers) if layout.v2_mount else None
        self.device_policy = DevicePolicy()

    # -- where it lives ----------------------------------------------------
    @property
    def directories(self) -> list[Path]:
        """Every directory of this group: one per v1 hierarchy used, plus the v2 one."""
        dirs = self.v1.directories if self.v1 else []
        return dirs + (self.v2.directories if self.v2 else [])

    @property
    def procs_files(self) -> list[Path]:
        """The cgroup.procs files a process is written to, to enter the group."""
        return [d / "cgroup.procs" for d in self.directories]

    def exists(self) -> bool:
        """True while every directory of the group is there."""
        return all(d.is_dir() for d in self.directories)

    def table(self) -> Table:
        """Where each controller of this group lives, as a table."""
        rows = []
        for controller, where in self.homes.items():
            if where == "v1":
                paths = sorted({str(self.v1.paths[h]) for h in HIERARCHIES[controller]})  # type: ignore[union-attr]
            else:
                paths = [str(self.v2.path)]  # type: ignore[union-attr]
            rows.append((controller, {"v1": "cgroup v1", "v2": "cgroup v2",
                                      "bpf": "cgroup v2 + eBPF"}[where], "\n".join(paths)))
        return Table(("controller", "served by", "directory"), rows,
                     caption=f"lab group {self.name!r} on a {self.layout.summary()} host")

    def files_table(self) -> Table:
        """The group's main files and what the kernel answers when they are read."""
        rows = []
        for directory in self.directories:
            for name in _SHOWN_FILES:
                path = directory / name
                if path.exists():
                    text = cgroupfs.read(path).strip().splitlines()
                    shown = "\n".join(text[:4] + (["..."] if len(text) > 4 else []))
                    rows.append((str(path), shown or "(empty)"))
        return Table(("file", "content"), rows, f"the files of lab group {self.name!r}")

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __repr__(self) -> str:
        return f"CGroup({self.name!r}, {', '.join(f'{c}={w}' for c, w in self.homes.items())})"

    def _need(self, controller: str) -> Home:
        if controller not in self.homes:
            raise LabError(f"The group {self.name!r} was created without the {controller} "
                           f"controller: create it with controllers=[..., {controller!r}].")
        return self.homes[controller]

    def _backend(self, controller: str) -> Any:
        return self.v1 if self._need(controller) == "v1" else self.v2

    # -- processes ---------------------------------------------------------
    def add(self, pid: int) -> None:
        """Move a running process (all its threads) into the group, in every tree."""
        if not isinstance(pid, int) or pid <= 0 or not Path(f"/proc/{pid}").is_dir():
            raise LabError(f"The process {pid} is gone (or never existed): start it again and "
                           "move the new PID.")
        for directory in self.directories:
            cgroupfs.move_process(directory, pid)

    def processes(self) -> list[int]:
        """PIDs in the group (in any of its trees)."""
        return sorted({pid for d in self.directories for pid in hoststate.pids_in_cgroup(d)})

    def running(self) -> list[int]:
        """PIDs in the group that still run: one that ended stays, a zombie, until it is reaped."""
        return [pid for pid in self.processes() if hoststate.process_state(pid) not in ("", "Z")]

    def start(self, argv: Sequence[str], env: Optional[dict[str, str]] = None,
              **isolation: Any) -> process.Child:
        """Start a command that is inside the group before its first instruction runs.

        Returns once the child is in every directory of the group, so a
        caller that samples the group right away counts it.
        """
        child = process.start(argv, env=env, cgroup_procs=self.procs_files, **isolation)
        return self._joined(child)

    def start_function(self, func: Callable[..., Any], *args: Any, **isolation: Any) -> process.Child:
        """Call ``func(*args)`` in a child already inside the group; returns once it is in."""
        iso = process.Isolation.make(cgroup_procs=self.procs_files, **isolation)
        return self._joined(process.Child(lambda: func(*args), iso))

    def _joined(self, child: process.Child, timeout: float = 5.0) -> process.Child:
        """Wait until the child has written itself into every cgroup.procs (its first act)."""
        deadline = time.monotonic() + timeout
        while not all(child.pid in hoststate.pids_in_cgroup(d) for d in self.directories):
            if not Path(f"/proc/{child.pid}").exists() or time.monotonic() > deadline:
                break  # it failed (or finished) first: its error comes with wait()
            time.sleep(0.002)
        return child

    def run_command(self, argv: Sequence[str], timeout: float = 30, **isolation: Any) -> process.CommandResult:
        return process.run_command(argv, timeout=timeout, cgroup_procs=self.procs_files, **isolation)

    def run_function(self, func: Callable[..., Any], *args: Any, timeout: float = 30,
                     **isolation: Any) -> Any:
        return process.run_function(func, *args, timeout=timeout, cgroup_procs=self.procs_files,
                                    **isolation)

    # -- limits ------------------------------------------------------------
    def limit_memory(self, size: Union[str, int, None]) -> None:
        """Hard memory limit ('64M'); over it the kernel reclaims, then OOM-kills. None lifts it."""
        self._backend("memory").set_memory(limits.parse_size(size))

    def limit_cpu(self, share: Union[str, float, None]) -> None:
        """CPU quota: at most this share of one core per 100 ms ('20%', 0.5, 'max')."""
        self._backend("cpu").set_cpu_quota(limits.parse_cpu(share))

    def weight_cpu(self, weight: Union[str, int]) -> None:
        """Relative CPU weight (1..10000, default 100): how a busy core is shared between groups."""
        value = limits.parse_weight(weight)
        if self._need("cpu") == "v1":
            self.v1.set_cpu_shares(limits.weight_to_shares(value))  # type: ignore[union-attr]
        else:
            self.v2.set_cpu_weight(value)  # type: ignore[union-attr]

    def share_cpu(self, shares: int) -> None:
        """Relative CPU weight in v1's unit, cpu.shares (2..262144, default 1024), as Docker's
        ``--cpu-shares`` and a bundle's ``linux.resources.cpu.shares`` give it.

        v1 takes shares as they are; v2 gets the weight runc and systemd compute from them.
        """
        if self._need("cpu") == "v1":
            self.v1.set_cpu_shares(shares)  # type: ignore[union-attr]
        else:
            self.v2.set_cpu_weight(limits.shares_to_weight(shares))  # type: ignore[union-attr]

    def limit_io(self, device: Union[str, os.PathLike], read: Union[str, int, None] = None,
                 write: Union[str, int, None] = None) -> None:
        """Bandwidth caps on one block device ('10M' = 10 MiB/s); None leaves a direction free."""
        number = device_number(device)
        self._backend("io").set_io(number, limits.parse_rate(read), limits.parse_rate(write))

    def limit_pids(self, maximum: Union[str, int, None]) -> None:
        """The most processes (and threads) the group may hold at once; fork fails beyond it."""
        self._backend("pids").set_pids(limits.parse_count(maximum, "a pids maximum"))

    def deny_device(self, spec: Union[str, os.PathLike]) -> None:
        """Deny a device ('c 1:3 rwm', '/dev/null', or 'a' for all): open() then fails with EPERM."""
        self.device_policy.deny(parse_rule(spec))
        self._apply_devices()

    def allow_device(self, spec: Union[str, os.PathLike]) -> None:
        """Allow a device ('c 1:3 rw', '/dev/null r', or 'a' for all)."""
        self.device_policy.allow(parse_rule(spec))
        self._apply_devices()

    def set_device_policy(self, policy: DevicePolicy) -> None:
        """Replace the whole device policy at once (a container's, from its spec)."""
        self.device_policy = DevicePolicy(policy.default_allow, list(policy.exceptions))
        self._apply_devices()

    def _apply_devices(self) -> None:
        if self._need("devices") == "v1":
            self.v1.set_devices(self.device_policy.default_allow,  # type: ignore[union-attr]
                                self.device_policy.exceptions)
        else:
            self.v2.set_devices(self.device_policy)  # type: ignore[union-attr]

    def set_net_class(self, class_id: int) -> None:
        """v1's net_cls: tag the group's packets with a tc class id (0xAAAABBBB = AAAA:BBBB)."""
        self._need("net_cls")
        self.v1.set_class_id(class_id)  # type: ignore[union-attr]

    # -- measurements -----------------------------------------------------
    def usage(self) -> Usage:
        """One reading of every counter the group's controllers keep."""
        values: dict[str, Any] = {}
        if "memory" in self.homes:
            mem = self._backend("memory").memory()
            values.update(memory_bytes=mem["current"], memory_peak_bytes=mem["peak"],
                          memory_limit_bytes=None if mem["limit"] < 0 else mem["limit"],
                          memory_limit_hits=mem["limit_hits"], oom_kills=mem["oom_kills"])
        cpu_source = self._backend("cpu") if "cpu" in self.homes else self.v2
        if cpu_source is not None:
            cpu = cpu_source.cpu()
            values.update(cpu_seconds=cpu["usage_usec"] / 1e6,
                          cpu_throttled_periods=cpu["nr_throttled"])
        if "pids" in self.homes:
            pids = self._backend("pids").pids()
            values.update(pids=pids["current"], pids_peak=pids.get("peak"),
                          refused_forks=pids["refused_forks"])
        return Usage(**values)

    def io_bytes(self, device: Union[str, os.PathLike]) -> dict[str, int]:
        """Bytes the group read from and wrote to one block device: {'rbytes': .., 'wbytes': ..}."""
        return self._backend("io").io(device_number(device))

    def device_rules(self) -> list[str]:
        """The device policy as the kernel holds it: v1's devices.list, or v2's attached program IDs."""
        if self._need("devices") == "v1":
            return self.v1.device_list()  # type: ignore[union-attr]
        ids = self.v2.device_programs()  # type: ignore[union-attr]
        return [f"eBPF program id {i} attached (BPF_CGROUP_DEVICE)" for i in ids]

    # -- the end -----------------------------------------------------------
    def kill(self, timeout: float = 5.0) -> None:
        """Kill every process in the group and wait until it is empty."""
        if self.v2 is not None and self.v2.path.is_dir():
            self.v2.kill()
        cgroupfs.kill_all([d for d in self.directories if d.is_dir()], timeout)

    def remove(self) -> None:
        """Kill what is left inside, then remove every directory of the group; safe to repeat."""
        require_root("Removing a cgroup")
        self.kill()
        if self.v2 is not None:
            self.v2.remove()
        if self.v1 is not None:
            self.v1.remove()

    def __enter__(self) -> "CGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _plan(layout: CgroupLayout, controllers: Optional[Sequence[str]],
          devices: Optional[str]) -> dict[str, Home]:
    if devices not in (None, "v1", "bpf"):
        raise LabError(f"devices={devices!r} is not a device back end: use 'v1', 'bpf' or leave "
                       "it out.")
    wanted = list(controllers) if controllers is not None else \
        [c for c in CONTROLLERS if _home(layout, c, devices) is not None]
    homes: dict[str, Home] = {}
    for controller in wanted:
        where = _home(layout, controller, devices) if controller in CONTROLLERS else None
        if where is None:
            raise _missing(layout, controller, devices)
        homes[controller] = where
    return homes


def home_of(controller: str, devices: Optional[str] = None,
            layout: Optional[CgroupLayout] = None) -> Optional[Home]:
    """Which tree would serve ``controller`` here: 'v1', 'v2', 'bpf' - or None if none can."""
    try:
        return _plan(layout or detect_layout(), [controller], devices)[controller]
    except LabError:
        return None


def create(name: Optional[str] = None, controllers: Optional[Sequence[str]] = None,
           devices: Optional[str] = None, layout: Optional[CgroupLayout] = None) -> CGroup:
    """Make a lab group at ``<hierarchy>/lab/<name>`` in every tree its controllers need.

    ``controllers`` defaults to every one the lab knows and this host has.
    ``devices`` picks the device back end where both exist: 'v1' (the
    devices files) or 'bpf' (an eBPF program on the v2 group).
    """
    require_root("Creating a cgroup")
    layout = layout or detect_layout()
    group = CGroup(name or ownership.owned_name("grp"), layout, _plan(layout, controllers, devices))
    made: list[Any] = []
    try:
        for part in (group.v1, group.v2):
            if part is not None:
                part.create()
                made.append(part)
    except LabError:
        for part in reversed(made):
            part.remove()
        raise
    return group


def _hierarchies(layout: CgroupLayout) -> list[Path]:
    mounts = list(layout.v1_controllers.values())
    return sorted(set(mounts + ([layout.v2_mount] if layout.v2_mount else [])))


def open_group(name_or_path: Union[str, os.PathLike], devices: Optional[str] = None) -> CGroup:
    """Find an existing lab group by name ('web') or by one of its directories.

    A directory outside ``<hierarchy>/lab/`` is not the lab's, and is refused:
    the lab never changes a group it did not make.
    """
    layout = detect_layout()
    text = os.fspath(name_or_path)
    if "/" in text:
        if not cgroupfs.is_lab_group(Path(text), _hierarchies(layout)):
            raise LabError(f"{text} is not one of the lab's groups (they live right under "
                           "<cgroup tree>/lab/): the lab only changes groups it made.")
        text = Path(text).name
    name = cgroupfs.check_name(text)
    homes = {c: where for c, where in _plan(layout, None, devices).items()
             if _has_dir(layout, c, where, name)}
    if not homes:
        raise LabError(f"There is no lab group named {name!r}: create it first.")
    return CGroup(name, layout, homes)


def _has_dir(layout: CgroupLayout, controller: str, where: Home, name: str) -> bool:
    """Does the existing group ``name`` have ``controller``? In v2 one directory serves
    every controller, so its cgroup.controllers tells which are on there."""
    if where == "v1":
        return all(cgroupfs.lab_dir(layout.v1_controllers[h], name).is_dir()
                   for h in HIERARCHIES[controller])
    directory = cgroupfs.lab_dir(layout.v2_mount, name) if layout.v2_mount else None
    if directory is None or not directory.is_dir():
        return False
    return where == "bpf" or controller in cgroupfs.read(directory / "cgroup.controllers").split()


def groups_of(pid: int) -> dict[str, str]:
    """/proc/PID/cgroup as {hierarchy: group path}: where the kernel says a process is."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except FileNotFoundError:
        raise LabError(f"The process {pid} is gone: it is in no group any more.") from None
    found = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        found[controllers or "(v2)"] = path
    return found

