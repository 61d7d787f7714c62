"""cgroup v1: one tree per controller, one directory per group in each tree.

In v1 a process belongs to one group *per hierarchy*: moving it into "the
group" means writing its PID to ``cgroup.procs`` in the memory tree, the cpu
tree, the blkio tree and so on. Each controller has its own files and its own
words for the same ideas v2 later unified:

==============  =====================================  ==========================
idea            v1 file                                v2 file
==============  =====================================  ==========================
memory limit    memory.limit_in_bytes                  memory.max
peak usage      memory.max_usage_in_bytes              memory.peak
OOM kills       memory.oom_control (oom_kill)          memory.events (oom_kill)
CPU quota       cpu.cfs_quota_us / cpu.cfs_period_us   cpu.max
CPU weight      cpu.shares (default 1024)              cpu.weight (default 100)
CPU usage       cpuacct.usage (ns)                     cpu.stat usage_usec
disk bandwidth  blkio.throttle.{read,write}_bps_device io.max rbps= wbps=
devices         devices.allow / devices.deny           an eBPF program
==============  =====================================  ==========================

Kernel 6.18 still builds the v1 memory controller (deprecated since 6.x) and
all the files above exist on the lab's reference machine; v1 never had
``memory.events``, so a limit hit shows in ``memory.failcnt`` instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from labsupport.cgroups import cgroupfs
from labsupport.cgroups.devices import DeviceRule
from labsupport.kernel.errors import LabError

#: The v1 hierarchies behind each of the lab's controller names.
HIERARCHIES = {
    "memory": ("memory",),
    "cpu": ("cpu", "cpuacct"),
    "io": ("blkio",),
    "pids": ("pids",),
    "devices": ("devices",),
    "net_cls": ("net_cls",),
}

PERIOD_US = 100_000


def _swap_on() -> bool:
    """True when a swap area is active (/proc/swaps lists more than its header)."""
    try:
        return len(Path("/proc/swaps").read_text().splitlines()) > 1
    except OSError:
        return False


class V1Group:
    """One lab group spread over the v1 hierarchies of the controllers it uses."""

    def __init__(self, name: str, mounts: dict[str, Path]) -> None:
        """``mounts`` maps each v1 controller used (memory, cpuacct, ...) to its tree's mount."""
        self.name = name
        self.paths = {ctrl: cgroupfs.lab_dir(mount, name) for ctrl, mount in mounts.items()}

    @property
    def directories(self) -> list[Path]:
        """One directory per hierarchy (co-mounted controllers such as cpu,cpuacct share one)."""
        return sorted(set(self.paths.values()))

    def _file(self, controller: str, name: str) -> Path:
        return self.paths[controller] / name

    def has(self, controller: str, name: str) -> bool:
        return controller in self.paths and self._file(controller, name).exists()

    # -- memory ----------------------------------------------------------
    def set_memory(self, limit: Optional[int]) -> None:
        value = "-1" if limit is None else str(limit)
        cgroupfs.write(self._file("memory", "memory.limit_in_bytes"), value)
        # With swap on, memory+swap must be capped too, or the group swaps
        # instead of meeting the OOM killer. Without swap, leave it: a memsw
        # cap then hides the limit hits from memory.failcnt.
        if _swap_on() and self.has("memory", "memory.memsw.limit_in_bytes"):
            cgroupfs.write(self._file("memory", "memory.memsw.limit_in_bytes"), value)

    def memory(self) -> dict[str, int]:
        limit = int(cgroupfs.read(self._file("memory", "memory.limit_in_bytes")))
        oom = cgroupfs.read_keyed(self._file("memory", "memory.oom_control"))
        # With memory+swap capped too, whichever counter reaches its limit first counts the hit.
        failcnts = [name for name in ("memory.failcnt", "memory.memsw.failcnt")
                    if self.has("memory", name)]
        return {
            "current": int(cgroupfs.read(self._file("memory", "memory.usage_in_bytes"))),
            "peak": int(cgroupfs.read(self._file("memory", "memory.max_usage_in_bytes"))),
            # v1 reports "no limit" as the largest page-aligned number.
            "limit": -1 if limit >= 1 << 62 else limit,
            "limit_hits": max(int(cgroupfs.read(self._file("memory", name))) for name in failcnts),
            "oom_kills": oom.get("oom_kill", 0),
        }

    # -- cpu ---------------------------------------------------------------
    def set_cpu_quota(self, cores: Optional[float]) -> None:
        cgroupfs.write(self._file("cpu", "cpu.cfs_period_us"), str(PERIOD_US))
        quota = -1 if cores is None else round(cores * PERIOD_US)
        cgroupfs.write(self._file("cpu", "cpu.cfs_quota_us"), str(quota))

    def set_cpu_shares(self, shares: int) -> None:
        cgroupfs.write(self._file("cpu", "cpu.shares"), str(shares))

    def cpu(self) -> dict[str, int]:
        stat = cgroupfs.read_keyed(self._file("cpu", "cpu.stat"))
        usage_ns = int(cgroupfs.read(self._file("cpuacct", "cpuacct.usage")))
        return {"usage_usec": usage_ns // 1000, "nr_throttled": stat.get("nr_throttled", 0)}

    # -- io ----------------------------------------------------------------
    def set_io(self, device: str, read_bps: Optional[int], write_bps: Optional[int]) -> None:
        # "MAJ:MIN 0" removes a rule in v1.
        for direction, rate in (("read", read_bps), ("write", write_bps)):
            cgroupfs.write(self._file("blkio", f"blkio.throttle.{direction}_bps_device"),
                           f"{device} {rate or 0}")

    def io(self, device: str) -> dict[str, int]:
        counts = {"rbytes": 0, "wbytes": 0}
        text = cgroupfs.read(self._file("blkio", "blkio.throttle.io_service_bytes"))
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[0] == device and fields[1] in ("Read", "Write"):
                counts["rbytes" if fields[1] == "Read" else "wbytes"] = int(fields[2])
        return counts

    # -- pids --------------------------------------------------------------
    def set_pids(self, maximum: Optional[int]) -> None:
        cgroupfs.write(self._file("pids", "pids.max"), "max" if maximum is None else str(maximum))

    def pids(self) -> dict[str, int]:
        events = cgroupfs.read_keyed(self._file("pids", "pids.events"))
        counts = {"current": int(cgroupfs.read(self._file("pids", "pids.current"))),
                  "refused_forks": events.get("max", 0)}
        if self.has("pids", "pids.peak"):
            counts["peak"] = int(cgroupfs.read(self._file("pids", "pids.peak")))
        return counts

    # -- devices -----------------------------------------------------------
    def set_devices(self, default_allow: bool, exceptions: list[DeviceRule]) -> None:
        """Replay the whole policy: 'a' resets the default, then each exception."""
        allow = self._file("devices", "devices.allow")
        deny = self._file("devices", "devices.deny")
        # Writing "a" to one file sets that default and clears every exception.
        cgroupfs.write(allow if default_allow else deny, "a")
        for rule in exceptions:
            cgroupfs.write(deny if default_allow else allow, rule.v1_line())

    def device_list(self) -> list[str]:
        return cgroupfs.read(self._file("devices", "devices.list")).split("\n")[:-1]

    # -- net_cls -----------------------------------------------------------
    def set_class_id(self, class_id: int) -> None:
        cgroupfs.write(self._file("net_cls", "net_cls.classid"), str(class_id))

    # -- life cycle --------------------------------------------------------
    def create(self) -> None:
        made: list[Path] = []
        try:
            for directory in self.directories:
                cgroupfs.make(directory)
                made.append(directory)
        except LabError:
            for directory in reversed(made):
                cgroupfs.remove(directory)
            raise

    def remove(self) -> None:
        for directory in self.directories:
            cgroupfs.remove(directory)
