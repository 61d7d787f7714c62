"""Notebook 10 (the full container): checks that look at the learner's running containers.

The learner names them ex10-*; the checks read state.json, the cgroup files on the host,
and ask the published port and the containers themselves.
"""
from __future__ import annotations

import urllib.request
from typing import Any

from labsupport import cgroups, container
from labsupport.course.exercises import Verdict, exercise, hint, passed, resets
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel.errors import LabError


def _running(name: str) -> dict[str, Any] | None:
    try:
        current = container.state(name)
    except LabError:
        return None
    return current if current.get("status") == "running" else None


@exercise("10", 1, "Your own page on a published port")
def own_page() -> Verdict:
    web = _running("ex10-web")
    if web is None:
        return hint("There is no running container named ex10-web. Start one from busybox with a web server.")
    if not any(h == 8090 and p == 80 for _, h, p in web.get("publish", [])):
        return hint("ex10-web does not publish port 80 on 127.0.0.1:8090. Which option of run does that?")
    try:
        page = urllib.request.urlopen("http://127.0.0.1:8090/", timeout=3).read().decode(errors="replace")
    except OSError as err:
        return hint(f"Nothing answered on 127.0.0.1:8090 ({err}). Is the server inside listening on port 80, "
                    "and serving a directory that has an index.html?")
    if "hello from ex10" not in page:
        return hint("The page does not say 'hello from ex10'. The file lives inside the container: how do you "
                    "run a command in there?")
    return passed(f"127.0.0.1:8090 answered from inside ex10-web (PID {web['pid']} on the host).")


def _limit(group: str, file: str) -> str | None:
    for directory in cgroups.open_group(group).directories:
        if (directory / file).exists():
            return (directory / file).read_text().strip()
    return None


@exercise("10", 2, "A small container: 32 MiB and 10 processes")
def small_container() -> Verdict:
    small = _running("ex10-small")
    if small is None:
        return hint("There is no running container named ex10-small.")
    memory = _limit(small["cgroup"], "memory.limit_in_bytes") or _limit(small["cgroup"], "memory.max")
    pids = _limit(small["cgroup"], "pids.max")
    if memory != str(32 * 1024 * 1024):
        return hint(f"The host says ex10-small's memory limit is {memory}, not 32 MiB.")
    if pids != "10":
        return hint(f"The host says ex10-small may hold {pids} processes, not 10.")
    return passed("ex10-small's cgroup holds 32 MiB and 10 processes, as the host's cgroup files show.")


@exercise("10", 3, "Two containers that find each other by name")
def by_name() -> Verdict:
    web, db = _running("ex10-web"), _running("ex10-db")
    if web is None or db is None:
        return hint("Both ex10-web and ex10-db must be running.")
    result = container.exec_in("ex10-web", ["ping", "-c", "1", "-W", "2", "ex10-db"])
    if result.returncode != 0:
        return hint("ping ex10-db from inside ex10-web did not get an answer. Which file inside maps names "
                    "to addresses, and was ex10-db running when it was written?")
    return passed(f"ex10-web reached ex10-db at {db.get('address')} by its name.")


#: The defenses a learner may name for exercise 4, and the run options that turn each one off.
SUSPECTS = {"seccomp": {"seccomp": False}, "capabilities": {"cap_add": ["ALL"]},
            "no_new_privs": {"no_new_privileges": False}, "devices": {"device_rules": ["a *:* rwm"]},
            "masks": {"mask_paths": False}}
PREDICTION = "prediction.txt"


@exercise("10", 4, "Predict which defense stops add_key, then let the kernel decide")
def predicted_defense() -> Verdict:
    answer = exercise_dir("10", create=False) / PREDICTION
    if not answer.is_file():
        return hint(f"Write your prediction, one word of {', '.join(SUSPECTS)}, into "
                    f"{answer} - before you try anything.")
    guess = answer.read_text().strip().lower()
    if guess not in SUSPECTS:
        return hint(f"Your prediction {guess!r} is not one of {', '.join(SUSPECTS)}.")
    from labsupport.container import attacks  # builds the probe on first use

    stoppers = attacks.stopped_by("add_key", SUSPECTS)
    if guess in stoppers:
        return passed(f"You predicted {guess}. The kernel agrees: add_key was refused in a default "
                      f"container and got through once only {guess} was off.")
    return hint(f"You predicted {guess}, but with only {guess} off add_key was still refused. Does adding "
                "a key need a capability, a device or a path - or is it a whole system call that "
                "something must have taken away?")


def reset() -> list[str]:
    """What notebook 10's exercises leave besides the exercise directory, removed (``reset 10``)."""
    return resets.remove_containers_named("ex10-")
