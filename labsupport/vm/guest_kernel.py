"""The guest's kernel: Debian's own, unpacked into the lab cache, never installed.

A VM needs a kernel of its own, and the simplest honest one is the
distribution's: ``linux-image-amd64`` on Debian. Installing it would run the
host's initramfs and bootloader hooks and write to ``/boot``, so the lab only
*downloads* the package (``apt-get download``) and unpacks it with
``dpkg-deb -x`` into ``/var/cache/labsupport/vm/kernel/<release>/``. The
package ships no ``modules.dep`` (its install script makes one), so
``depmod -b`` writes it there, inside the cache.

The guest's kernel is not the host's: on the lab's reference machine the host
runs 6.18 with a hybrid cgroup layout, the guest Debian's 6.1 mounting pure
cgroup v2 - two real kernels on one machine.
"""
from __future__ import annotations

import contextlib
import fcntl
import lzma
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from labsupport import ownership
from labsupport.kernel.errors import LabError
from labsupport.vm import platforms

KERNEL_CACHE = ownership.CACHE_DIR / "vm" / "kernel"
#: Metapackages that always depend on the distribution's current kernel: Debian's for this
#: host's architecture (linux-image-amd64, linux-image-arm64), then Ubuntu's.
METAPACKAGES = (platforms.host_or_x86().kernel_package, "linux-image-generic")
_STAMP = ".lab-package"

Progress = Callable[[str], None]
"""Told, in a few words, which slow step starts next (the CLI feeds a tqdm bar)."""


@dataclass(frozen=True)
class GuestKernel:
    """One unpacked kernel package in the lab cache."""

    release: str  # as ``uname -r`` will say inside the guest, e.g. 6.1.0-56-amd64
    version: str  # the Debian package version, e.g. 6.1.192-2
    root: Path  # the unpacked package: boot/, lib/modules/<release>/

    @property
    def vmlinuz(self) -> Path:
        """The package's compressed kernel (bzImage): it unpacks itself at boot."""
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def vmlinux(self) -> Path:
        """The same kernel already unpacked (an ELF file), made by the lab when it can."""
        return self.root / "boot" / f"vmlinux-{self.release}"

    @property
    def boot_image(self) -> Path:
        """What to give QEMU's -kernel: the unpacked ELF if there is one.

        Under TCG the bzImage's own xz decompression, emulated instruction by
        instruction, costs about three seconds of a six-second boot. A kernel
        built with CONFIG_PVH carries an ELF note with a 32-bit entry point,
        so QEMU can load the unpacked ELF and jump straight in.
        """
        return self.vmlinux if self.vmlinux.is_file() else self.vmlinuz

    @property
    def modules(self) -> Path:
        """The module tree, as the guest expects it under /lib/modules/<release>."""
        return self.root / "lib" / "modules" / self.release

    def __str__(self) -> str:
        return f"Linux {self.release} (package version {self.version}) in {self.root}"


def _apt_cache_show(package: str, apt_options: Sequence[str] = ()) -> Optional[str]:
    """``apt-cache show`` of the candidate version, or None if apt does not know the package.

    ``apt_options`` (``-o NAME=VALUE`` pairs) point apt at another set of
    package lists - those of another architecture (see ``foreign``).
    """
    if shutil.which("apt-cache") is None:
        return None
    out = subprocess.run(["apt-cache", *apt_options, "show", "--no-all-versions", package],
                         capture_output=True, text=True)
    return out.stdout if out.returncode == 0 and out.stdout.strip() else None


