"""The last stage of a container's way: what the host and the inside see, side by side.

spec -> plan -> the kernel -> an observation. The plan says what was asked of
the kernel; this reads back what the kernel made of it, for the container's
first process, three times: the host's own process (for comparison), the
container's PID 1 as the host sees it in /proc, and the same process as a
program inside the container sees it. Where the last two differ - its PID,
its user under a user namespace - a namespace is at work.
"""
from __future__ import annotations

import os
import socket
from typing import Any

from labsupport.container import runtime, store
from labsupport.kernel.tables import Table

#: /proc/PID/status fields worth a row, and what each tells.
_STATUS = (("Pid", "PID"), ("Uid", "user (real, effective, saved, fs)"), ("CapEff", "capabilities in effect"),
           ("CapBnd", "capability bounding set"), ("CapInh", "inheritable capabilities"),
           ("NoNewPrivs", "no_new_privs"), ("Seccomp", "seccomp (0 off, 2 filter)"))


def _status(text: str) -> dict[str, str]:
    return {key: value.strip() for key, _, value in
            (line.partition(":") for line in text.splitlines()) if value}


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _first_line(text: str) -> str:
    return (text.splitlines() or ["-"])[0]


def observe(ref: str) -> Table:
    """The container's first process from three places: the host itself, the host looking
    at the container's PID 1, and a program inside the container looking at its PID 1."""
    current: dict[str, Any] = store.state(ref)
    pid = current["pid"]
    own, host_view = _status(_read("/proc/self/status")), _status(_read(f"/proc/{pid}/status"))
    inside = runtime.exec_in(ref, ["sh", "-c", "cat /proc/1/status; echo ---; hostname; "
                                   "echo ---; cat /proc/1/mountinfo | wc -l; echo ---; cat /proc/1/cgroup"])
    parts = inside.stdout.split("---\n")
    in_view = _status(parts[0]) if parts else {}
    in_host, in_mounts, in_cgroup = (p.strip() for p in (parts + ["", "", "", ""])[1:4])
    rows = [(what, own.get(key, "-"), host_view.get(key, "-"), in_view.get(key, "-")) for key, what in _STATUS]
    rows.append(("hostname", socket.gethostname(), "(its UTS namespace's: ask inside)", in_host))
    rows.append(("mounts it sees", len(_read("/proc/self/mountinfo").splitlines()),
                 len(_read(f"/proc/{pid}/mountinfo").splitlines()), in_mounts))
    rows.append(("cgroup (first line of /proc/PID/cgroup)", _first_line(_read("/proc/self/cgroup")),
                 _first_line(_read(f"/proc/{pid}/cgroup")), _first_line(in_cgroup)))
    rows.append(("network namespace", os.readlink("/proc/self/ns/net"), os.readlink(f"/proc/{pid}/ns/net"), "(same file)"))
    return Table(["", "the host itself", f"PID {pid}, seen from the host", "its PID 1, seen from inside"],
                 rows, f"What the kernel made of container {current['name']}")
