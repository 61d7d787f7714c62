"""Notebook 10 (the full container): predictions, then what the kernel does to a container.

The learner names the containers ex10-*; the checks read state.json and the cgroup files on
the host (OOM kills, the CPU quota and the CPU time each process got), ask the containers
themselves, and for the add_key question run the attack with each defense off. Each shows
the learner's prediction beside the measurement.
"""
from __future__ import annotations

import os
import time
from typing import Any

from labsupport import cgroups, container
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, resets
from labsupport.kernel.errors import LabError

#: Exercise 1's container; exercise 2's, its CPU limit (cores) and how long the check measures.
OOM_NAME = "ex10-oom"
CPU_NAME = "ex10-cpu"
CPU_LIMIT = 0.2
CPU_SECONDS = 2.0


def _running(name: str) -> dict[str, Any] | None:
    try:
        current = container.state(name)
    except LabError:
        return None
    return current if current.get("status") == "running" else None


def _group(current: dict[str, Any]) -> cgroups.CGroup:
    return cgroups.open_group(current["cgroup"])


@exercise("10", 1, "Predict what an OOM kill takes with it, then make a container survive one")
def survives_oom() -> Verdict:
    guess = predictions.required("10", 1, "for which process the kernel kills when a program in a "
                                 "container asks for more memory than its limit - and whether the "
                                 "container lives on")
    if isinstance(guess, Verdict):
        return guess
    box = _running(OOM_NAME)
    if box is None:
        return hint(f"There is no running container named {OOM_NAME}: run one from busybox with a "
                    "memory limit, in which a program asks for more than that limit.")
    used = _group(box).usage()
    if used.memory_limit_bytes is None:
        return hint(f"{OOM_NAME} has no memory limit: its programs may use the host's whole memory.")
    if not used.oom_kills:
        return hint(f"{OOM_NAME}'s cgroup counts no OOM kill yet. Which busybox program can be made "
                    f"to hold more than {used.memory_limit_bytes >> 20} MiB at once? (Its buffer "
                    "size is an option.)")
    first = container.exec_in(OOM_NAME, ["cat", "/proc/1/comm"]).stdout.strip()
    return passed(predictions.beside(
        guess, f"{OOM_NAME}'s cgroup (limit {used.memory_limit_bytes >> 20} MiB) counts "
        f"{used.oom_kills} OOM kill(s), and its PID 1 ({first}) still runs") + " The OOM killer "
        "picks the biggest process inside the group, not the container: only when PID 1 is the "
        "one killed does the container end - `docker ps` would show Exited (137).")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@exercise("10", 2, "Predict how a CPU limit is shared by two busy processes, then measure")
def quota_is_per_container() -> Verdict:
    guess = predictions.required("10", 2, "for the CPU each of two busy loops gets in a container "
                                 f"limited to {CPU_LIMIT} of a core, and what they get together")
    if isinstance(guess, Verdict):
        return guess
    box = _running(CPU_NAME)
    if box is None:
        return hint(f"There is no running container named {CPU_NAME}.")
    group = _group(box)
    quota = _cpu_quota(group)
    if quota is None or abs(quota - CPU_LIMIT) > 0.01:
        return hint(f"The host's cgroup files give {CPU_NAME} "
                    f"{'no CPU quota' if quota is None else f'{quota:g} of a core'}, not {CPU_LIMIT}.")
    pids = group.running()
    before = {pid: _cpu_seconds(pid) for pid in pids}
    total0, start = group.usage().cpu_seconds or 0.0, time.monotonic()
    time.sleep(CPU_SECONDS)
    span = time.monotonic() - start
    total = ((group.usage().cpu_seconds or 0.0) - total0) / span
    each = sorted(((_cpu_seconds(pid) - before[pid]) / span for pid in pids
                   if os.path.exists(f"/proc/{pid}")), reverse=True)
    busy = [share for share in each if share > 0.02]
    if len(busy) < 2:
        return hint(f"{len(busy)} process(es) in {CPU_NAME} used the CPU over {CPU_SECONDS:.0f} s: "
                    "run two loops that never sleep, side by side, inside it.")
    return passed(predictions.beside(
        guess, f"the container got {total:.0%} of a core in all; its busiest two processes "
        f"{busy[0]:.0%} and {busy[1]:.0%}") + " A limit belongs to the cgroup, so it covers "
        "every process of the container together - as `docker run --cpus` does.")


def _cpu_quota(group: cgroups.CGroup) -> float | None:
    """The group's CPU quota in cores, read from v1's cfs files or v2's cpu.max (None: none)."""
    for directory in group.directories:
        if (directory / "cpu.cfs_quota_us").is_file():
            quota = int((directory / "cpu.cfs_quota_us").read_text())
            period = int((directory / "cpu.cfs_period_us").read_text())
            return None if quota < 0 else quota / period
        if (directory / "cpu.max").is_file():
            quota_text, period_text = (directory / "cpu.max").read_text().split()
            return None if quota_text == "max" else int(quota_text) / int(period_text)
    return None


#: The defenses a learner may name for exercise 4, and the run options that turn each one off.
SUSPECTS = {"seccomp": {"seccomp": False}, "capabilities": {"cap_add": ["ALL"]},
            "no_new_privs": {"no_new_privileges": False}, "devices": {"device_rules": ["a *:* rwm"]},
            "masks": {"mask_paths": False}}
@exercise("10", 3, "Predict which defense stops add_key, then let the kernel decide")
def predicted_defense() -> Verdict:
    guess = predictions.required("10", 3, f"- one word of {', '.join(SUSPECTS)} - for the one "
                                 "defense that stops add_key")
    if isinstance(guess, Verdict):
        return guess
    named = [word for word in SUSPECTS if word in guess.latest.lower()]
    if len(named) != 1:
        return hint(f"Your prediction {guess.latest!r} should name exactly one of "
                    f"{', '.join(SUSPECTS)}.")
    from labsupport.container import attacks  # builds the probe on first use

    stoppers = attacks.stopped_by("add_key", SUSPECTS)
    if named[0] in stoppers:
        first = "" if len(guess.answers) == 1 else f" (your first prediction was {guess.first!r})"
        return passed(f"You predicted {named[0]}{first}. The kernel agrees: add_key was refused in "
                      f"a default container and got through once only {named[0]} was off.")
    return hint(f"You predicted {named[0]}, but with only {named[0]} off add_key was still refused. "
                "Does adding a key need a capability, a device or a path - or is it a whole system "
                "call that something must have taken away? Predict again.")


def reset() -> list[str]:
    """What notebook 10's exercises leave besides the exercise directory, removed (``reset 10``)."""
    return resets.remove_containers_named("ex10-")
