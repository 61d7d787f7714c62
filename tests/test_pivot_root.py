"""pivot_root, proven from outside: another process reads the box's /proc/PID/mountinfo.

A system call's return value proves little: called by a wrong number (the
x86_64 number on aarch64 is another call), "pivot_root" may return 0 and
change nothing. What the kernel really did shows in the box's mount table,
which any process on the host may read: after a pivot_root the mount at
the box's "/" is the box's own directory, and the host's root filesystem is
no longer mounted anywhere in the box's namespace.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labsupport import process
from labsupport.kernel import hoststate
from labsupport.namespaces import rootfs


def _root_mount(pid: int | str) -> hoststate.Mount:
    """The mount at "/" as the process ``pid`` sees it (read from outside, through /proc)."""
    return next(m for m in hoststate.mounts(f"/proc/{pid}/mountinfo") if m.mountpoint == "/")


def _sleeping_box(**isolation: object) -> tuple[process.Child, Path]:
    root = rootfs.new_busybox_root("pivot-outside")
    if isolation.get("pivot"):
        isolation["root"] = root
    child = process.start(["/bin/sleep", "60"], **isolation)
    deadline = time.monotonic() + 20
    # The root changes before exec: once the box runs sleep, it is in place.
    while b"sleep" not in Path(f"/proc/{child.pid}/cmdline").read_bytes():
        if time.monotonic() > deadline:
            child.stop()
            pytest.fail("The box never reached its sleep.")
        time.sleep(0.02)
    return child, root


def test_pivot_root_shows_in_the_box_mountinfo_read_from_outside() -> None:
    host_root = _root_mount("self")
    child, root = _sleeping_box(namespaces=["mnt"], pivot=True, mount_proc=True)
    try:
        seen = _root_mount(child.pid)
        box_mounts = hoststate.mounts(f"/proc/{child.pid}/mountinfo")
        mnt_ns = os.stat(f"/proc/{child.pid}/ns/mnt").st_ino
    finally:
        child.stop()
        rootfs.remove_root(root)
    assert mnt_ns != os.stat("/proc/self/ns/mnt").st_ino
    # "/" in the box is the box's directory (mountinfo's root field), not the host's root...
    assert seen.root.endswith(root.name), (seen, root)
    assert (seen.source, seen.root) != (host_root.source, host_root.root)
    # ...and the host's root filesystem was detached: nowhere in the box's table.
    assert not [m for m in box_mounts if (m.source, m.root) == (host_root.source, host_root.root)]


def test_a_mount_namespace_without_pivot_root_still_has_the_host_root() -> None:
    """The check above can fail: a box whose root never changed (as after a pivot_root
    called by a wrong number) shows the host's "/" in its mountinfo."""
    host_root = _root_mount("self")
    child, root = _sleeping_box(namespaces=["mnt"])
    try:
        seen = _root_mount(child.pid)
    finally:
        child.stop()
        rootfs.remove_root(root)
    assert (seen.source, seen.root) == (host_root.source, host_root.root)
