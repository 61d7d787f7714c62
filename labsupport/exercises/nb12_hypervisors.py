"""Notebook 12 (hypervisors): checks that ask the machine itself, not the notebook.

Exercise 1 compares the learner's answer with a real accelerator probe (a
tiny guest run through /dev/kvm); exercise 2 looks for a QEMU the lab
started with the microvm machine type and reads its memory from /proc.
"""
from __future__ import annotations

import psutil

from .. import ownership
from ..kvm import probe_accelerator
from . import Verdict, exercise, hint, passed
from .workdir import exercise_dir

ANSWER_FILE = "accelerator.txt"


@exercise("12", 1, "Which accelerator really runs guests here")
def names_the_accelerator() -> Verdict:
    path = exercise_dir("12") / ANSWER_FILE
    if not path.is_file():
        return hint(f"Write your answer (one word) into {path}.")
    answer = path.read_text().strip().lower()
    probe = probe_accelerator()
    if answer == probe.accelerator:
        return passed(f"Yes: {probe.accelerator.upper()} - {probe.reason}")
    return hint("Not what the probe found. A /dev/kvm that exists is not yet a hypervisor that "
                "runs a stock kernel: look at what the probe and the doctor's kvm row say.")


def _lab_qemus() -> list[psutil.Process]:
    found = []
    for pid in ownership.lab_processes():
        try:
            proc = psutil.Process(pid)
            if proc.name().startswith("qemu-system"):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@exercise("12", 2, "A microVM left running, and what it costs")
def microvm_is_running() -> Verdict:
    qemus = _lab_qemus()
    if not qemus:
        return hint("No QEMU started by the lab is running right now: start one that stays up "
                    "(a VM outside a with-block), then check.")
    for proc in qemus:
        argv = proc.cmdline()
        if "microvm" in argv and "-smp" in argv and int(argv[argv.index("-smp") + 1]) >= 2:
            pss = proc.memory_full_info().pss / 2 ** 20
            return passed(f"QEMU PID {proc.pid} runs a 2-vCPU microVM; PSS {pss:.0f} MiB "
                          "(guest RAM it touched + the translation cache + QEMU itself).")
    return hint("A lab QEMU runs, but not a microvm machine with at least two vCPUs: "
                "look at the VMConfig fields.")
