"""Scale out (스케일아웃), measured: requests spread over replicas, and a busy core split by weight.

Both are read from outside the containers: the replica that answered names
itself in the reply (its hostname, set by the UTS namespace), and the CPU each
container got is its cgroup's own counter on the host - not the workload's word.
"""
from __future__ import annotations

import os
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labsupport import cgroups, compose
from labsupport.cgroups import experiments, workloads
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def fetch(url: str, wait: float = 10.0) -> str:
    """One GET; while the servers behind it are still starting (a refused or reset
    connection, a 5xx from the proxy) it retries until ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.read().decode(errors="replace")
        except OSError as err:
            if time.monotonic() > deadline:
                raise LabError(f"{url} did not answer within {wait:.0f} s ({err}): is the project up "
                               "(`compose.ps`), and does its proxy publish this port?") from None
            time.sleep(0.1)


def listening(pid: int, port: int) -> bool:
    """Does the network namespace of ``pid`` hold a socket listening on ``port``? Read from the
    host: /proc/PID/net/tcp lists that namespace's sockets (state 0A is LISTEN)."""
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_listening(project: str, service: str, port: int, wait: float = 10.0) -> list[str]:
    """Until every running replica of the service listens on ``port`` (a started container's
    program needs a moment before it does); returns the replicas' names."""
    deadline = time.monotonic() + wait
    while True:
        replicas = [m for m in compose.members(project, service) if m.get("status") == "running"]
        waiting = [m["name"] for m in replicas if not listening(m["pid"], port)]
        if not waiting:
            return [m["name"] for m in replicas]
        if time.monotonic() > deadline:
            raise LabError(f"{', '.join(waiting)} did not listen on port {port} within {wait:.0f} s: "
                           "`container.logs` says why.")
        time.sleep(0.05)


def served_by(reply: str) -> str:
    """The replica's name in the web app's reply ``served_by=NAME visits=N event=M``."""
    fields = dict(word.partition("=")[::2] for word in reply.split())
    return fields.get("served_by", "?")


def spread(url: str, requests: int) -> Counter:
    """Send ``requests`` GETs one after another; count which replica answered each."""
    return Counter(served_by(fetch(url)) for _ in range(requests))


def spread_chart(counts: Counter, title: str = "") -> "Figure":
    from matplotlib.figure import Figure

    fig = experiments.drawable(Figure(figsize=(7, 3.2), layout="constrained"))
    ax = fig.subplots()
    names = sorted(counts)
    bars = ax.bar(names, [counts[n] for n in names], color="tab:blue")
    ax.bar_label(bars)
    ax.axhline(sum(counts.values()) / max(len(names), 1), color="0.3", ls="--", lw=1, label="an even share")
    ax.set_ylim(0, 1.25 * max(counts.values(), default=1))
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("requests answered")
    ax.set_title(title or f"{sum(counts.values())} requests through the proxy, by replica", loc="left",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return fig


# -- CPU weight ------------------------------------------------------------------------

@dataclass
class CpuSplit:
    """How one core was shared by containers busy at once, each with its own cpu.shares."""

    core: int
    seconds: float
    shares: dict[str, int]          # container -> cpu.shares as the host's cgroup file says
    cpu_seconds: dict[str, float]   # container -> CPU time its cgroup used in the window

    def got(self, name: str) -> float:
        """The fraction of the core's busy time this container got."""
        return self.cpu_seconds[name] / max(sum(self.cpu_seconds.values()), 1e-9)

    def expected(self, name: str) -> float:
        return self.shares[name] / sum(self.shares.values())

    def table(self) -> Table:
        rows = [(n, self.shares[n], f"{self.expected(n):.0%}", f"{self.cpu_seconds[n]:.2f} s",
                 f"{self.got(n):.0%}") for n in self.shares]
        return Table(["container", "cpu.shares", "share by weight", "CPU time used", "share got"], rows,
                     f"{len(rows)} containers busy on core {self.core} for {self.seconds:.1f} s")

    def chart(self) -> "Figure":
        from matplotlib.figure import Figure

        fig = experiments.drawable(Figure(figsize=(7, 3.2), layout="constrained"))
        ax = fig.subplots()
        names = list(self.shares)
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [100 * self.expected(n) for n in names], 0.4,
               label="by weight (cpu.shares ratio)", color="0.75")
        got = ax.bar([x + 0.2 for x in xs], [100 * self.got(n) for n in names], 0.4,
                     label="measured (cgroup cpuacct)", color="tab:orange")
        ax.bar_label(got, fmt="%.0f%%")
        ax.set_xticks(list(xs), [f"{n}\nshares {self.shares[n]}" for n in names], fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"% of the CPU time they got on core {self.core}", fontsize=9)
        ax.set_title("One busy core, split by weight", loc="left", fontsize=10)
        ax.legend(fontsize=8)
        return fig


def _cgroup(member: dict[str, Any]) -> cgroups.CGroup:
    return cgroups.open_group(member["cgroup"])


def _shares(group: cgroups.CGroup) -> int:
    for directory in group.directories:
        if (directory / "cpu.shares").exists():
            return int((directory / "cpu.shares").read_text())
        if (directory / "cpu.weight").exists():
            return round(int((directory / "cpu.weight").read_text()) * 1024 / 100)
    raise LabError(f"The group {group.name} has no cpu controller: give its service cpu_shares.")


def cpu_split(project: str, seconds: float = 3.0) -> CpuSplit:
    """Pin every container of the project to one core, then read each cgroup's CPU time over
    ``seconds``. The containers must be busy (e.g. ``sh -c 'while :; do :; done'``)."""
    running = [m for m in compose.members(project) if m.get("status") == "running"]
    if len(running) < 2:
        raise LabError(f"The project {project!r} needs two or more running containers to share a core.")
    core = workloads.quiet_core()
    groups = {m["name"]: _cgroup(m) for m in running}
    for group in groups.values():
        for pid in group.processes():
            os.sched_setaffinity(pid, {core})
    time.sleep(0.3)  # let the scheduler settle on the new placement
    before = {n: g.usage().cpu_seconds or 0.0 for n, g in groups.items()}
    time.sleep(seconds)
    used = {n: (g.usage().cpu_seconds or 0.0) - before[n] for n, g in groups.items()}
    return CpuSplit(core, seconds, {n: _shares(g) for n, g in groups.items()}, used)
