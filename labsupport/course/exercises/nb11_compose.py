"""Notebook 11 (composing and scaling out): checks that ask the learner's running projects.

The projects are named ex11 and ex11-cpu. Each check reads the containers' state
and cgroups on the host, and asks the servers themselves from inside their
containers (redis, beanstalkd, the web replicas), never only the learner's word.
"""
from __future__ import annotations

import time
from typing import Any

from labsupport import compose, container
from labsupport.compose import scaleout, services
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.kernel.errors import LabError

PROJECT = "ex11"
CPU_PROJECT = "ex11-cpu"
PROXY_PORT = 8411
VISITS = 30


def _running(project: str, service: str | None = None) -> list[dict[str, Any]]:
    return [m for m in compose.members(project, service) if m.get("status") == "running"]


def _health(inside: str, address: str, wait: float = 5.0) -> str:
    """The replica's /health answer (its hostname), asked from inside ``inside``; a replica
    just started may need a moment before it listens."""
    deadline = time.monotonic() + wait
    while True:
        reply = container.exec_in(inside, ["wget", "-q", "-O", "-", f"http://{address}:8000/health"])
        if reply.returncode == 0 or time.monotonic() > deadline:
            return reply.stdout.strip()
        time.sleep(0.2)


@exercise("11", 1, "A web service of three replicas, next to its store and its queue")
def three_replicas() -> Verdict:
    if not _running(PROJECT):
        return hint(f"No container of a project named {PROJECT!r} is running. Write a compose file and bring it up.")
    have = {m["service"]: m for m in _running(PROJECT)}
    images = {m["service"]: m["image"] for m in _running(PROJECT)}
    wanted = {"kv": "lab-kv", "queue": "lab-queue", "web": "lab-web"}
    missing = [f"{s} ({i})" for s, i in wanted.items() if s not in have or images[s] != i]
    if missing:
        return hint(f"{PROJECT} lacks the services {', '.join(missing)}: the web app finds its store and "
                    "its queue by these service names.")
    web = _running(PROJECT, "web")
    if len(web) != 3:
        return hint(f"{PROJECT}'s web service runs {len(web)} replica(s), not 3. Which key of a service "
                    "says how many copies run?")
    first = web[0]["name"]
    for replica in web:
        if _health(first, replica["address"]) != replica["name"]:
            return hint(f"{replica['name']} did not answer on port 8000 from inside {first}: is it the "
                        "lab-web image's own command that runs?")
    if container.exec_in(first, ["ping", "-c", "1", "-W", "2", "kv"]).returncode != 0:
        return hint(f"{first} cannot reach the name 'kv'. Are they in one project?")
    return passed(f"3 web replicas answer with their own names, and reach kv by its service name "
                  f"({', '.join(m['address'] for m in web)}).")


@exercise("11", 2, f"{VISITS} visits counted through the round-robin proxy")
def visits_through_proxy() -> Verdict:
    proxy = _running(PROJECT, "proxy")
    if not proxy:
        return hint(f"{PROJECT} has no running proxy service. Which image spreads connections over replicas?")
    if not any(h == PROXY_PORT for _, h, _ in proxy[0].get("publish", [])):
        return hint(f"The proxy does not publish 127.0.0.1:{PROXY_PORT}.")
    kv, queue = _running(PROJECT, "kv"), _running(PROJECT, "queue")
    if not kv or not queue:
        return hint("The web app needs its kv and queue services running.")
    visits = services.redis_get_int(kv[0]["name"], "visits")
    events = int(services.queue_stats(queue[0]["name"]).get("total-jobs", "0"))
    if visits < VISITS:
        return hint(f"redis inside {kv[0]['name']} says visits = {visits}, fewer than {VISITS}. "
                    f"Each request to 127.0.0.1:{PROXY_PORT} adds one.")
    if events < VISITS:
        return hint(f"beanstalkd holds {events} events, fewer than {VISITS}: were the visits made "
                    "through the web app?")
    backends = {line.split("-> ")[1] for line in container.logs(proxy[0]["name"]).splitlines()
                if line.startswith("connection -> ")}
    if len(backends) < 3:
        return hint(f"The proxy sent connections to {len(backends)} replica(s) only: were all 3 up "
                    "while you sent the requests?")
    return passed(f"redis counted {visits} visits, beanstalkd queued {events} events, and the proxy "
                  f"spread them over {len(backends)} replicas.")


@exercise("11", 3, "One container gets twice the CPU of another")
def double_weight() -> Verdict:
    running = _running(CPU_PROJECT)
    if len(running) < 2:
        return hint(f"Run a project {CPU_PROJECT!r} with two busy services (a loop that never sleeps).")
    try:
        split = scaleout.cpu_split(CPU_PROJECT, seconds=2.0)
    except LabError as err:
        return hint(str(err))
    names = sorted(split.shares, key=split.got)
    low, high = names[0], names[-1]
    if min(split.cpu_seconds.values()) < 0.1 * split.seconds:
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

    return [f"removed container {name}" for project in (PROJECT, CPU_PROJECT)
            for name in compose.down(project)]
