"""A microVM that stays up and runs one shell script after another: work measured inside the guest.

``run_in_guest`` boots a guest per script, which is right for a test run
and wrong for a benchmark: every figure would include a boot. Here the
guest boots once and its script is a small agent that watches a shared
directory (virtio-9p): the host drops ``job-N.sh`` in, the guest runs it
and leaves ``out-N`` - so a benchmark can interleave guest trials with
native and container ones, round by round.

The guest also gets a scratch disk: a raw file on the host's disk behind a
virtio-blk device, formatted ext4 inside, so a write and its fsync travel
the way a VM's disk I/O does (guest filesystem -> virtio queue -> QEMU ->
the host's file) rather than into the guest's tmpfs.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from labsupport import ownership
from labsupport.kernel.errors import LabError
from labsupport.vm import initramfs
from labsupport.vm.guest_kernel import fetch_kernel
from labsupport.vm.qemu import VM, Share

SHARE_TAG = "labagent"
GUEST_SHARE = Path("/mnt/labagent")
GUEST_DISK = Path("/mnt/scratch")
POLL = "0.05"

AGENT = f"""# The lab's guest agent: run each job the host leaves in the share, in order.
share={GUEST_SHARE}
/sbin/modprobe virtio_blk
mkdir -p {GUEST_DISK}
if [ -b /dev/vda ]; then
    mkfs.ext4 -q -F /dev/vda && mount /dev/vda {GUEST_DISK} || {{ echo "no scratch disk" > $share/agent-failed; exit 3; }}
fi
touch $share/agent-ready
n=1
while :; do
    while [ ! -e $share/job-$n.sh ]; do sleep {POLL}; done
    sh $share/job-$n.sh > $share/out-$n.part 2>&1
    mv $share/out-$n.part $share/out-$n
    n=$((n + 1))
done
"""


class GuestAgent:
    """A booted microVM that runs scripts on request: ``run(script) -> its output``."""

    def __init__(self, machine: VM, share: Path) -> None:
        self.vm = machine
        self._share = share
        self._jobs = 0

    @classmethod
    def start(cls, disk_mib: int = 0, memory_mb: int = 512, cpus: int = 2,
              timeout: float = 180) -> "GuestAgent":
        """Boot the guest; with ``disk_mib`` it also gets an ext4 scratch disk at /mnt/scratch."""
        share = ownership.temp_dir("agent")
        disk = share / "scratch.disk" if disk_mib else None
        try:
            (share / "agent.sh").write_text(AGENT)
            config = initramfs.guest_config(
                fetch_kernel(), run=GUEST_SHARE / "agent.sh", memory_mb=memory_mb, cpus=cpus,
                shares=[Share(SHARE_TAG, share, writable=True, guest_path=GUEST_SHARE)])
            if disk is not None:
                with open(disk, "wb") as raw:
                    raw.truncate(disk_mib * 2 ** 20)
                config = dataclasses.replace(config, extra_args=(
                    "-drive", f"file={disk},format=raw,if=none,id=scratch",
                    "-device", "virtio-blk-device,drive=scratch"))
            machine = VM.start(config)
        except BaseException:
            cls._remove(share)
            raise
        agent = cls(machine, share)
        try:
            agent._wait_ready(timeout)
        except BaseException:
            agent.stop()
            raise
        return agent

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not (self._share / "agent-ready").exists():
            failed = self._share / "agent-failed"
            if failed.exists() or not self.vm.is_running():
                why = failed.read_text().strip() if failed.exists() else "QEMU exited"
                raise LabError(f"The guest agent did not start ({why}); " + self.vm._describe_tail())
            if time.monotonic() > deadline:
                raise LabError(f"The guest agent was not ready within {timeout:g} s; "
                               + self.vm._describe_tail())
            time.sleep(0.05)

    @property
    def accelerator(self) -> str:
        return self.vm.accelerator

    def run(self, script: str, timeout: float = 600) -> str:
        """Run ``script`` (sh) in the guest, from /, and return what it printed."""
        self._jobs += 1
        job = self._share / f"job-{self._jobs}.sh"
        job.with_suffix(".part").write_text(script)
        job.with_suffix(".part").rename(job)  # the guest never sees half a script
        out = self._share / f"out-{self._jobs}"
        deadline = time.monotonic() + timeout
        while not out.exists():
            if not self.vm.is_running():
                raise LabError("The guest stopped while it ran a job; " + self.vm._describe_tail())
            if time.monotonic() > deadline:
                raise LabError(f"The guest did not finish a job within {timeout:g} s.")
            time.sleep(0.01)
        return out.read_text(errors="replace")

    def stop(self) -> None:
        """Pull the guest's plug (nothing in it needs saving) and remove its share and disk."""
        self.vm.stop()
        self._remove(self._share)

    @staticmethod
    def _remove(share: Path) -> None:
        shutil.rmtree(share, ignore_errors=True)  # the disk file lies in it

    def __enter__(self) -> "GuestAgent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
