"""Notebook 12 (hypervisors): checks that ask the machine itself, not the notebook.

Exercise 1 compares the learner's answer with a real accelerator probe (a
tiny guest run through /dev/kvm); exercise 2 looks for a QEMU the lab
started with the microvm machine type and reads its memory from /proc;
exercise 3 compares the learner's answer with the devices benchmark this
machine kept (virtio vs emulated disk and NIC, measured in the guest).
"""
from __future__ import annotations

import psutil

from labsupport import ownership
from labsupport.bench import latest
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.namespaces import chroot
from labsupport.vm.kvm import probe_accelerator

ANSWER_FILE = "accelerator.txt"
DEVICES_ANSWER_FILE = "devices.txt"


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


def held_microvms() -> list[int]:
    """Idle microVMs that a Python session holds, as exercise 2 asks: not a guest running a
    script (``lab.run=``, as the tests' guests do), nor a background VM of ``labsupport vm
    boot``, whose keeper belongs to notebook 13."""
    held = []
    for proc in _lab_qemus():
        try:
            argv, parent = proc.cmdline(), proc.parent()
            append = argv[argv.index("-append") + 1] if "-append" in argv else ""
            keeper = " ".join(parent.cmdline()) if parent else ""
            if ("microvm" in argv and "lab.run=" not in append
                    and "labsupport.vm.background" not in keeper):
                held.append(proc.pid)
        except psutil.Error:
            continue
    return held


@exercise("12", 2, "A microVM left running, and what it costs")
def microvm_is_running() -> Verdict:
    held = set(held_microvms())  # not notebook 13's background VMs, nor a test's guest
    qemus = [proc for proc in _lab_qemus() if proc.pid in held]
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


@exercise("12", 3, "Where paravirtualization paid most here")
def names_the_bigger_virtio_gain() -> Verdict:
    from labsupport.bench.devices import gains  # the VM code only when this check runs

    result = latest.latest("devices")
    if result is None:
        return hint("This machine keeps no devices benchmark yet: keep your measurement with "
                    "latest.keep(...) from labsupport.bench, then check again.")
    path = exercise_dir("12") / DEVICES_ANSWER_FILE
    if not path.is_file():
        return hint(f"Write your answer (disk or nic) into {path}.")
    answer, measured = path.read_text().strip().lower(), gains(result)
    if set(measured) != {"disk", "nic"}:
        return hint("The kept devices result lacks the disk or the NIC: run the benchmark again.")
    winner = max(measured, key=measured.__getitem__)
    accelerator = str(result.machine.get("accelerator", "?")).upper()
    if answer == winner:
        return passed(f"Yes: virtio gave the NIC x{measured['nic']:.2f} and the disk "
                      f"x{measured['disk']:.2f} here ({accelerator}): the gap follows how many register "
                      "accesses each unit of work costs the emulated device.")
    return hint("Not what the kept result shows: compare the two (xN) ratios of virtio over the "
                "emulated device, not the MiB/s themselves.")


def reset() -> list[str]:
    """What notebook 12's exercises leave besides the exercise directory, removed (``reset 12``)."""
    from labsupport.vm import qemu

    pids = held_microvms()
    scratch = [qemu.scratch_of(pid) for pid in pids]  # read while QEMU still runs
    done = [f"stopped QEMU PID {p}" for p in ownership.kill_processes(pids)]
    return done + [f"removed {s}" for s in chroot.remove_scratch(*[s for s in scratch if s])]
