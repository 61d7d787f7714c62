"""VM start-up side by side: the microVM untuned and tuned, and the full Debian guest to SSH.

Every figure is seconds from QEMU's launch to a sign of life the guest gave
itself - /init's marker on the serial console, or sshd's banner through the
forwarded port - and the result names the accelerator (KVM or TCG), since
the two differ by an order of magnitude.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from labsupport import ownership
from labsupport.bench import machine, tuning
from labsupport.bench.result import BenchResult, PeerInfo
from labsupport.bench.runner import Peer, run_peers
from labsupport.kernel.errors import LabError
from labsupport.vm import debian_image, fullvm, vagrant

ROUNDS, QUICK_ROUNDS = 3, 1
GROUP = "launch to a sign of life"
MICRO_UNTUNED, MICRO_TUNED, FULL = "microVM untuned (-M pc)", "microVM tuned", "full Debian VM to SSH"


def full_vm_seconds(image: debian_image.DiskImage) -> float:
    """One boot of the full guest to its SSH banner; the guest is then switched off."""
    guest = fullvm.boot(image)
    try:
        assert guest.ssh_ready is not None
        return guest.ssh_ready.seconds
    finally:
        guest.vm.stop()


def peers(full: bool = True) -> list[Peer]:
    steps = tuning.steps()
    untuned, tuned = steps[0][1], steps[-1][1]
    chosen = [Peer(MICRO_UNTUNED, lambda: tuning.boot_seconds(untuned), GROUP),
              Peer(MICRO_TUNED, lambda: tuning.boot_seconds(tuned), GROUP)]
    if full:
        image = debian_image.build()
        chosen.append(Peer(FULL, lambda: full_vm_seconds(image), GROUP))
    return chosen


def run(rounds: Optional[int] = None, quick: bool = False, progress: Optional[bool] = None,
        full: bool = True) -> BenchResult:
    """All VM peers, interleaved; ``quick`` (or LAB_FAST) runs one round without warm-up."""
    quick = quick or bool(os.environ.get("LAB_FAST"))
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    return run_peers(peers(full), rounds, name="vms", unit="s", baseline=MICRO_UNTUNED,
                     title="VM start-up: launch to /init's marker, or to sshd's banner",
                     warmup=0 if quick else 1, progress=progress, names_accelerator=True)


def report(result: BenchResult) -> str:
    return str(result)


#: Where ``record_vagrant`` keeps its rounds (kept across runs, for notebook 13's error bars).
VAGRANT_FILE = ownership.WORK_DIR / "bench" / "vagrant.json"


def record_vagrant(timed: Sequence[vagrant.Timed], path: Path = VAGRANT_FILE) -> BenchResult:
    """Add one round of timings to the lab's Vagrant benchmark result (kept across runs).

    Each ``vagrant up``/``ssh``/``destroy`` is one sample of its own peer, so
    repeated runs build the spread that notebook 13 draws as error bars.
    """
    try:
        result = BenchResult.load(path)
    except LabError:
        result = BenchResult(
            name="vagrant", title="A Vagrant VM (libvirt): boot to SSH, a command, removal",
            unit="s", peers=[], samples={}, order=[], machine=machine.facts(),
            started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            names_accelerator=True)
    for one in timed:
        step = one.command.split()[1]
        if step not in result.samples:
            result.peers.append(PeerInfo(step, f"vagrant {step}", "Vagrant VM"))
            result.samples[step] = []
        result.samples[step].append(round(one.seconds, 3))
        result.seconds += one.seconds
    result.order.append([one.command.split()[1] for one in timed])
    result.save(path)
    return result
