"""Notebook 11 (composing and scaling out): checks that ask the learner's running projects.

The projects are named ex11, ex11-fit and ex11-cpu. Each check reads the containers' state,
memory and cgroups on the host, and asks the servers themselves from inside their
containers (redis, the proxy's log), never only the learner's word. Exercises 1 and 2 show
the learner's prediction beside the measurement.
"""
from __future__ import annotations

import statistics
from typing import Any

from labsupport import compose, container
from labsupport.bench import instances
from labsupport.compose import scaleout, services
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, stopped
from labsupport.kernel.errors import LabError

PROJECT = "ex11"
CPU_PROJECT = "ex11-cpu"
FIT_PROJECT = "ex11-fit"
FIT_REPLICAS = 4
PROXY_PORT = 8411
VISITS = 30


def _running(project: str, service: str | None = None) -> list[dict[str, Any]]:
    return [m for m in compose.members(project, service) if m.get("status") == "running"]


def _available_mib() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise LabError("/proc/meminfo has no MemAvailable line.")


@exercise("11", 1, "Predict what one more web replica costs, and how many would fit")
def replicas_that_fit() -> Verdict:
    guess = predictions.required("11", 1, "for the memory one more lab-web replica costs, and how "
                                 "many would fit into this host's free memory")
    if isinstance(guess, Verdict):
        return guess
    web = [m for m in _running(FIT_PROJECT, "web") if m.get("image") == "lab-web"]
    if len(web) < FIT_REPLICAS:
        return hint(f"{len(web)} lab-web replica(s) run in a project named {FIT_PROJECT!r}: bring "
                    f"one up with at least {FIT_REPLICAS}, so a spread of costs can be seen.")
    silent = [m["name"] for m in web if not scaleout.listening(m["pid"], 8000)]
    if silent:
        return hint(f"{silent[0]} does not listen on port 8000: is it the lab-web image's own "
                    "command that runs?")
    costs = []
    for member in web:
        try:
            own, shim = instances.container_memory(member["id"])
        except LabError as err:
            return stopped(err)
        costs.append((own + shim).pss)
    each = statistics.median(costs)
    free = _available_mib()
    return passed(predictions.beside(
        guess, f"{len(web)} replicas cost {min(costs):.1f}-{max(costs):.1f} MiB PSS each, runtime "
        f"shim included (median {each:.1f}); with {free:.0f} MiB available now, about "
        f"{int(free // each)} more would fit") + " Scaling out multiplies this per-copy cost; the "
        "image's files are shared, so a replica costs only what its processes write and allocate.")


@exercise("11", 2, "Predict what a scale-down does to the visit count, then scale down")
def count_survives_scale_down() -> Verdict:
    guess = predictions.required("11", 2, "for the visit count after web is scaled from 3 "
                                 "replicas to 1")
    if isinstance(guess, Verdict):
        return guess
    proxy, kv = _running(PROJECT, "proxy"), _running(PROJECT, "kv")
    if not proxy or not kv or not _running(PROJECT, "queue"):
        return hint(f"Project {PROJECT!r} needs its kv, queue and proxy services running (the "
                    f"proxy published on 127.0.0.1:{PROXY_PORT}).")
    if not any(h == PROXY_PORT for _, h, _ in proxy[0].get("publish", [])):
        return hint(f"The proxy does not publish 127.0.0.1:{PROXY_PORT}.")
    backends = {line.split("-> ")[1] for line in container.logs(proxy[0]["name"]).splitlines()
                if line.startswith("connection -> ")}
    if len(backends) < 3:
        return hint(f"The proxy has sent connections to {len(backends)} replica(s) so far: make "
                    f"{VISITS} visits while web runs 3 replicas.")
    web = _running(PROJECT, "web")
    if len(web) != 1:
        return hint(f"web runs {len(web)} replicas now: scale it down to 1.")
    visits = services.redis_get_int(kv[0]["name"], "visits")
    if visits < VISITS:
        return hint(f"redis says visits = {visits}, fewer than {VISITS}.")
    return passed(predictions.beside(
        guess, f"redis in {kv[0]['name']} still counts {visits} visits, served by "
        f"{len(backends)} replicas of which 1 remains ({web[0]['name']})") + " The replicas keep "
        "no state of their own: the count lives in the store's container, so web copies can "
        "come and go - the condition for scaling out.")


@exercise("11", 3, "One container gets twice the CPU of another")
def double_weight() -> Verdict:
    running = _running(CPU_PROJECT)
    if len(running) < 2:
        return hint(f"Run a project {CPU_PROJECT!r} with two busy services (a loop that never sleeps).")
    try:
        split = scaleout.cpu_split(CPU_PROJECT, seconds=2.0)
    except LabError as err:
        return stopped(err)
    names = sorted(split.shares, key=split.got)
    low, high = names[0], names[-1]
    if min(split.cpu_seconds.values()) < 0.03 * split.seconds:  # a shared machine leaves less
        return hint(f"{low} used only {split.cpu_seconds[low]:.2f} s of CPU in {split.seconds:.0f} s on a "
                    "shared core: are both services busy all the time?")
    ratio = split.cpu_seconds[high] / max(split.cpu_seconds[low], 1e-9)
    if not 1.6 <= ratio <= 2.5:
        return hint(f"On one shared core {high} got {ratio:.2f}x the CPU time of {low} "
                    f"(cpu.shares {split.shares[high]} vs {split.shares[low]}); aim for about 2x.")
    return passed(f"Sharing core {split.core}, {high} got {ratio:.2f}x the CPU time of {low} "
                  f"(cpu.shares {split.shares[high]} vs {split.shares[low]}, from the host's cgroup files).")


def reset() -> list[str]:
    """What notebook 11's exercises leave besides the exercise directory, removed (``reset 11``)."""
    from labsupport import compose

    return [f"removed container {name}" for project in (PROJECT, CPU_PROJECT, FIT_PROJECT)
            for name in compose.down(project)]
