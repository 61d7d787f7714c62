"""Appendix A (Docker under the hood): checks that run the learner's own OCI bundle under runc.

The learner writes a bundle - a config.json next to a rootfs - in
/var/lib/labsupport/exercises/A/bundle. Each check runs it with runc for real
(a lab-owned id, state directory and cgroup) and reads the answer from inside
the container, so the check trusts the kernel, not the JSON. Exercise 3 times runc
against the lab's own runner and shows the learner's prediction beside.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable

from labsupport.container import runc
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, workdir
from labsupport.process import run_command

HOSTNAME = "labbox"
MEMORY_LIMIT = 32 << 20
#: How many runs exercise 3 times each way.
TIMES = 3


def bundle() -> Path:
    """The learner's bundle (the appendix is not numbered, so its directory is called A)."""
    return workdir.EXERCISES_DIR / "A" / "bundle"


def _bundle_problem() -> Verdict | None:
    where = bundle()
    if not runc.available():
        return hint("runc is not installed on this host: `apt-get install runc`, then check again.")
    if not (where / "config.json").is_file():
        return hint(f"There is no {where / 'config.json'} yet: `runc spec` writes runc's default one.")
    try:
        spec = runc.config(where)
    except json.JSONDecodeError as err:
        return hint(f"{where / 'config.json'} is not valid JSON: {err}.")
    root = where / str(runc.lookup(spec, "root.path") or "")
    if not (root / "bin").is_dir():
        return hint(f"The bundle's root ({root}) has no /bin: a container needs programs in its root.")
    return None


def _inside(argv: list[str]) -> str | Verdict:
    result = runc.run(bundle(), argv)
    if not result.ok:
        return hint(runc.why_it_failed(result))
    return result.stdout


@exercise("A", 1, f"A bundle whose container is called {HOSTNAME} and has 32 MiB")
def hostname_and_memory() -> Verdict:
    problem = _bundle_problem()
    if problem:
        return problem
    # v1 puts the limit in memory/memory.limit_in_bytes, v2 in memory.max: print whichever exists.
    seen = _inside(["sh", "-c", "hostname; for f in /sys/fs/cgroup/memory/memory.limit_in_bytes "
                                "/sys/fs/cgroup/memory.max; do [ -r $f ] && cat $f; done; true"])
    if isinstance(seen, Verdict):
        return seen
    lines = seen.split()
    if not lines or lines[0] != HOSTNAME:
        return hint(f"Inside, hostname prints {lines[0] if lines else 'nothing'!r}. Which field of "
                    "config.json names the container's UTS namespace?")
    if str(MEMORY_LIMIT) not in lines[1:]:
        return hint(f"The hostname is right; the memory limit inside reads {' '.join(lines[1:]) or 'nothing'}. "
                    "Notebook 08's limits live under one key of config.json's linux section, in bytes.")
    return passed(f"runc ran your bundle: hostname {HOSTNAME}, memory limit {MEMORY_LIMIT} bytes - "
                  "what `docker run --hostname labbox --memory 32m` writes for runc.")


@exercise("A", 2, "A container with no capabilities at all")
def no_capabilities() -> Verdict:
    problem = _bundle_problem()
    if problem:
        return problem
    seen = _inside(["grep", "CapEff", "/proc/self/status"])
    if isinstance(seen, Verdict):
        return seen
    mask = seen.split()[-1] if seen.split() else ""
    if mask.strip("0"):
        return hint(f"Root inside still has capabilities (CapEff {mask}). Notebook 07 showed the five "
                    "sets; config.json lists each one.")
    return passed("CapEff inside is 0: root in this container may do nothing a capability guards - "
                  "`docker run --cap-drop ALL`.")


def _seconds(start: Callable[[], object], times: int) -> float:
    """Median wall time of ``start()`` over ``times`` runs."""
    taken = []
    for _ in range(times):
        began = time.perf_counter()
        start()
        taken.append(time.perf_counter() - began)
    return statistics.median(taken)


@exercise("A", 3, "Predict what runc costs per container, then time it against the lab's runner")
def runc_start_cost() -> Verdict:
    guess = predictions.required("A", 3, "for how long runc takes to run `true` in your bundle's "
                                 "container, start to removal, against the lab's own runner "
                                 "making the same namespaces")
    if isinstance(guess, Verdict):
        return guess
    problem = _bundle_problem()
    if problem:
        return problem
    first = runc.run(bundle(), ["true"])
    if not first.ok:
        return hint(runc.why_it_failed(first))
    root = bundle() / str(runc.lookup(runc.config(bundle()), "root.path"))
    with_runc = _seconds(lambda: runc.run(bundle(), ["true"]), TIMES)
    with_lab = _seconds(lambda: run_command(["true"], root=root, namespaces=["pid", "uts", "mnt", "ipc"],
                                            pivot=True, mount_proc=True), TIMES)
    return passed(predictions.beside(
        guess, f"runc: {with_runc * 1e3:.0f} ms from `runc run` to `runc delete`; the lab's runner: "
        f"{with_lab * 1e3:.0f} ms (median of {TIMES} each)") + " runc is a separate program that "
        "parses config.json, re-executes itself to set up the container, writes every cgroup file "
        "and keeps state on disk; the lab's runner forks a copy of a Python that is already running.")
