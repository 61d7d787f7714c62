"""A lab-made disk: an image file under a lab directory, attached as a loop device.

An I/O limit names a block device by its numbers (MAJ:MIN), and the lab
must not throttle or write to the machine's real disks. A loop device turns
an ordinary file into a block device (/dev/loopN), so the lab gets a disk of
its own to read and write at full speed. ``ownership.clean`` detaches any
loop device whose backing file lies in a lab directory.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Union

from labsupport import ownership
from labsupport.cgroups.limits import parse_size
from labsupport.kernel.errors import LabError, require_root


class LoopDevice:
    """An attached loop device and the sparse image file behind it."""

    def __init__(self, size: Union[str, int] = "64M") -> None:
        require_root("Attaching a loop device")
        self.size = parse_size(size)
        self.scratch = ownership.temp_dir("disk")
        self.image = self.scratch / "disk.img"
        with open(self.image, "wb") as image:
            image.truncate(self.size)  # sparse: no disk space used until written
        result = subprocess.run(["losetup", "--find", "--show", str(self.image)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise LabError(f"losetup could not attach a loop device: {result.stderr.strip()} "
                           "(is the loop module loaded? modprobe loop).")
        self.path = Path(result.stdout.strip())

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"LoopDevice({self.path} -> {self.image})"

    def attached(self) -> bool:
        """True while the loop device still has our image behind it (it may be reused later)."""
        backing = Path("/sys/block") / self.path.name / "loop" / "backing_file"
        try:
            return backing.read_text().strip() == str(self.image)
        except OSError:
            return False

    def detach(self) -> None:
        """Detach the device and remove its image; safe to repeat."""
        if self.attached():
            subprocess.run(["losetup", "--detach", str(self.path)], capture_output=True)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> "LoopDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()
