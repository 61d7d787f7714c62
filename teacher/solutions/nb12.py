"""Notebook 12 (hypervisors): the probed accelerator written down, an idling 2-vCPU microVM,
the devices benchmark kept and the device that gained more from virtio named."""
from __future__ import annotations

from labsupport import vm
from labsupport.bench import devices, latest
from labsupport.course.exercises.nb12_hypervisors import ANSWER_FILE, DEVICES_ANSWER_FILE
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.vm.kvm import probe_accelerator

#: VMs this notebook's solutions leave running.
running: list[vm.VM] = []


def solve(k: int) -> None:
    if k == 1:
        (exercise_dir("12") / ANSWER_FILE).write_text(probe_accelerator().accelerator + "\n")
    elif k == 2:
        # guest_config: a microvm with 2 vCPUs whose guest idles until it is stopped.
        machine = vm.VM.start(vm.guest_config(vm.fetch_kernel()))
        machine.wait_for(vm.READY_MARKER, timeout=120, fail_on=(vm.FAILED_MARKER,))
        running.append(machine)
    elif k == 3:
        result = devices.run(quick=True, progress=False)
        latest.keep(result)
        gains = devices.gains(result)
        (exercise_dir("12") / DEVICES_ANSWER_FILE).write_text(max(gains, key=gains.__getitem__) + "\n")
