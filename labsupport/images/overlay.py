"""Mount an image: its layers stacked read-only by overlayfs, with one writable layer on top.

``mount -t overlay overlay -o lowerdir=L3:L2:L1,upperdir=U,workdir=W merged``:
the *lower* directories are read-only, the leftmost on top; *upper* takes
every change; *work* is overlayfs' own scratch space on upper's filesystem.
Changing a lower file copies it up into upper first (copy-up); deleting one
leaves a whiteout - a character device 0/0 - in upper. The layers in the
store are never written, which is why many containers can share them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from labsupport import ownership
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError


@dataclass(frozen=True)
class Overlay:
    """The directories of one overlay mount."""

    lower: list[Path]  # bottom first, as an image lists its layers
    upper: Path
    work: Path
    merged: Path

    def options(self) -> str:
        # overlayfs reads lowerdir top first: the reverse of an image's order.
        lower = ":".join(str(p) for p in reversed(self.lower))
        return f"lowerdir={lower},upperdir={self.upper},workdir={self.work}"


def layout(container_dir: Path, lower: list[Path]) -> Overlay:
    return Overlay(list(lower), container_dir / "upper", container_dir / "work", container_dir / "rootfs")


def mount(container_dir: str | os.PathLike, lower: list[Path]) -> Overlay:
    """Stack ``lower`` (bottom first) with a fresh upper in ``container_dir``; merged at ./rootfs."""
    container_dir = Path(container_dir)
    if not ownership.is_lab_path(container_dir):
        raise LabError(f"{container_dir} is not a lab directory: use one under {ownership.STATE_DIR}.")
    if not lower:
        raise LabError("An overlay needs at least one lower layer: the image has none.")
    ov = layout(container_dir, lower)
    if mount_at(ov.merged) is not None:
        raise LabError(f"{ov.merged} is mounted already: release it first.")
    for d in (ov.upper, ov.work, ov.merged):
        d.mkdir(parents=True, exist_ok=True)
    if len(ov.options()) > 4000:
        raise LabError("The image has too many layers for one mount call (the options exceed a page).")
    syscalls.mount("overlay", ov.merged, "overlay", 0, ov.options())
    return ov


def mount_at(path: Path) -> hoststate.Mount | None:
    """The mount sitting exactly at ``path``, if any."""
    for m in hoststate.mounts():
        if m.mountpoint == str(path):
            return m
    return None


def unmount(container_dir: str | os.PathLike) -> None:
    """Unmount ./rootfs of ``container_dir`` (upper and work stay: they are the container's changes)."""
    merged = Path(container_dir) / "rootfs"
    if mount_at(merged) is not None:
        syscalls.umount(merged, syscalls.MNT_DETACH)


def lab_overlay_options() -> list[str]:
    """The superblock options (``lowerdir=...``) of the lab's overlay mounts: which layers are in use."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        after = fields[fields.index("-") + 1:]  # fstype, source, superblock options
        if after[0] == "overlay" and ownership.is_lab_path(fields[4]):
            found.append(after[2])
    return found


def mountinfo_line(merged: Path) -> str:
    """The raw /proc/self/mountinfo line of an overlay, as the kernel writes it."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == str(merged):
            return line
    raise LabError(f"Nothing is mounted at {merged}.")
