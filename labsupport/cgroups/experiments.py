"""Notebook 08's experiments: one short run per resource, measured from outside, and its chart.

Each function makes its own lab group(s), runs a workload inside, samples the
group's cgroup files from the outside (never trusting the workload's word),
removes everything, and returns a small result with a ``chart()``. Charts
are matplotlib figures built without pyplot (``matplotlib`` is imported
only to draw, so the workloads - forked copies of this Python - stay small).
"""
from __future__ import annotations

import errno
import io
import os
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

from labsupport import process
from labsupport.cgroups import api, limits, workloads
from labsupport.cgroups.loopdev import LoopDevice
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MiB = 1 << 20


def fast() -> bool:
    """LAB_FAST=1 (tests, CI) keeps every experiment to a few seconds."""
    return bool(os.environ.get("LAB_FAST"))


def figure(width: float = 8.0, height: float = 3.6, panels: int = 1) -> tuple["Figure", list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, panels)
    return drawable(fig), list(axes) if panels > 1 else [axes]


def png(fig: "Figure", dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for an image widget, or a notebook's output)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def drawable(fig: "Figure") -> "Figure":
    """Let IPython draw a Figure made without pyplot: where the inline backend
    never loaded, it would show as "<Figure ...>"."""
    fig._repr_png_ = lambda: png(fig)  # type: ignore[attr-defined]
    return fig


def _sample_until_empty(group: api.CGroup, child: process.Child, every: float, timeout: float,
                        read: Any) -> list[tuple[float, Any]]:
    """(seconds, read(group)) every ``every`` s until the group is empty, then collect the child."""
    samples = []
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        samples.append((time.monotonic() - start, read(group)))
        if not group.processes():
            break
        time.sleep(every)
    group.kill()
    child.wait(timeout=10)
    return samples


# -- memory ------------------------------------------------------------------------

@dataclass
class MemoryRun:
    """Memory use climbing to the limit, and what the kernel did there."""

    limit: int
    samples: list[tuple[float, int]]
    oom_kills: int
    limit_hits: int
    peak: int
    exit_signal: Optional[int]
    served_by: str

    @property
    def killed_at(self) -> Optional[float]:
        return self.samples[-1][0] if self.exit_signal == 9 else None

    def chart(self) -> "Figure":
        fig, (ax,) = figure()
        ax.plot([t for t, _ in self.samples], [b / MiB for _, b in self.samples], lw=2,
                label="memory charged to the group")
        ax.axhline(self.limit / MiB, color="C3", ls="--", label=f"limit {limits.human_size(self.limit)}")
        if self.killed_at is not None:
            ax.axvline(self.killed_at, color="0.3", ls=":",
                       label=f"OOM kill (oom_kill = {self.oom_kills})")
        ax.set_xlabel("seconds")
        ax.set_ylabel("MiB")
        ax.set_title(f"Memory climbs to the limit, then the OOM killer ends it ({self.served_by})",
                     loc="left", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        return fig


def memory_to_the_limit(limit: str = "64M", step: str = "4M", pause: float = 0.05) -> MemoryRun:
    """Grow memory in steps inside a group with a hard limit; sample it until the kill."""
    with api.create(controllers=["memory"]) as group:
        group.limit_memory(limit)
        child = group.start_function(workloads.grow_memory, limits.parse_size(step), pause)
        samples = _sample_until_empty(group, child, 0.02, 30,
                                      lambda g: g.usage().memory_bytes)
        used = group.usage()
        code = child.returncode or 0
        return MemoryRun(limits.parse_size(limit) or 0, samples, used.oom_kills or 0,
                         used.memory_limit_hits or 0, used.memory_peak_bytes or 0,
                         -code if code < 0 else None, f"cgroup {group.homes['memory']}")


# -- CPU ---------------------------------------------------------------------------

@dataclass
class CpuShareRun:
    """Two burners pinned to one core, in groups with different weights."""

    weights: tuple[int, int]
    core: int
    samples: list[tuple[float, float, float]]  # (seconds, cpu seconds of A, of B)
    served_by: str

    def shares(self) -> list[tuple[float, float, float]]:
        """(time, share of A, share of B) of the core over each sampling interval."""
        out = []
        for (t0, a0, b0), (t1, a1, b1) in zip(self.samples, self.samples[1:]):
            span = t1 - t0
            out.append((t1, (a1 - a0) / span, (b1 - b0) / span))
        return out

    @property
    def ratio(self) -> float:
        """B's CPU time over A's, after the first half second (both started)."""
        steady = [s for s in self.samples if s[0] >= 0.5] or self.samples
        (_, a0, b0), (_, a1, b1) = steady[0], steady[-1]
        return (b1 - b0) / max(a1 - a0, 1e-9)

    def chart(self) -> "Figure":
        fig, (ax,) = figure()
        shares = self.shares()
        times = [t for t, _, _ in shares]
        a = [x * 100 for _, x, _ in shares]
        b = [y * 100 for _, _, y in shares]
        ax.stackplot(times, a, b, labels=[f"group A, weight {self.weights[0]}",
                                          f"group B, weight {self.weights[1]}"], alpha=0.8)
        total = sum(self.weights)
        for w in self.weights[:1]:
            ax.axhline(100 * w / total, color="0.2", ls="--", lw=1,
                       label=f"expected split {self.weights[0]}:{self.weights[1]}")
        ax.set_ylim(0, 110)
        ax.set_xlabel("seconds")
        ax.set_ylabel(f"% of core {self.core}")
        ax.set_title(f"Two burners share one core by weight: B got {self.ratio:.2f}x A's time "
                     f"({self.served_by})", loc="left", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        return fig


def cpu_weights(weights: tuple[int, int] = (100, 300), seconds: float = 3.0) -> CpuShareRun:
    """Burn one core from two groups at once; sample each group's CPU time."""
    core = workloads.quiet_core()
    with api.create(controllers=["cpu"]) as a, api.create(controllers=["cpu"]) as b:
        a.weight_cpu(weights[0])
        b.weight_cpu(weights[1])
        burners = [g.start_function(workloads.burn_cpu, seconds, core) for g in (a, b)]
        samples = []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            samples.append((time.monotonic() - start, a.usage().cpu_seconds or 0.0,
                            b.usage().cpu_seconds or 0.0))
            time.sleep(0.1)
        for child in burners:
            child.wait(timeout=seconds + 10)
        return CpuShareRun(weights, core, samples, f"cgroup {a.homes['cpu']}")


def cpu_quota(share: str, seconds: float = 1.0) -> float:
    """Run a burner under a quota for ``seconds``; return the share of a core it really got."""
    with api.create(controllers=["cpu"]) as group:
        group.limit_cpu(share)
        before = group.usage().cpu_seconds or 0.0
        start = time.monotonic()
        group.run_function(workloads.burn_cpu, seconds, timeout=seconds + 10)
        elapsed = time.monotonic() - start
        return ((group.usage().cpu_seconds or 0.0) - before) / elapsed


def quota_chart(asked: float, measured: float) -> "Figure":
    """One bar: the quota asked for and the share of a core measured."""
    fig, (ax,) = figure(5.5, 2.4)
    ax.barh(["measured", "quota"], [measured * 100, asked * 100], color=["C0", "C3"])
    for y, value in enumerate((measured * 100, asked * 100)):
        ax.text(value + 1, y, f"{value:.0f}%", va="center")
    ax.set_xlim(0, 110)
    ax.set_xlabel("% of one core")
    ax.set_title("A busy loop under a CPU quota", loc="left", fontsize=10)
    return fig


# -- I/O ---------------------------------------------------------------------------

@dataclass
class IoRun:
    """Throughput of O_DIRECT reads and writes on a lab loop device, free and throttled."""

    device: str
    read_limit: int
    write_limit: int
    results: dict[tuple[str, bool], float]  # (direction, throttled) -> bytes/s
    counted: dict[str, int]
    served_by: str

    def within(self, direction: str) -> float:
        """Measured throttled rate over the limit (1.0 = exactly the limit)."""
        limit = self.read_limit if direction == "read" else self.write_limit
        return self.results[(direction, True)] / limit

    def table(self) -> Table:
        rows = []
        for direction, limit in (("read", self.read_limit), ("write", self.write_limit)):
            rows.append((direction, f"{self.results[(direction, False)] / MiB:,.0f} MiB/s",
                         f"{limit / MiB:.1f} MiB/s", f"{self.results[(direction, True)] / MiB:.2f} MiB/s",
                         f"{self.within(direction):.1%}"))
        return Table(("direction", "no limit", "limit", "throttled", "throttled / limit"), rows,
                     f"O_DIRECT on {self.device} ({self.served_by})")

    def chart(self) -> "Figure":
        fig, (ax,) = figure(7.5, 3.4)
        names = ["read", "write"]
        free = [self.results[(d, False)] / MiB for d in names]
        held = [self.results[(d, True)] / MiB for d in names]
        caps = [self.read_limit / MiB, self.write_limit / MiB]
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], free, 0.4, label="no limit", color="C0")
        ax.bar([i + 0.2 for i in x], held, 0.4, label="throttled", color="C1")
        for i, (cap, got) in enumerate(zip(caps, held)):
            ax.hlines(cap, i + 0.0, i + 0.4, color="C3", ls="--", label="limit" if i == 0 else None)
            ax.text(i + 0.2, got * 1.3, f"{got:.1f}", ha="center", fontsize=8)
            ax.text(i - 0.2, free[i] * 1.3, f"{free[i]:,.0f}", ha="center", fontsize=8)
        ax.set_yscale("log")
        ax.set_xticks(list(x), names)
        ax.set_ylabel("MiB/s (log scale)")
        ax.set_title(f"Disk bandwidth with and without a throttle ({self.served_by})", loc="left",
                     fontsize=10)
        ax.legend(fontsize=8, loc="center right")
        return fig


def _rate(samples: list[tuple[float, int]]) -> float:
    (t0, n0), (t1, n1) = samples[0], samples[-1]
    return (n1 - n0) / max(t1 - t0, 1e-9)


def io_throttle(read: str = "8M", write: str = "4M", seconds: float = 1.5) -> IoRun:
    """Stream a lab loop device with O_DIRECT, first free, then under read/write caps."""
    results: dict[tuple[str, bool], float] = {}
    with LoopDevice("64M") as disk, api.create(controllers=["io"]) as group:
        for throttled in (False, True):
            if throttled:
                group.limit_io(disk, read=read, write=write)
            for direction in ("read", "write"):
                samples = group.run_function(workloads.stream_device, str(disk.path),
                                             direction == "write", seconds, timeout=seconds + 20)
                results[(direction, throttled)] = _rate(samples)
        return IoRun(str(disk.path), limits.parse_rate(read) or 0, limits.parse_rate(write) or 0,
                     results, group.io_bytes(disk), f"cgroup {group.homes['io']}")


# -- pids --------------------------------------------------------------------------

@dataclass
class BombRun:
    """A fork bomb in a group with a pids maximum, counted from outside."""

    maximum: int
    samples: list[tuple[float, int]]
    refused_forks: int
    host_fork_ms: float
    served_by: str

    @property
    def highest(self) -> int:
        return max(n for _, n in self.samples)

    def chart(self) -> "Figure":
        fig, (ax,) = figure()
        ax.plot([t for t, _ in self.samples], [n for _, n in self.samples], lw=2, drawstyle="steps-post",
                label="pids.current of the group")
        ax.axhline(self.maximum, color="C3", ls="--", label=f"pids.max = {self.maximum}")
        ax.set_ylim(0, self.maximum * 1.5)
        ax.set_xlabel("seconds")
        ax.set_ylabel("processes in the group")
        ax.set_title(f"A fork bomb stays at the limit: {self.refused_forks:,} forks refused; the host "
                     f"still started a program in {self.host_fork_ms:.1f} ms ({self.served_by})",
                     loc="left", fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
        return fig


def _host_fork_ms() -> float:
    """How long the host takes to start and end a program - proof it is still fine."""
    start = time.monotonic()
    subprocess.run(["true"], check=True)
    return (time.monotonic() - start) * 1000


def fork_bomb(maximum: int = 20, seconds: float = 2.0) -> BombRun:
    """A fork bomb as PID 1's child in a new PID namespace, in a group capped at ``maximum``."""
    with api.create(controllers=["pids"]) as group:
        group.limit_pids(maximum)
        child = group.start_function(workloads.fork_bomb_as_init, seconds, namespaces=["pid"])
        samples = []
        start = time.monotonic()
        host_ms = 0.0
        while time.monotonic() - start < seconds:
            samples.append((time.monotonic() - start, group.usage().pids or 0))
            if not host_ms and time.monotonic() - start > seconds / 2:
                host_ms = _host_fork_ms()
            time.sleep(0.01)
        refused = group.usage().refused_forks or 0
        group.kill()
        child.wait(timeout=10)
        return BombRun(maximum, samples, refused, host_ms, f"cgroup {group.homes['pids']}")


# -- devices -------------------------------------------------------------------------

def try_open(nodes: Sequence[str]) -> dict[str, str]:
    """Open each node for reading and writing; 'ok' or the errno's name (runs inside a group)."""
    found = {}
    for node in nodes:
        try:
            os.close(os.open(node, os.O_RDWR))
            found[node] = "ok"
        except OSError as err:
            found[node] = errno.errorcode.get(err.errno or 0, str(err.errno))
    return found


@dataclass
class DeviceRun:
    """Which nodes a process in the group could open, after each policy change."""

    nodes: list[str]
    steps: list[tuple[str, dict[str, str], list[str]]]  # (what was done, outcome per node, kernel's view)
    served_by: str

    def table(self) -> Table:
        return Table(["policy change", *self.nodes, "the kernel holds"],
                     [(step, *[seen[n] for n in self.nodes], "\n".join(view))
                      for step, seen, view in self.steps],
                     f"open(O_RDWR) from inside the group ({self.served_by})")

    def chart(self) -> "Figure":
        from matplotlib.colors import ListedColormap

        fig, (ax,) = figure(7.5, 0.6 + 0.55 * len(self.steps))
        grid = [[1 if seen[n] == "ok" else 0 for n in self.nodes] for _, seen, _ in self.steps]
        ax.imshow(grid, cmap=ListedColormap(["#f4a6a6", "#b7e4c7"]), vmin=0, vmax=1, aspect="auto")
        for row, (_, seen, _) in enumerate(self.steps):
            for col, node in enumerate(self.nodes):
                ax.text(col, row, "opened" if seen[node] == "ok" else seen[node], ha="center",
                        va="center", fontsize=9)
        ax.set_xticks(range(len(self.nodes)), self.nodes)
        ax.set_yticks(range(len(self.steps)), [step for step, _, _ in self.steps])
        ax.xaxis.tick_top()
        ax.set_title(f"Device nodes opened from inside the group ({self.served_by})", loc="left",
                     fontsize=10, pad=24)
        return fig


def device_rules(nodes: Sequence[str] = ("/dev/null", "/dev/zero", "/dev/urandom"),
                 changes: Sequence[tuple[str, str]] = (("deny", "/dev/null"), ("allow", "/dev/null"),
                                                       ("deny", "a"), ("allow", "/dev/zero rw")),
                 devices: Optional[str] = None) -> DeviceRun:
    """Apply device rules one by one; after each, a process in the group tries every node."""
    with api.create(controllers=["devices"], devices=devices) as group:
        steps = [("(new group)", group.run_function(try_open, list(nodes)), group.device_rules())]
        for verb, spec in changes:
            (group.deny_device if verb == "deny" else group.allow_device)(spec)
            steps.append((f"{verb} {spec}", group.run_function(try_open, list(nodes)),
                          group.device_rules()))
        where = {"v1": "cgroup v1 devices files", "bpf": "cgroup v2 + eBPF"}[group.homes["devices"]]
        return DeviceRun(list(nodes), steps, where)


def device_backends() -> list[str]:
    """The device back ends this host offers: 'v1' (devices files) and/or 'bpf' (v2)."""
    layout = api.detect_layout()
    found = ["v1"] if layout.where("devices") == "v1" else []
    return found + (["bpf"] if layout.v2_mount is not None else [])


# -- refusals ---------------------------------------------------------------------------

def _refusal(attempt: Any) -> str:
    try:
        attempt()
    except LabError as err:
        return str(err)
    return "(accepted)"


def _own_group_dir() -> str:
    """One directory of a group this Python process sits in - a group the machine made, not the lab."""
    layout = api.detect_layout()
    found = api.groups_of(os.getpid()).items()
    for hierarchy, path in sorted(found, key=lambda item: item[1] == "/"):  # a real group first
        mount = layout.v1_controllers.get(hierarchy) if hierarchy != "(v2)" else layout.v2_mount
        if mount is not None:
            return str(mount / path.lstrip("/"))
    return str(layout.v2_mount or "/sys/fs/cgroup")


def refusals(group: api.CGroup) -> Table:
    """Mistakes a learner makes, and the one sentence each gets back."""
    ended = process.start(["true"])
    ended.wait()
    tries = [
        ('limit_memory("-5M")', lambda: group.limit_memory("-5M")),
        ('limit_memory("12 parsecs")', lambda: group.limit_memory("12 parsecs")),
        ('weight_cpu(0)', lambda: group.weight_cpu(0)),
        ('create(controllers=["net_cls"])', lambda: api.create(controllers=["net_cls"])),
        (f'open_group("{_own_group_dir()}")', lambda: api.open_group(_own_group_dir())),
        (f"add({ended.pid})  # a process that has ended", lambda: group.add(ended.pid)),
    ]
    return Table(("call", "answer"), [(call, _refusal(attempt)) for call, attempt in tries],
                 "Plain refusals, before anything reaches the kernel (or right after it says no)")


# -- clean up ---------------------------------------------------------------------------

def clean_up(groups: Sequence[api.CGroup] = (), names: Sequence[str] = ()) -> Table:
    """Remove the given groups and the lab groups named ``names`` (the exercises'), killing
    what runs inside; nothing else of the lab's is touched."""
    removed = []
    for group in groups:
        if group.exists():
            group.remove()
            removed.append(group.name)
    for name in names:
        try:
            found = api.open_group(name)
        except LabError:
            continue
        found.remove()
        removed.append(name)
    return Table(("what", "removed"), [("lab groups (and the processes in them)",
                                        ", ".join(removed) or "none")], "Clean up")
