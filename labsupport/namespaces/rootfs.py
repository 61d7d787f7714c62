"""Root filesystems: the directory a container sees as ``/``.

Two ways to make one, as the course does:

* by hand (notebook 01): copy a program and every shared library it loads -
  what ``ldd`` prints - into an empty directory. This is what makes chroot
  work at all: the program finds its libraries at the same paths inside.
* from busybox (every later notebook): one static binary that is ``sh``,
  ``ls``, ``ps``, ``ip``, ``httpd`` and some 270 more, plus a symlink for each
  name. It is built once into the lab's cache; notebooks get a fresh copy.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from labsupport import ownership
from labsupport.kernel.errors import LabError

BUSYBOX = Path("/bin/busybox")
BUSYBOX_CACHE = ownership.CACHE_DIR / "rootfs" / "busybox"
_STAMP = ".lab-built-from"

# A line of ldd output: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
# or, for the dynamic loader, "/lib64/ld-linux-x86-64.so.2 (0x...)".
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)", re.MULTILINE)


def find_program(name: str) -> Path:
    """Find a program on the host by name or path, with a clear error if it is missing."""
    found = shutil.which(name) if "/" not in name else (name if Path(name).is_file() else None)
    if not found:
        raise LabError(f"The program {name!r} is not on this host: install it or pick another.")
    return Path(found)


def shared_libraries(program: str | os.PathLike) -> list[Path]:
    """The shared libraries a program loads, as ``ldd`` lists them (static programs: none)."""
    path = find_program(os.fspath(program))
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        if "not a dynamic executable" in out.stdout + out.stderr:
            return []
        raise LabError(f"ldd could not read {path}: {out.stderr.strip() or out.stdout.strip()}")
    if "not found" in out.stdout:
        missing = [ln.split()[0] for ln in out.stdout.splitlines() if "not found" in ln]
        raise LabError(f"{path} needs libraries this host lacks: {', '.join(missing)}.")
    return [Path(p) for p in _LDD_LINE.findall(out.stdout)]


def _copy_into(root: Path, host_path: Path) -> Path:
    """Copy a host file to the same path inside ``root`` (following symlinks)."""
    inside = root / host_path.relative_to("/")
    inside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(host_path.resolve(), inside)
    return inside


def build_from_programs(root: str | os.PathLike, programs: list[str]) -> list[Path]:
    """Build a root by hand: each program plus the libraries it loads.

    Returns the files copied, as paths inside the root, so a notebook can show
    them. ``root`` must be empty or missing: the lab never writes into a
    directory that holds something else.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise LabError(f"{root} is not empty: pick a new directory for the root.")
    files: set[Path] = set()
    for program in programs:
        path = find_program(program)
        files.add(path)
        files.update(shared_libraries(path))
    root.mkdir(parents=True, exist_ok=True)
    _mirror_merged_usr(root)
    return [Path("/") / _copy_into(root, f).relative_to(root) for f in sorted(files)]


def _mirror_merged_usr(root: Path) -> None:
    """Give the root the host's /bin -> usr/bin style links, where the host has them.

    Debian 12 and Ubuntu keep programs only under /usr ("merged /usr"); with the
    same links inside, /bin/ls and /usr/bin/ls name one file there as here.
    """
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            target = os.readlink(host)
            (root / top).parent.joinpath(target).mkdir(parents=True, exist_ok=True)
            (root / top).symlink_to(target)


def _busybox_id() -> str:
    """Which busybox a cached root was built from, so an upgrade rebuilds it."""
    if not BUSYBOX.is_file():
        raise LabError("busybox is not installed: run `sudo ./lab up` (it installs busybox-static).")
    return hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()


def _is_static(program: Path) -> bool:
    out = subprocess.run(["ldd", str(program)], capture_output=True, text=True)
    return out.returncode != 0


def _write_etc(root: Path) -> None:
    etc = root / "etc"
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (etc / "hostname").write_text("labbox\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    (etc / "os-release").write_text('NAME="lab busybox"\nID=labbox\n')


def _populate_busybox(root: Path) -> None:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp",
              "root", "var", "run", "mnt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True,
                             text=True, check=True).stdout.split()
    for applet in applets:
        link = root / applet
        if not link.exists():
            link.symlink_to("/bin/busybox")
    (root / "tmp").chmod(0o1777)
    _write_etc(root)


def busybox_root() -> Path:
    """The cached busybox root, built now if it is missing or stale. Treat it as read-only."""
    wanted = _busybox_id()
    stamp = BUSYBOX_CACHE / _STAMP
    if stamp.is_file() and stamp.read_text() == wanted:
        return BUSYBOX_CACHE
    if not _is_static(BUSYBOX):
        raise LabError(f"{BUSYBOX} is not statically linked: install busybox-static (sudo ./lab up).")
    # Build beside the cache and rename, so a half-built root is never used.
    building = BUSYBOX_CACHE.with_name("busybox.building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    _populate_busybox(building)
    (building / _STAMP).write_text(wanted)
    shutil.rmtree(BUSYBOX_CACHE, ignore_errors=True)
    building.rename(BUSYBOX_CACHE)
    return BUSYBOX_CACHE


def new_busybox_root(purpose: str = "root") -> Path:
    """A fresh, writable copy of the busybox root in a lab scratch directory."""
    source = busybox_root()
    root = ownership.temp_dir(purpose) / "rootfs"
    shutil.copytree(source, root, symlinks=True)
    (root / _STAMP).unlink()
    return root


def remove_root(root: str | os.PathLike) -> None:
    """Delete a root the lab made. Refuses anything outside the lab's directories."""
    root = Path(root)
    if not ownership.is_lab_path(root) or root in ownership.lab_dirs():
        raise LabError(f"{root} is not a root the lab made; it was left alone.")
    inside = root.resolve()
    if any(Path(m.mountpoint) == inside or inside in Path(m.mountpoint).parents
           for m in ownership.lab_mounts()):
        raise LabError(f"Something is still mounted inside {root}: unmount it first "
                       "(or run `python -m labsupport clean`).")
    scratch = root.parent if root.parent.parent == ownership.TEMP_DIR else root
    shutil.rmtree(scratch, ignore_errors=True)
