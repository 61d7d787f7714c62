"""A full Debian guest on one disk image, built offline from Debian's own packages.

The microVM of ``initramfs`` borrows the host's root over 9p; a *full* guest
has a root filesystem of its own, an init system (systemd) and services
(sshd) - what a learner means by "a VM". The lab makes one without an
installer and without mounting anything on the host:

1. ``debootstrap --variant=minbase`` unpacks Debian into a scratch directory
   (the mirror is the one apt already uses);
2. a few files make it bootable and reachable (fstab, networkd over DHCP,
   the lab's SSH key for root), plus whatever a caller's hook adds;
3. ``mkfs.ext4 -d DIR`` writes the directory into a filesystem image - no loop
   device, no mount;
4. ``qemu-img convert -c`` packs it as a compressed qcow2 (sparse, about a
   third of the raw size).

The disk has no boot loader: QEMU boots the image's own kernel and initrd
directly (copied next to the disk), which is also what the Vagrant box does.
The result is cached under /var/cache/labsupport/vm/debian/<key>/ and reused::

    image = debian_image.build()               # ~100 s the first time, then instant
    image.path, image.kernel, image.ssh_key
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from tqdm.auto import tqdm

from labsupport import ownership, process
from labsupport.kernel.errors import LabError, require_root
from labsupport.vm import platforms

IMAGE_CACHE = ownership.CACHE_DIR / "vm" / "debian"
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "udev", "openssh-server", "sudo",
            platforms.host_or_x86().kernel_package,
            "initramfs-tools")
DISK_GIB = 8
#: Free space the build needs: the unpacked root, the sparse raw disk's used part, the qcow2.
NEEDED_FREE_BYTES = 3 << 30
HOSTNAME = "lab-debian12"
STEPS = ("debootstrap", "configure", "mkfs.ext4", "qemu-img")
_MANIFEST = "image.json"

Customize = Callable[[Path], None]
"""A hook that edits the unpacked root (a host directory) before it becomes a disk."""


@dataclass(frozen=True)
class DiskImage:
    """One built guest: its disk, the kernel and initrd to boot it with, and a key to log in."""

    path: Path  # the disk (qcow2): one ext4 filesystem, root=/dev/vda
    format: str  # "qcow2", as QEMU's -drive format= wants it
    size: int  # bytes the image takes on the host's disk
    virtual_size: int  # bytes the guest sees
    kernel: Path  # the image's own /boot/vmlinuz-*
    initrd: Path  # the image's own /boot/initrd.img-*
    ssh_key: Path  # private key accepted for root (and any user a hook gives it)
    release: str  # the guest kernel's release, as uname -r says inside
    variant: str  # "base" or the name a caller gave its customization

    @property
    def ssh_public_key(self) -> Path:
        return self.ssh_key.with_suffix(".pub")

    def __str__(self) -> str:
        return (f"Debian {SUITE} disk {self.path} ({self.format}, {self.size / 2**20:.0f} MiB on disk, "
                f"{self.virtual_size / 2**30:.0f} GiB virtual), kernel {self.release}")


# -- the pieces -------------------------------------------------------------------

def apt_mirror() -> str:
    """The Debian mirror apt already uses: the lab never names one of its own."""
    for source in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        text = source.read_text() if source.exists() else ""
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] or (words[:1] == ["deb"] and len(words) > 1):
                uri = next((w for w in words[1:] if "://" in w), "")
                if uri and "security" not in uri:
                    return uri
    raise LabError("apt has no Debian mirror configured (/etc/apt/sources.list*): add one first.")


def _check_tools() -> None:
    for tool, package in (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs"),
                          ("qemu-img", "qemu-utils"), ("ssh-keygen", "openssh-client")):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed: run `sudo ./lab install` "
                           f"(it installs the {package} package).")


def _check_space(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < NEEDED_FREE_BYTES:
        raise LabError(f"Building the Debian disk image needs {NEEDED_FREE_BYTES >> 30} GiB free "
                       f"under {directory}, but only {free / 2**30:.1f} GiB is free: make room first.")


def _run(argv: Sequence[str], what: str, timeout: float = 900) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise LabError(f"{what} failed ({argv[0]} exited {done.returncode}): {tail}")
    return done.stdout


def in_root(root: Path, *argv: str) -> str:
    """Run a command inside the unpacked root (a chroot-like child of labsupport.process)."""
    result = process.run_command(list(argv), root=root, timeout=120)
    if result.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` inside the guest's root failed: {result.stderr.strip()}")
    return result.stdout


def add_user(root: Path, name: str, public_key: str, sudo: bool = True) -> None:
    """A login for ``name`` holding ``public_key``; with passwordless sudo if asked.

    Meant for a ``customize`` hook (the Vagrant box adds its ``vagrant`` user so).
    """
    in_root(root, "useradd", "--create-home", "--shell", "/bin/bash", name)
    ssh_dir = root / "home" / name / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key.strip() + "\n")
    (ssh_dir / "authorized_keys").chmod(0o600)
    in_root(root, "chown", "-R", f"{name}:{name}", f"/home/{name}/.ssh")
    if sudo:
        sudoers = root / "etc" / "sudoers.d" / name
        sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)


def debootstrap(root: Path, packages: Sequence[str], progress: Callable[[str], None],
                foreign_arch: Optional[str] = None) -> None:
    """Unpack Debian into ``root``, telling ``progress`` what debootstrap is doing.

    With ``foreign_arch`` (a Debian name such as ``arm64``) only the first
    stage runs: debootstrap downloads every package and unpacks the essential
    ones, but configures nothing, since that would mean running the other
    architecture's programs here. The second stage runs inside that
    architecture's guest (``foreign``).
    """
    foreign = ["--foreign", f"--arch={foreign_arch}"] if foreign_arch else []
    argv = ["debootstrap", *foreign, "--variant=minbase", f"--include={','.join(packages)}",
            SUITE, str(root), apt_mirror()]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
        lines: list[str] = []
        assert run.stdout is not None
        for line in run.stdout:
            lines.append(line.rstrip())
            if line.startswith("I: "):
                progress(line[3:].strip()[:40])
        code = run.wait()
    if code != 0:
        raise LabError(f"debootstrap failed (exit {code}): " + " | ".join(lines[-4:]))


def configure(root: Path, public_key: str) -> None:
    """What a bare debootstrap lacks to boot under QEMU and be reached over SSH."""
    (root / "etc" / "hostname").write_text(HOSTNAME + "\n")
    (root / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n")
    (root / "etc" / "fstab").write_text("/dev/vda / ext4 errors=remount-ro 0 1\n")
    # QEMU's user-mode network hands out 10.0.2.15 by DHCP; networkd takes any wired NIC.
    (root / "etc" / "systemd" / "network" / "90-lab-wired.network").write_text(
        "[Match]\nType=ether\n\n[Network]\nDHCP=ipv4\n")
    in_root(root, "systemctl", "enable", "systemd-networkd")
    (root / "etc" / "resolv.conf").write_text("nameserver 10.0.2.3\n")
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key.strip() + "\n")
    (ssh_dir / "authorized_keys").chmod(0o600)
    # A fresh machine-id at first boot; an empty file (not a missing one) avoids "first boot" units.
    (root / "etc" / "machine-id").write_text("")
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)


def make_disk(root: Path, qcow2: Path, disk_gib: int = DISK_GIB) -> None:
    """Write the directory into an ext4 image without mounting, then pack it as qcow2."""
    raw = qcow2.with_suffix(".raw")
    with open(raw, "wb") as disk:
        disk.truncate(disk_gib << 30)  # sparse: only what mkfs writes takes space
    try:
        _run(["mkfs.ext4", "-q", "-L", "labroot", "-d", str(root), str(raw)], "mkfs.ext4 -d")
        _run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(qcow2)], "qemu-img convert")
    finally:
        raw.unlink(missing_ok=True)


def _ssh_keypair(directory: Path) -> Path:
    key = directory / "id_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labsupport-vm", "-f", str(key)],
         "ssh-keygen")
    return key


# -- the cache ---------------------------------------------------------------------

def _key(packages: Sequence[str], variant: str, disk_gib: int) -> str:
    digest = hashlib.sha256(json.dumps([SUITE, sorted(packages), disk_gib]).encode()).hexdigest()
    return f"{variant}-{digest[:10]}"


def _load(directory: Path) -> Optional[DiskImage]:
    try:
        data = json.loads((directory / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    image = DiskImage(**{k: Path(v) if k in ("path", "kernel", "initrd", "ssh_key") else v
                         for k, v in data.items()})
    files = (image.path, image.kernel, image.initrd, image.ssh_key)
    return image if all(Path(f).is_file() for f in files) else None


def _save(image: DiskImage, directory: Path) -> None:
    data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(image).items()}
    (directory / _MANIFEST).write_text(json.dumps(data, indent=1))


@contextlib.contextmanager
def _lock(directory: Path) -> Iterator[None]:
    """One build at a time: setup, a test and the Vagrant box may all ask at once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cached(variant: str = "base", extra_packages: Sequence[str] = (),
           disk_gib: int = DISK_GIB) -> Optional[DiskImage]:
    """The image if it is already built (never builds)."""
    return _load(IMAGE_CACHE / _key((*PACKAGES, *extra_packages), variant, disk_gib))


