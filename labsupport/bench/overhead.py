"""The same work native, in a lab container and in a microVM: what does the box cost?

Two workloads, both run by the same static /bin/busybox everywhere:

* CPU - ``dd`` streams N MiB of zeros into ``md5sum`` (pure computation);
* I/O - ``dd`` writes N MiB to a file with ``conv=fsync`` (so the data
  reaches the disk), then reads it back.

Each trial is timed *inside* its box by the workload's own shell, from the
box's ``/proc/uptime`` (the one clock every box can read: a container may
not call ``adjtimex``, and busybox's ``date`` has no sub-second field), so a
container's ``exec`` or a guest's boot is not counted - only the work. That
clock ticks in hundredths of a second, so each workload is sized to take
tenths of a second natively at least. The container is started
once and each trial ``exec``s into it; the microVM is booted once and
runs each trial through its guest agent (labsupport.vm.agent), writing to a
virtio-blk disk. Rounds interleave all three.

What the ratios mean: a container's processes are ordinary host processes,
so its CPU ratio should be about 1. A VM's CPU ratio under KVM is also
about 1 (the guest's instructions run on the CPU); under TCG - as on this
lab's reference machine - every guest instruction is *translated* by QEMU,
so that ratio measures emulation, not the price of virtualization itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Optional

from labsupport import container, ownership
from labsupport.bench import instances
from labsupport.bench.result import BenchResult
from labsupport.bench.runner import Peer, run_peers
from labsupport.kernel.errors import LabError
from labsupport.vm.agent import GUEST_DISK, GuestAgent

ROUNDS, QUICK_ROUNDS = 5, 2
CPU_MIB, QUICK_CPU_MIB = 256, 64
IO_MIB, QUICK_IO_MIB = 256, 64
NATIVE, CONTAINER = "native (host)", "lab container"
BUSYBOX = "/bin/busybox"
MARKER = "LAB-ELAPSED"

#: Prints "LAB-ELAPSED <start> <end>" around the work: the box's own /proc/uptime, in seconds.
TIMED = f"""stamp() {{ {BUSYBOX} cut -d' ' -f1 /proc/uptime; }}
cd "$1" || exit 3
a=$(stamp)
@WORK@
b=$(stamp)
echo "{MARKER} $a $b"
"""


def cpu_work(mib: int) -> str:
    return f"{BUSYBOX} dd if=/dev/zero bs=1048576 count={mib} 2>/dev/null | {BUSYBOX} md5sum > /dev/null"


def io_work(mib: int) -> str:
    return (f"{BUSYBOX} dd if=/dev/zero of=labio bs=1048576 count={mib} conv=fsync 2>/dev/null"
            f" && {BUSYBOX} dd if=labio of=/dev/null bs=1048576 2>/dev/null; {BUSYBOX} rm -f labio")


def elapsed(output: str) -> float:
    """Seconds between the two stamps the script printed."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            start, end = line.split()[1:3]
            return float(end) - float(start)
    raise LabError(f"The workload printed no timing; its output was: {output.strip()[-300:]!r}")


def script(work: str) -> str:
    return TIMED.replace("@WORK@", work)


# -- where the work runs -------------------------------------------------------------

def native_trial(work: str, directory: Path) -> Callable[[], float]:
    def trial() -> float:
        done = subprocess.run([BUSYBOX, "sh", "-c", script(work), "sh", str(directory)],
                              capture_output=True, text=True, timeout=600)
        return elapsed(done.stdout + done.stderr)
    return trial


def container_trial(work: str, cid: str) -> Callable[[], float]:
    def trial() -> float:
        # Its own root (an overlay whose upper layer is on the host's disk), not a tmpfs.
        done = container.exec_in(cid, [BUSYBOX, "sh", "-c", script(work), "sh", "/root"], timeout=600)
        return elapsed(done.stdout + done.stderr)
    return trial


def guest_trial(work: str, agent: GuestAgent) -> Callable[[], float]:
    def trial() -> float:
        return elapsed(agent.run(f"set -- {GUEST_DISK}\n" + script(work)))
    return trial


def run(rounds: Optional[int] = None, quick: bool = False, progress: Optional[bool] = None) -> BenchResult:
    quick = quick or bool(os.environ.get("LAB_FAST"))
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    cpu_mib, io_mib = (QUICK_CPU_MIB, QUICK_IO_MIB) if quick else (CPU_MIB, IO_MIB)
    workloads = {f"CPU: md5sum of {cpu_mib} MiB": cpu_work(cpu_mib),
                 f"I/O: write+fsync {io_mib} MiB, read back": io_work(io_mib)}
    scratch = ownership.temp_dir("overhead")
    cid: Optional[str] = None
    agent: Optional[GuestAgent] = None
    try:
        cid = instances.start_container()
        container.exec_in(cid, [BUSYBOX, "mkdir", "-p", "/root"])
        agent = GuestAgent.start(disk_mib=io_mib * 2 + 64)
        guest = f"microVM ({agent.accelerator.upper()})"
        peers = []
        for group, work in workloads.items():
            peers += [Peer(NATIVE, native_trial(work, scratch), group),
                      Peer(CONTAINER, container_trial(work, cid), group),
                      Peer(guest, guest_trial(work, agent), group)]
        result = run_peers(peers, rounds, name="overhead", unit="s", baseline=NATIVE,
                           title="The same work: native, in a lab container, in a microVM",
                           warmup=0 if quick else 1, progress=progress, names_accelerator=True)
    finally:
        if agent is not None:
            agent.stop()
        if cid is not None:
            instances.remove_containers([cid])
        shutil.rmtree(scratch, ignore_errors=True)
    result.settings.update(note=emulation_note(result), quick=quick, cpu_mib=cpu_mib, io_mib=io_mib,
                           guest_accelerator=agent.accelerator,
                           io_targets={NATIVE: "a lab directory on the host's disk",
                                       CONTAINER: "the container's root (overlay, upper on the host's disk)",
                                       guest: "ext4 on a virtio-blk disk (a raw file on the host's disk)"})
    return result


def emulation_note(result: BenchResult) -> str:
    """What the VM's ratio means on the machine that measured it."""
    if result.machine.get("accelerator") == "tcg":
        return ("TCG: QEMU translates every guest instruction, so the VM's CPU ratio measures "
                "emulation, not virtualization; under KVM it would be close to 1.")
    return "KVM: the guest's instructions run on the CPU itself; what remains is the hypervisor's exits."


def report(result: BenchResult) -> str:
    return str(result)  # the caption carries the note on emulation
