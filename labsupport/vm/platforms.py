"""What a guest needs from QEMU and Debian, one row per CPU architecture.

Callers never ask which architecture they got: ``VMConfig`` and the guest
builders look up the row of the guest's architecture (the host's, unless a
caller asks for another) and the rest of the code reads the same fields
whatever the row.

What differs between the rows, and why:

* **machine** - x86 has ``microvm``, a machine without PCI or firmware made
  for direct kernel boots. ARM's ``virt`` already is one: no BIOS at all, the
  hardware is described to the kernel by a device tree QEMU writes, and it
  offers virtio over memory-mapped I/O as microvm does.
* **console** - x86's first serial port is the 16550 ``ttyS0``; ``virt`` has a
  PL011 UART, ``ttyAMA0``.
* **CPU under TCG** - ``virt`` defaults to a 32-bit Cortex-A15, which cannot
  run a 64-bit kernel at all; ``-cpu max`` gives every feature TCG emulates.
  Debian's arm64 kernel signs its return addresses (pointer authentication),
  and TCG computes the architecture's QARMA cipher instruction by
  instruction; ``pauth-impdef=on`` keeps the feature but swaps in QEMU's own
  cheap hash - the one ARM tuning step worth having under TCG (a boot to
  the ready marker: about 10 s with QARMA, under 5 s without).
* **the clock under TCG** - an x86 guest calibrates its time-stamp counter
  against emulated timers and may hang doing so, hence ``tsc_early_khz``; an
  ARM guest reads its frequency from the generic timer's register
  (CNTFRQ_EL0), so there is nothing to tell it.
"""
from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Optional

from labsupport.kernel.errors import LabError


@dataclass(frozen=True)
class Platform:
    """One architecture's names and choices for a directly booted QEMU guest."""

    arch: str  # as ``uname -m`` says it
    debian_arch: str  # as dpkg and the archive say it
    qemu: str  # the emulator binary
    qemu_package: str  # the Debian package that holds it
    machine: str  # QEMU's smallest machine for a direct kernel boot
    console: str  # the first serial port, as the guest kernel names it
    kernel_package: str  # Debian's metapackage that points at the current kernel
    tcg_cpu: Optional[str] = None  # -cpu under TCG; None: QEMU's default
    tsc_hint: bool = False  # tell the kernel the TSC rate (tsc_early_khz) under TCG


PLATFORMS = {
    "x86_64": Platform("x86_64", "amd64", "qemu-system-x86_64", "qemu-system-x86", "microvm",
                       "ttyS0", "linux-image-amd64", tsc_hint=True),
    "aarch64": Platform("aarch64", "arm64", "qemu-system-aarch64", "qemu-system-arm", "virt",
                        "ttyAMA0", "linux-image-arm64", tcg_cpu="max,pauth-impdef=on"),
}


def of(arch: Optional[str] = None) -> Platform:
    """The row for ``arch`` (``uname -m`` spelling), or for this host when None."""
    name = arch or _platform.machine()
    if name not in PLATFORMS:
        raise LabError(f"The lab boots guests of {' and '.join(PLATFORMS)} only, not {name}: "
                       "run it on one of those.")
    return PLATFORMS[name]


def host_or_x86() -> Platform:
    """This host's row; x86_64's on an architecture the lab does not know.

    For names fixed at import (the emulator to look for, the kernel package):
    an unknown architecture is reported by the doctor in one sentence, and
    ``of()`` refuses it when a guest is really started.
    """
    return PLATFORMS.get(_platform.machine(), PLATFORMS["x86_64"])


def is_host(arch: Optional[str]) -> bool:
    """True when a guest of ``arch`` runs this host's own instruction set."""
    return arch is None or arch == _platform.machine()