def _assemble(work: Path, final: Path, packages: Sequence[str], customize: Optional[Customize],
              variant: str, disk_gib: int, show_progress: bool) -> DiskImage:
    root = work / "root"
    with tqdm(total=len(STEPS), desc=f"Debian image ({variant})", unit="step",
              disable=not show_progress) as bar:
        def step(name: str, detail: str = "") -> None:
            bar.n = STEPS.index(name)
            bar.set_postfix_str(f"{name} {detail}".strip())

        step("debootstrap")
        debootstrap(root, packages, lambda detail: step("debootstrap", detail))
        step("configure")
        key = _ssh_keypair(work)
        configure(root, key.with_suffix(".pub").read_text())
        if customize is not None:
            customize(root)
        release = max(p.name for p in (root / "lib" / "modules").iterdir())
        shutil.copy(root / "boot" / f"vmlinuz-{release}", work / "vmlinuz")
        shutil.copy(root / "boot" / f"initrd.img-{release}", work / "initrd.img")
        step("mkfs.ext4")
        disk = work / "disk.qcow2"
        make_disk(root, disk, disk_gib)
        step("qemu-img")
        shutil.rmtree(root)
        bar.n = len(STEPS)
        bar.refresh()
    image = DiskImage(path=final / disk.name, format="qcow2", size=disk.stat().st_blocks * 512,
                      virtual_size=disk_gib << 30, kernel=final / "vmlinuz",
                      initrd=final / "initrd.img", ssh_key=final / key.name, release=release,
                      variant=variant)
    _save(image, work)
    return image


