"""The facts that make a benchmark's figures mean something: which machine, which kernel.

A median of "2.1 ms" says nothing without the machine it was measured on,
and a VM figure says nothing without the accelerator (KVM or TCG emulation,
often 10-50 times apart). So every result carries these facts, and every
chart names them in its caption.
"""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

from labsupport.cgroups import detect_layout
from labsupport.kernel.errors import LabError
from labsupport.vm import kvm


def _first_value(path: str, key: str) -> str:
    """The value of the first ``key: value`` (or ``key=value``) line of a /proc or /etc file."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        name, sep, value = line.replace("=", ":", 1).partition(":")
        if sep and name.strip() == key:
            return value.strip().strip('"')
    return ""


def _memory_gib() -> float:
    kib = _first_value("/proc/meminfo", "MemTotal").split()
    return round(int(kib[0]) / 1024 ** 2, 1) if kib else 0.0


def _cgroups() -> str:
    try:
        return detect_layout().summary()
    except LabError:
        return "none mounted"


@functools.lru_cache(maxsize=1)
def accelerator() -> tuple[str, str]:
    """("tcg" or "kvm", what /dev/kvm is): asked once per process, as the probe boots a
    tiny guest in a child (about 0.2 s)."""
    probe = kvm.probe_accelerator()
    device = "kvm_pvm" if probe.pvm else ("kvm" if probe.kvm_device else "absent")
    return probe.accelerator, device


def facts() -> dict[str, object]:
    """This machine, as a benchmark result records it."""
    engine, device = accelerator()
    return {
        "os": _first_value("/etc/os-release", "PRETTY_NAME") or platform.system(),
        "kernel": platform.release(),
        "cpu": _first_value("/proc/cpuinfo", "model name") or platform.machine(),
        "cores": os.cpu_count() or 0,
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "cgroups": _cgroups(),
        "accelerator": engine,
        "kvm_device": device,
    }


def describe(machine: dict[str, object], with_accelerator: bool = False) -> str:
    """One line for a caption, e.g. 'Debian 12, kernel 6.18, AMD EPYC x 2 cores, 23.5 GiB, ...'."""
    line = (f"{machine.get('os', '?')}, kernel {machine.get('kernel', '?')}, "
            f"{machine.get('cpu', '?')} x {machine.get('cores', '?')} cores, "
            f"{machine.get('memory_gib', '?')} GiB, Python {machine.get('python', '?')}, "
            f"cgroups {machine.get('cgroups', '?')}")
    if with_accelerator:
        line += f", accelerator {str(machine.get('accelerator', '?')).upper()}"
        if machine.get("kvm_device") == "kvm_pvm":
            line += " (/dev/kvm is kvm_pvm)"
    return line
