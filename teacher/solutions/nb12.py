"""Notebook 12 (hypervisors): an idling 2-vCPU microVM and its threads counted; virtio's gains
predicted, then the devices benchmark run and kept."""
from __future__ import annotations

from labsupport import vm
from labsupport.bench import devices, latest
from labsupport.course.predictions import predict

#: VMs this notebook's solutions leave running.
running: list[vm.VM] = []


def _microvm() -> None:
    if running:
        return
    # guest_config: a microvm with 2 vCPUs whose guest idles until it is stopped.
    machine = vm.VM.start(vm.guest_config(vm.fetch_kernel()))
    machine.wait_for(vm.READY_MARKER, timeout=120, fail_on=(vm.FAILED_MARKER,))
    running.append(machine)


def solve(k: int) -> None:
    if k == 1:
        predict("12", 1, "3 threads, one per vCPU and one for the devices; almost no CPU when idle")
        _microvm()
    elif k == 2:
        _microvm()
    elif k == 3:
        predict("12", 3, "disk x1.5, NIC x3")
        latest.keep(devices.run(quick=True, progress=False))