def build(dest_dir: Optional[Path] = None, *, extra_packages: Sequence[str] = (),
          customize: Optional[Customize] = None, variant: Optional[str] = None,
          disk_gib: int = DISK_GIB, show_progress: bool = True) -> DiskImage:
    """The Debian guest image, built once and cached; returns at once when cached.

    ``extra_packages`` go into debootstrap's --include; ``customize(root)``
    edits the unpacked root before it becomes a disk (add users with
    ``add_user``). A customized image must carry its own ``variant`` name,
    so it is cached apart from the base image. ``dest_dir`` puts the image
    somewhere other than the cache (the caller then owns that directory).
    """
    require_root("Building the Debian disk image")
    if customize is not None and variant is None:
        raise LabError("A customized image needs a variant name (e.g. variant='vagrant') "
                       "so it is cached apart from the base image.")
    variant = variant or "base"
    if not variant.isidentifier():
        raise LabError(f"The variant name {variant!r} must be letters, digits and _ only.")
    packages = (*PACKAGES, *extra_packages)
    final = Path(dest_dir) if dest_dir else IMAGE_CACHE / _key(packages, variant, disk_gib)
    _check_tools()
    with _lock(IMAGE_CACHE):
        found = _load(final)
        if found is not None:
            return found
        _check_space(final.parent)
        work = ownership.temp_dir("debian-image")
        try:
            _assemble(work, final, packages, customize, variant, disk_gib, show_progress)
            shutil.rmtree(final, ignore_errors=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(work), str(final))
            final.chmod(0o755)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    image = _load(final)
    assert image is not None
    return image