def _field(control: str, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", control, re.MULTILINE)
    return match.group(1).strip() if match else ""


def newest_available(metapackages: Sequence[str] = METAPACKAGES,
                     apt_options: Sequence[str] = ()) -> tuple[str, str]:
    """(versioned package, version) that the kernel metapackage points at right now.

    >>> newest_available()          # on Debian 12
    ('linux-image-6.1.0-56-amd64', '6.1.192-2')
    """
    for meta in metapackages:
        control = _apt_cache_show(meta, apt_options)
        if control is None:
            continue
        for dependency in _field(control, "Depends").split(","):
            name = dependency.split()[0] if dependency.split() else ""
            if name.startswith("linux-image-") and name != meta:
                image = _apt_cache_show(name, apt_options)
                if image is not None:
                    return name, _field(image, "Version")
    raise LabError(f"apt knows no kernel package ({metapackages[0]}): run `apt-get update` "
                   "on a Debian or Ubuntu host, then `python -m labsupport setup`.")


def release_of(package: str) -> str:
    """``linux-image-6.1.0-56-amd64`` -> ``6.1.0-56-amd64`` (the name under /lib/modules)."""
    return package.removeprefix("linux-image-")


def _packages_for(package: str) -> list[str]:
    """The image package, plus Ubuntu's separate modules package when the archive has one."""
    modules = f"linux-modules-{release_of(package)}"
    return [package] + ([modules] if _apt_cache_show(modules) is not None else [])


def unpacked_elf(bzimage: bytes) -> Optional[bytes]:
    """The ELF kernel inside a bzImage, if it is xz- or gzip-compressed; else None.

    The setup header (Documentation/arch/x86/boot.rst) says where the payload
    lies: ``payload_offset`` at 0x248, counted from the protected-mode code,
    which follows ``setup_sects`` + 1 sectors of 512 bytes.
    """
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    (offset,) = struct.unpack_from("<I", bzimage, 0x248)
    payload = bzimage[(setup_sects + 1) * 512 + offset:]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            elf = lzma.LZMADecompressor().decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            elf = zlib.decompressobj(wbits=31).decompress(payload)
        else:
            return None  # zstd, lz4...: the standard library cannot unpack them
    except (lzma.LZMAError, zlib.error):
        return None
    return elf if elf.startswith(b"\x7fELF") else None


def _has_pvh_entry(config: Path) -> bool:
    return config.is_file() and "\nCONFIG_PVH=y\n" in config.read_text()


def _write_vmlinux(kernel: GuestKernel) -> None:
    """Unpack the ELF beside the bzImage, when QEMU can boot it (CONFIG_PVH)."""
    if not _has_pvh_entry(kernel.root / "boot" / f"config-{kernel.release}"):
        return
    elf = unpacked_elf(kernel.vmlinuz.read_bytes())
    if elf is not None:
        kernel.vmlinux.write_bytes(elf)


def cached() -> Optional[GuestKernel]:
    """The kernel unpacked in the cache, or None. The cache holds one at a time."""
    found = []
    for stamp in KERNEL_CACHE.glob(f"*/{_STAMP}") if KERNEL_CACHE.is_dir() else []:
        kernel = GuestKernel(stamp.parent.name, stamp.read_text().strip(), stamp.parent)
        if kernel.vmlinuz.is_file() and (kernel.modules / "modules.dep").is_file():
            found.append((stamp.stat().st_mtime, kernel))
    return max(found, key=lambda pair: pair[0])[1] if found else None


def _run(argv: list[str], what: str, cwd: Optional[Path] = None) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise LabError(f"{what} failed ({last}): check that apt works (`apt-get update`), "
                       "then run `python -m labsupport setup` again.")


def _unpack(package: str, version: str, target: Path, progress: Progress) -> None:
    """apt-get download into a scratch dir, then dpkg-deb -x into ``target``."""
    missing = [tool for tool in ("apt-get", "dpkg-deb", "depmod") if shutil.which(tool) is None]
    if missing:
        raise LabError(f"{' and '.join(missing)} not found: the lab fetches its guest kernel "
                       "with apt on a Debian or Ubuntu host (depmod comes with kmod).")
    scratch = ownership.temp_dir("kernel-download")
    try:
        progress(f"download {package}")
        for name in _packages_for(package):
            # apt-get download writes into its current directory.
            _run(["apt-get", "download", "-q", f"{name}={version}"], f"Downloading {name}",
                 cwd=scratch)
        progress("unpack")
        for deb in sorted(scratch.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(target)], f"Unpacking {deb.name}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fetch(package: str, version: str, progress: Progress) -> GuestKernel:
    """Unpack beside the cache and rename, so a half-unpacked kernel is never used."""
    release = release_of(package)
    final = KERNEL_CACHE / release
    building = KERNEL_CACHE / f"{release}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        _unpack(package, version, building, progress)
        if not (building / "lib" / "modules" / release).is_dir():
            raise LabError(f"The package {package} holds no /lib/modules/{release}: "
                           "the lab cannot build a guest from it.")
        progress("depmod")
        # The package's install script would run depmod on the host; run it on the cache.
        _run(["depmod", "-b", str(building), release], "depmod on the guest's modules")
        progress("extract vmlinux")
        _write_vmlinux(GuestKernel(release, version, building))
        (building / _STAMP).write_text(version + "\n")
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    for old in KERNEL_CACHE.iterdir():
        if old != building and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    building.rename(final)
    return GuestKernel(release, version, final)


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """One fetch at a time: a notebook and a test may both ask for the kernel."""
    KERNEL_CACHE.mkdir(parents=True, exist_ok=True)
    with open(KERNEL_CACHE.parent / ".kernel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def fetch_kernel(progress: Optional[Progress] = None) -> GuestKernel:
    """The guest kernel, fetched into the cache if missing or if apt offers a newer one.

    Without a working apt (offline, no lists) the cached kernel is used as it is.
    """
    with _cache_lock():
        kernel = cached()
        try:
            package, version = newest_available()
        except LabError:
            if kernel is None:
                raise
            return kernel
        if kernel is not None and (kernel.release, kernel.version) == (release_of(package), version):
            return kernel
        return _fetch(package, version, progress or (lambda step: None))
