"""Notebook 13 (VMs vs containers): a benchmark the learner ran, a VM they booted and weighed,
containers they scaled out.

Every check reads the real state: the kept benchmark result (its rounds, its
date against the code's), the background VMs under /run/labsupport/vms and
QEMU's memory in /proc, the running containers and their processes' PSS. Exercise 4
puts the learner's prediction of containers per VM beside the weighed figure.
"""
from __future__ import annotations

import re
import statistics

from labsupport.bench import instances, latest, suite
from labsupport.bench.result import BenchResult
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, resets
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel.errors import LabError
from labsupport.vm import background

MIN_ROUNDS = 3
RESULT_FILE = "result.json"
PSS_FILE = "vm_pss.txt"
PSS_TOLERANCE = 0.2
SCALE_PREFIX = "ex13-"
SCALE_COUNT = 5


@exercise("13", 1, "A benchmark of your own, with enough rounds to see the spread")
def ran_a_benchmark() -> Verdict:
    path = exercise_dir("13") / RESULT_FILE
    if not path.is_file():
        return hint(f"Run one of the VM-vs-container benchmarks ({', '.join(suite.NAMES)}) from a "
                    f"terminal and save its result as JSON at {path} (`python -m labsupport bench "
                    "--help` lists the options).")
    try:
        result = BenchResult.load(path)
    except LabError as err:
        return hint(f"{path} is not a benchmark result the lab can read: {err}")
    if result.name not in suite.NAMES:
        return hint(f"That is the {result.name!r} benchmark; pick one that compares VMs and "
                    f"containers: {', '.join(suite.NAMES)}.")
    rounds = result.settings.get("rounds", 0)
    if rounds < MIN_ROUNDS:
        return hint(f"Your result has {rounds} round(s): a spread (p25-p75) needs at least "
                    f"{MIN_ROUNDS} - look at the options of `bench`.")
    if not suite.is_fresh(result):
        return hint("Your result is older than the benchmark's code: run it again.")
    return passed(_summary(result))


def _summary(result: BenchResult) -> str:
    widest = max(result.peers, key=lambda p: result.summary(p.name).iqr)
    spread = result.summary(widest.name)
    return (f"{result.name}: {result.settings['rounds']} rounds on "
            f"{str(result.machine.get('accelerator')).upper()}; the widest spread is "
            f"{widest.name}: {spread.p25:.3g}-{spread.p75:.3g} {result.unit} around {spread.median:.3g}.")


@exercise("13", 2, "A background microVM, and what it weighs")
def weighed_a_background_vm() -> Verdict:
    running = [vm for vm in background.ls() if vm.get("status") == "running" and "pss_mib" in vm]
    if not running:
        return hint("No background microVM is running: the lab's command line can boot one that "
                    "keeps running after the command ends (`python -m labsupport --help`).")
    path = exercise_dir("13") / PSS_FILE
    if not path.is_file():
        return hint(f"A VM runs; now write its PSS in MiB (one number) into {path}.")
    found = re.search(r"\d+(?:\.\d+)?", path.read_text())
    if found is None:
        return hint(f"{path} holds no number: write the PSS in MiB, e.g. as `vm ls` shows it.")
    answer = float(found.group())
    for vm in running:
        if abs(answer - vm["pss_mib"]) <= PSS_TOLERANCE * vm["pss_mib"]:
            return passed(f"{vm['name']}: QEMU PID {vm['qemu_pid']} has {vm['pss_mib']:.0f} MiB PSS "
                          f"now ({vm['accelerator'].upper()}) - for a guest that does nothing.")
    return hint(f"{answer:g} MiB is not what any running background VM's QEMU holds now: "
                "measure its PSS (not its guest RAM setting) and write that.")


def scaled_containers() -> list[str]:
    """Ids of running containers named ex13-*."""
    from labsupport import container

    return [c["id"] for c in container.list_containers(all_=False)
            if str(c.get("name", "")).startswith(SCALE_PREFIX)]


@exercise("13", 3, "Scale out: several containers for less than one VM")
def scaled_out() -> Verdict:
    cids = scaled_containers()
    if len(cids) < SCALE_COUNT:
        return hint(f"{len(cids)} running container(s) named {SCALE_PREFIX}*: scale out to at least "
                    f"{SCALE_COUNT} idle busybox containers with that name prefix.")
    total = sum(((own + shim).pss for own, shim in map(_memory, cids)), 0.0)
    memory = latest.latest("memory")
    vm_peer = "idle PSS / microVM (idle at its shell)"
    if memory is None or vm_peer not in memory.samples:
        return hint("No microVM memory figure is kept to compare with: run the memory benchmark "
                    "(the notebook's Try it section does).")
    one_vm = memory.summary(vm_peer).median
    if total >= one_vm:
        return hint(f"Your {len(cids)} containers hold {total:.0f} MiB PSS, more than one idle "
                    f"microVM ({one_vm:.0f} MiB): are they idle busybox containers?")
    return passed(f"{len(cids)} containers, runtime shims included: {total:.0f} MiB PSS in all; "
                  f"one idle microVM: {one_vm:.0f} MiB ({memory.machine.get('accelerator', '?').upper()}).")


@exercise("13", 4, "Predict how many containers weigh as much as one VM, then weigh them")
def containers_per_vm() -> Verdict:
    guess = predictions.required("13", 4, "for how many idle busybox containers, runtime shims "
                                 "included, weigh as much (PSS) as one idle microVM")
    if isinstance(guess, Verdict):
        return guess
    cids = scaled_containers()
    if len(cids) < SCALE_COUNT:
        return hint(f"Weigh the containers of exercise 3: at least {SCALE_COUNT} running containers "
                    f"named {SCALE_PREFIX}* are needed, {len(cids)} run now.")
    memory = latest.latest("memory")
    vm_peer = "idle PSS / microVM (idle at its shell)"
    if memory is None or vm_peer not in memory.samples:
        return hint("No microVM memory figure is kept to compare with: run the memory benchmark "
                    "(the notebook's Try it section does).")
    each = statistics.median((own + shim).pss for own, shim in map(_memory, cids))
    if each <= 0:
        return hint(f"The {SCALE_PREFIX}* containers stopped while they were weighed: run them again.")
    one_vm = memory.summary(vm_peer).median
    return passed(predictions.beside(
        guess, f"one idle container weighs {each:.1f} MiB PSS with its shim, one idle microVM "
        f"{one_vm:.0f} MiB ({memory.machine.get('accelerator', '?').upper()}): about "
        f"{one_vm / each:.0f} containers per VM") + " A VM carries a kernel, its page cache and "
        "QEMU itself; a container carries only its own processes.")


def _memory(cid: str) -> tuple[instances.Memory, instances.Memory]:
    try:
        return instances.container_memory(cid)
    except LabError:
        return instances.Memory(0, 0), instances.Memory(0, 0)  # it stopped meanwhile


def reset() -> list[str]:
    """What notebook 13's exercises leave besides the exercise directory, removed (``reset 13``)."""
    from labsupport.vm import background

    done = []
    for vm in background.ls():
        background.stop(vm["name"])
        done.append(f"stopped VM {vm['name']}")
    return done + resets.remove_containers_named(SCALE_PREFIX)
