"""Notebook 12 (hypervisors): checks that ask the machine itself, not the notebook.

Exercise 1 watches the threads of the learner's idle QEMU (a type-2 hypervisor is a host
process) beside their prediction of its cost; exercise 2 looks for a QEMU the lab started with the
microvm machine type and reads its memory from /proc; exercise 3 puts the learner's
predicted virtio gains beside the devices benchmark they ran afterwards and kept.
"""
from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import psutil

from labsupport import ownership
from labsupport.bench import latest
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.namespaces import chroot

#: How long exercise 1 watches the idle guest's QEMU.
WATCH_SECONDS = 2.0


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of one process, by thread id."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that just ended
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


@exercise("12", 1, "Predict what an idle guest costs the host, then watch its QEMU")
def hypervisor_is_a_process() -> Verdict:
    guess = predictions.required("12", 1, "for how many host threads an idle 2-vCPU guest's QEMU "
                                 "runs, and how much of a host core they use while the guest "
                                 "does nothing")
    if isinstance(guess, Verdict):
        return guess
    held = held_microvms()
    if not held:
        return hint("No microVM of yours is running: start the 2-vCPU microVM exercise 2 asks for, "
                    "let it reach its idle shell, then check.")
    before, start = _thread_cpu(held[0]), time.monotonic()
    time.sleep(WATCH_SECONDS)
    after, span = _thread_cpu(held[0]), time.monotonic() - start
    use = sorted(((after[t] - before.get(t, 0.0)) / span for t in after), reverse=True)
    busiest = ", ".join(f"{u:.0%}" for u in use[:3])
    return passed(predictions.beside(
        guess, f"QEMU PID {held[0]} runs {len(after)} threads; over {WATCH_SECONDS:.0f} s they used "
        f"{sum(use):.0%} of a core in all (the busiest: {busiest})") + " To the host kernel a "
        "vCPU is one thread among QEMU's others, scheduled, limited and killed like any thread: "
        "a type-2 hypervisor is a program. A guest that idles still ticks its clock and polls its "
        "devices, and each tick costs the host.")


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


@exercise("12", 3, "Predict virtio's gains for the next run, then measure and keep it")
def predicted_virtio_gains() -> Verdict:
    from labsupport.bench.devices import gains  # the VM code only when this check runs

    guess = predictions.required("12", 3, "- two numbers, the disk's gain then the NIC's (xN of "
                                 "virtio over the emulated device) - for your next devices run")
    if isinstance(guess, Verdict):
        return guess
    numbers = guess.numbers()
    if len(numbers) < 2:
        return hint(f"Your prediction {guess.first!r} holds {len(numbers)} number(s): give two, the "
                    "disk's gain first, then the NIC's (predict again).")
    result = latest.latest("devices")
    if result is None:
        return hint("This machine keeps no devices benchmark yet: run it now and keep the result "
                    "with latest.keep(...) from labsupport.bench.")
    started = datetime.fromisoformat(result.started).timestamp() if result.started else 0.0
    late = predictions.made_before(guess, started, "The kept devices result")
    if late:
        return late
    measured = gains(result)
    if set(measured) != {"disk", "nic"}:
        return hint("The kept devices result lacks the disk or the NIC: run the benchmark again.")
    accelerator = str(result.machine.get("accelerator", "?")).upper()
    rows = [f"{kind} x{measured[kind]:.2f} (you: x{said:g})"
            for kind, said in zip(("disk", "nic"), numbers)]
    return passed(predictions.beside(guess, f"virtio's gain on {accelerator}: {'; '.join(rows)}")
                  + " Each gap follows how many register accesses one unit of work costs the "
                  "emulated device - and, from run to run, how noisy a shared machine is.")


def reset() -> list[str]:
    """What notebook 12's exercises leave besides the exercise directory, removed (``reset 12``)."""
    from labsupport.vm import qemu

    pids = held_microvms()
    scratch = [qemu.scratch_of(pid) for pid in pids]  # read while QEMU still runs
    done = [f"stopped QEMU PID {p}" for p in ownership.kill_processes(pids)]
    return done + [f"removed {s}" for s in chroot.remove_scratch(*[s for s in scratch if s])]
