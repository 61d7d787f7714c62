"""cgroup v2: one tree for every controller, one directory per group.

A process sits in exactly one v2 group, and a controller works in a group
only once its parent enables it in ``cgroup.subtree_control``. So the lab
enables what it needs in the root's ``cgroup.subtree_control`` (that by
itself limits nothing: the root's other children keep their defaults) and in
``<root>/lab/cgroup.subtree_control``, then makes ``<root>/lab/<name>``.

v2 has no devices files: device rules become an eBPF program attached to the
group (``devices_bpf``). On a hybrid machine the v2 tree may offer no
controllers at all (the lab's reference machine offers only hugetlb) - the
lab still puts its processes there, because even an empty v2 group can kill
all its processes at once (``cgroup.kill``) and hold a device program.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from labsupport.cgroups import cgroupfs, devices_bpf
from labsupport.cgroups.devices import DevicePolicy
from labsupport.kernel.errors import LabError

PERIOD_US = 100_000


def enable(parent: Path, controllers: list[str]) -> None:
    """Write '+ctrl' to the parent's cgroup.subtree_control for each one not yet enabled."""
    enabled = cgroupfs.read(parent / "cgroup.subtree_control").split()
    for controller in controllers:
        if controller not in enabled:
            cgroupfs.write(parent / "cgroup.subtree_control", f"+{controller}")


class V2Group:
    """One lab group in the v2 tree, with the v2 controllers it uses enabled."""

    def __init__(self, name: str, mount: Path, controllers: list[str]) -> None:
        self.name = name
        self.mount = mount
        self.path = cgroupfs.lab_dir(mount, name)
        self.controllers = controllers

    @property
    def directories(self) -> list[Path]:
        return [self.path]

    def _file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return self._file(name).exists()

    # -- memory ----------------------------------------------------------
    def set_memory(self, limit: Optional[int]) -> None:
        cgroupfs.write(self._file("memory.max"), "max" if limit is None else str(limit))
        # No swap either, so a group over its limit meets the OOM killer.
        if self.has("memory.swap.max"):
            cgroupfs.write(self._file("memory.swap.max"), "max" if limit is None else "0")

    def memory(self) -> dict[str, int]:
        events = cgroupfs.read_keyed(self._file("memory.events"))
        limit = cgroupfs.read(self._file("memory.max")).strip()
        current = int(cgroupfs.read(self._file("memory.current")))
        # memory.peak came with kernel 5.19.
        peak = int(cgroupfs.read(self._file("memory.peak"))) if self.has("memory.peak") else current
        return {"current": current, "peak": peak, "limit": -1 if limit == "max" else int(limit),
                "limit_hits": events.get("max", 0), "oom_kills": events.get("oom_kill", 0)}

    # -- cpu ---------------------------------------------------------------
    def set_cpu_quota(self, cores: Optional[float]) -> None:
        quota = "max" if cores is None else str(round(cores * PERIOD_US))
        cgroupfs.write(self._file("cpu.max"), f"{quota} {PERIOD_US}")

    def set_cpu_weight(self, weight: int) -> None:
        cgroupfs.write(self._file("cpu.weight"), str(weight))

    def cpu(self) -> dict[str, int]:
        # usage_usec is there even without the cpu controller (it is core accounting).
        stat = cgroupfs.read_keyed(self._file("cpu.stat"))
        return {"usage_usec": stat.get("usage_usec", 0), "nr_throttled": stat.get("nr_throttled", 0)}

    # -- io ----------------------------------------------------------------
    def set_io(self, device: str, read_bps: Optional[int], write_bps: Optional[int]) -> None:
        cgroupfs.write(self._file("io.max"),
                       f"{device} rbps={read_bps or 'max'} wbps={write_bps or 'max'}")

    def io(self, device: str) -> dict[str, int]:
        counts = {"rbytes": 0, "wbytes": 0}
        for line in cgroupfs.read(self._file("io.stat")).splitlines():
            fields = line.split()
            if fields and fields[0] == device:
                for pair in fields[1:]:
                    key, _, value = pair.partition("=")
                    if key in counts:
                        counts[key] = int(value)
        return counts

    # -- pids --------------------------------------------------------------
    def set_pids(self, maximum: Optional[int]) -> None:
        cgroupfs.write(self._file("pids.max"), "max" if maximum is None else str(maximum))

    def pids(self) -> dict[str, int]:
        events = cgroupfs.read_keyed(self._file("pids.events"))
        counts = {"current": int(cgroupfs.read(self._file("pids.current"))),
                  "refused_forks": events.get("max", 0)}
        if self.has("pids.peak"):
            counts["peak"] = int(cgroupfs.read(self._file("pids.peak")))
        return counts

    # -- devices -----------------------------------------------------------
    def set_devices(self, policy: DevicePolicy) -> None:
        devices_bpf.apply(self.path, policy)

    def device_programs(self) -> list[int]:
        return devices_bpf.attached_programs(self.path)

    # -- life cycle --------------------------------------------------------
    def create(self) -> None:
        if self.controllers:
            enable(self.mount, self.controllers)
        cgroupfs.make(self.path, prepare_parent=lambda lab: enable(lab, self.controllers))

    def kill(self) -> bool:
        """Kill every process inside at once, where the kernel has cgroup.kill (5.14+)."""
        if not self.has("cgroup.kill"):
            return False
        try:
            cgroupfs.write(self._file("cgroup.kill"), "1")
        except LabError:
            return False
        return True

    def remove(self) -> None:
        cgroupfs.remove(self.path)
