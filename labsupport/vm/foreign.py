"""A guest of another architecture (an aarch64 Debian on an x86_64 host), built without running it here.

To prove the lab on an ARM machine without owning one, the lab boots an
aarch64 kernel under QEMU's TCG, which translates every ARM instruction into
host code. That guest needs a userland of its own - the host's programs are
x86 code - and the host must build it without ever running an ARM program
(that would need a binfmt handler registered in the host kernel, which the
lab does not touch). So every step either only *downloads and unpacks*, or
runs inside the guest:

1. ``debootstrap --foreign --arch=arm64``: download Debian 12 and unpack its
   essential packages (no maintainer script runs);
2. the kernel: ``apt-get download`` of Debian's arm64 kernel through a
   private apt directory (its own sources, lists and architecture, so the
   host's apt configuration and dpkg database stay as they were), unpacked
   into the userland and indexed by ``depmod -b``;
3. the remaining downloaded packages' files unpacked, so the guest can
   already run Python and modprobe during its first boot;
4. the second stage, in the guest: boot it over the userland and run
   ``debootstrap --second-stage``, which configures every package with the
   guest's own dpkg - a real Debian from then on.

Apart from the userland, and cached apart (a new pin must not cost a new
second stage), the lab's Python requirements as aarch64 wheels: ``pip
install --target`` with ``--platform`` only downloads and unzips them. The
guest mounts them where its Python looks for site packages.

Both are cached under /var/cache/labsupport/vm/foreign/, keyed by everything
that went in, with every step's wall time in their manifests::

    userland = foreign.build("aarch64")      # minutes the first time, then instant
    userland.steps                           # {"first stage": 27.1, ...} seconds
    kernel, root, shares = foreign.boot_parts("aarch64")   # for initramfs.guest_config
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

from tqdm.auto import tqdm

from labsupport import ownership
from labsupport.kernel.errors import LabError, require_root
from labsupport.vm import debian_image, guest_kernel, initramfs, platforms
from labsupport.vm.guest_kernel import GuestKernel
from labsupport.vm.qemu import VM, Share

FOREIGN_CACHE = ownership.CACHE_DIR / "vm" / "foreign"
REPO = Path(__file__).resolve().parents[2]
#: What the kernel-facing tests call inside the guest: Python, busybox for the
#: containers' roots, ip, modprobe, ps, a compiler for the attack probe and for
#: reading the system call numbers from the C headers, capsh to decode masks, jq (the
#: images tests copy it into a layer) and runc (the container tests compare bundles with it).
PACKAGES = ("python3", "busybox-static", "iproute2", "kmod", "procps", "gcc", "libc6-dev",
            "libcap2-bin", "jq", "runc")
#: What the tests and the notebooks' kernels import (pinned in requirements.txt); not
#: JupyterLab itself, nor playwright (the browser test stays on the host).
REQUIREMENTS = ("pytest", "pytest-timeout", "psutil", "pyroute2", "tqdm", "ipywidgets",
                "matplotlib", "ipykernel", "jupyter_client", "nbclient", "nbformat")
PYTHON = "3.11"  # Debian 12's, inside the guest
STEPS = ("first stage", "kernel", "unpack", "second stage")
WHEELS_TAG = "labwheels"
#: Where the guest's Python looks for site packages of its own (Debian's /usr/local path).
GUEST_WHEELS = Path(f"/usr/local/lib/python{PYTHON}/dist-packages")
SECOND_STAGE_TIMEOUT = 3600.0
TARGET_TAG = "labtarget"
GUEST_TARGET = Path("/mnt/labtarget")
LOG_TAG = "labshare"
GUEST_LOG = Path("/mnt/labshare")
_MANIFEST = "userland.json"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Userland:
    """One built userland: a Debian root of another architecture, with its kernel inside."""

    arch: str  # uname -m inside, e.g. aarch64
    directory: Path  # the cache entry: root/, initramfs/, userland.json
    kernel_release: str  # e.g. 6.1.0-50-arm64, under root/lib/modules
    kernel_version: str  # the package version
    steps: dict[str, float] = field(default_factory=dict)  # wall seconds of each build step

    @property
    def root(self) -> Path:
        return self.directory / "root"

    @property
    def kernel(self) -> GuestKernel:
        return GuestKernel(self.kernel_release, self.kernel_version, self.root)

    @property
    def guest_root(self) -> initramfs.GuestRoot:
        """What /init needs: this root, its own busybox, its modules where the guest sees them."""
        return initramfs.GuestRoot(path=self.root, busybox=self.root / "bin" / "busybox",
                                   modules_inside=f"/lib/modules/{self.kernel_release}",
                                   arch=self.arch, cache=self.directory / "initramfs")

    def __str__(self) -> str:
        took = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.steps.items())
        return (f"Debian {debian_image.SUITE} {platforms.of(self.arch).debian_arch} userland "
                f"with Linux {self.kernel_release} in {self.root} (built in: {took})")


# -- a private apt for another architecture ----------------------------------------

class PrivateApt:
    """apt with its own sources, lists and architecture under ``directory``.

    Every path apt would read or write is redirected with ``-o`` options, so
    the host's /etc/apt, /var/lib/apt and dpkg database are neither read for
    packages nor changed; only the archive's signing keys are the host's.
    """

    def __init__(self, directory: Path, debian_arch: str) -> None:
        self.directory = directory
        self.debian_arch = debian_arch

    @property
    def options(self) -> list[str]:
        d = self.directory
        pairs = {"Dir::Etc::SourceList": d / "sources.list", "Dir::Etc::SourceParts": d / "parts",
                 "Dir::State::Lists": d / "lists", "Dir::State::status": d / "status",
                 "Dir::Cache": d / "cache", "Dir::Cache::archives": d / "archives",
                 "APT::Architecture": self.debian_arch, "APT::Architectures::": self.debian_arch}
        return [arg for name, value in pairs.items() for arg in ("-o", f"{name}={value}")]

    def update(self) -> None:
        for sub in ("parts", "lists/partial", "cache", "archives/partial"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "status").touch()
        (self.directory / "sources.list").write_text(
            f"deb [arch={self.debian_arch} signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            f"{debian_image.apt_mirror()} {debian_image.SUITE} main\n")
        _run(["apt-get", "-q", *self.options, "update"], "apt-get update (private lists)")

    def download(self, package: str, version: str, into: Path) -> Path:
        """Fetch one package file into ``into`` (apt-get download writes to its cwd)."""
        _run(["apt-get", "-q", *self.options, "download", f"{package}={version}"],
             f"Downloading {package}", cwd=into)
        found = sorted(into.glob(f"{package}_*.deb"))
        if not found:
            raise LabError(f"apt-get download left no {package}_*.deb in {into}.")
        return found[-1]


# -- the steps ----------------------------------------------------------------------

def _run(argv: list[str], what: str, cwd: Optional[Path] = None, timeout: float = 1800,
         stdin: Optional[IO[bytes]] = None) -> str:
    done = subprocess.run(argv, capture_output=True, cwd=cwd, timeout=timeout, stdin=stdin)
    out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    if done.returncode != 0:
        tail = " | ".join((err or out).strip().splitlines()[-3:])
        raise LabError(f"{what} failed ({argv[0]} exited {done.returncode}): {tail}")
    return out


def unpack_deb(deb: Path, root: Path) -> None:
    """A package's files into ``root``, as debootstrap's first stage unpacks them.

    Debian 12's root has merged /usr: /bin, /sbin and /lib are symlinks into
    /usr. ``dpkg-deb -x`` would replace each with a real directory, splitting
    the tree; tar keeps them with ``--keep-directory-symlink``.
    """
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as feed:
        _run(["tar", "-x", "--keep-directory-symlink", "-C", str(root)], f"Unpacking {deb.name}",
             stdin=feed.stdout)
    if feed.returncode != 0:
        raise LabError(f"dpkg-deb could not read {deb} (exit {feed.returncode}).")


def fetch_kernel_into(root: Path, platform: platforms.Platform, scratch: Path) -> tuple[str, str]:
    """Debian's current kernel for ``platform``, unpacked into ``root``; (release, version)."""
    apt = PrivateApt(scratch / "apt", platform.debian_arch)
    apt.update()
    package, version = guest_kernel.newest_available((platform.kernel_package,), apt.options)
    deb = apt.download(package, version, scratch)
    unpack_deb(deb, root)
    release = guest_kernel.release_of(package)
    # The package's install script would run depmod; run it on the tree, from here.
    _run(["depmod", "-b", str(root), release], "depmod on the guest's modules")
    return release, version


def unpack_downloaded(root: Path) -> int:
    """Unpack every package the first stage downloaded; returns how many.

    The first stage unpacks only the essential packages; the rest wait for
    the second. Unpacking them now (files only, no scripts) lets the guest
    that runs the second stage already find modprobe and busybox.
    """
    debs = sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    for deb in debs:
        unpack_deb(deb, root)
    return len(debs)


def _applies_to_guest(marker: str) -> bool:
    """A requirement line's ``python_version >= "3.11"`` marker, judged for the guest's Python."""
    if not marker:
        return True
    match = re.fullmatch(r'python_version\s*(>=|<|==)\s*"([\d.]+)"', marker.strip())
    if match is None:
        raise LabError(f"The guest's wheels understand python_version markers only, not {marker!r}.")
    op, version = match.groups()
    guest, wanted = (tuple(int(x) for x in v.split(".")) for v in (PYTHON, version))
    return {">=": guest >= wanted, "<": guest < wanted, "==": guest == wanted}[op]


def pinned(names: tuple[str, ...] = REQUIREMENTS, requirements: Path = REPO / "requirements.txt",
           ) -> list[str]:
    """``name==version`` for each of ``names``, as requirements.txt pins it for Python 3.11."""
    pins = {}
    for line in requirements.read_text().splitlines():
        spec, _, marker = line.split("#")[0].partition(";")
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", spec.strip())
        if match and _applies_to_guest(marker):
            pins[match.group(1).lower()] = spec.strip()
    missing = [name for name in names if name not in pins]
    if missing:
        raise LabError(f"requirements.txt pins no {', '.join(missing)}: the guest's wheels "
                       "are fetched at the versions pinned there.")
    return [pins[name] for name in names]


def install_wheels(target: Path, platform: platforms.Platform, requirements: list[str]) -> Path:
    """The requirements as wheels for ``platform``, unzipped into ``target``.

    ``--platform`` makes pip choose wheels for another machine; it then only
    accepts ready-made wheels (``--only-binary``) and unzips them into
    ``--target`` - nothing is built or run here.
    """
    arch = platform.arch
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "--no-input", "--target", str(target), "--only-binary=:all:",
          "--platform", f"manylinux2014_{arch}", "--platform", f"manylinux_2_28_{arch}",
          "--python-version", PYTHON, "--implementation", "cp",
          "--abi", f"cp{PYTHON.replace('.', '')}", *requirements], "pip install (guest wheels)")
    return target


#: Runs in the guest. The second stage works on a copy-on-write view of the userland
#: (overlayfs: the 9p share below, the guest's RAM above): dpkg's many small writes and
#: fsyncs then stay inside the guest instead of each crossing 9p to the host, and
#: device nodes can be made. The finished tree comes back as one tar stream.
SECOND_STAGE_SCRIPT = """\
set -e
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
uname -m > {log}/machine
mkdir -p /tmp/upper /tmp/work /tmp/target
mount -t overlay -o lowerdir={target},upperdir=/tmp/upper,workdir=/tmp/work overlay /tmp/target
chroot /tmp/target /debootstrap/debootstrap --second-stage > {log}/second-stage.log 2>&1
tar -C /tmp/target --one-file-system --numeric-owner -cf {log}/root.tar .
"""


def second_stage(userland: Userland, timeout: float = SECOND_STAGE_TIMEOUT) -> None:
    """Boot the guest over its unconfigured userland, let it configure a copy, take that back.

    The guest's root is the userland, read-only under a tmpfs as always;
    the same directory is shared once more at ``GUEST_TARGET``, where the
    guest's own debootstrap configures every package (see the script).
    """
    share = userland.directory / "second-stage"
    share.mkdir()
    try:
        (share / "run.sh").write_text(SECOND_STAGE_SCRIPT.format(log=GUEST_LOG, target=GUEST_TARGET))
        config = initramfs.guest_config(
            userland.kernel, run=GUEST_LOG / "run.sh", memory_mb=2048, cpus=2,
            root=userland.guest_root,
            shares=[Share(LOG_TAG, share, writable=True, guest_path=GUEST_LOG),
                    Share(TARGET_TAG, userland.root, guest_path=GUEST_TARGET)])
        with VM.start(config) as vm:
            vm.wait_for(initramfs.READY_MARKER, 600, (initramfs.FAILED_MARKER,))
            done = vm.wait_for(initramfs.EXIT_MARKER, timeout, (initramfs.FAILED_MARKER,))
            vm.wait(timeout=60)
        code = int(done.line.split()[-1])
        log = share / "second-stage.log"
        if code != 0:
            text = log.read_text(errors="replace") if log.exists() else "no log"
            tail = " | ".join(text.strip().splitlines()[-4:])
            raise LabError(f"debootstrap's second stage failed in the guest (exit {code}): {tail}")
        configured = userland.directory / "root.configured"
        configured.mkdir()
        _run(["tar", "-C", str(configured), "--numeric-owner", "-xpf", str(share / "root.tar")],
             "Unpacking the configured userland")
        shutil.rmtree(userland.root)
        configured.rename(userland.root)
    finally:
        shutil.rmtree(share, ignore_errors=True)
        shutil.rmtree(userland.directory / "root.configured", ignore_errors=True)


# -- the cache ----------------------------------------------------------------------

def cache_key(arch: str) -> str:
    """Changes with anything that goes in: suite, packages, pinned wheels, the stage script."""
    parts = [arch, debian_image.SUITE, *PACKAGES, SECOND_STAGE_SCRIPT, PYTHON]
    return f"{arch}-{hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:10]}"


def _load(directory: Path) -> Optional[Userland]:
    try:
        data = json.loads((directory / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    userland = Userland(data["arch"], directory, data["kernel_release"], data["kernel_version"],
                        data["steps"])
    ok = (userland.root / "usr" / "bin" / "python3").exists() and userland.kernel.vmlinuz.is_file()
    return userland if ok else None


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    FOREIGN_CACHE.mkdir(parents=True, exist_ok=True)
    with open(FOREIGN_CACHE / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cached(arch: str) -> Optional[Userland]:
    """The built userland for ``arch``, or None (never builds)."""
    return _load(FOREIGN_CACHE / cache_key(arch))


def _assemble(arch: str, work: Path, progress: tqdm) -> Userland:
    platform = platforms.of(arch)
    root = work / "root"
    steps: dict[str, float] = {}

    def timed(name: str, action: Callable[[], object]) -> object:
        progress.set_postfix_str(name)
        started = time.monotonic()
        result = action()
        steps[name] = round(time.monotonic() - started, 1)
        progress.update(1)
        return result

    timed("first stage", lambda: debian_image.debootstrap(
        root, PACKAGES, lambda detail: progress.set_postfix_str(f"first stage {detail}"),
        foreign_arch=platform.debian_arch))
    proc = root / "proc"
    if proc.is_symlink():
        # debootstrap takes a host with /.dockerenv for a Docker container and links the
        # target's /proc to "/proc"; in the guest that link would point at itself.
        proc.unlink()
        proc.mkdir(mode=0o555)
    release, version = timed("kernel", lambda: fetch_kernel_into(root, platform, work))
    timed("unpack", lambda: unpack_downloaded(root))
    userland = Userland(arch, work, release, version, steps)
    timed("second stage", lambda: second_stage(userland))
    if not (root / "var" / "lib" / "dpkg" / "status").read_text().count("install ok installed") > 50:
        raise LabError("The second stage ended with few packages configured in the guest's root.")
    if not (root / "etc" / "passwd").is_file():
        raise LabError("The second stage ended without /etc/passwd in the guest's root.")
    shutil.rmtree(work / "apt", ignore_errors=True)
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    (work / _MANIFEST).write_text(json.dumps(
        {"arch": arch, "kernel_release": release, "kernel_version": version, "steps": steps},
        indent=1))
    return userland


def build(arch: str = "aarch64", show_progress: bool = True) -> Userland:
    """The userland for ``arch``, built once per machine and input; instant when cached."""
    require_root("Building a guest userland")
    if platforms.is_host(arch):
        raise LabError(f"{arch} is this host's own architecture: its guests boot over the "
                       "host's root (vm.run_in_guest), no foreign userland is needed.")
    platforms.of(arch)
    for tool, package in (("debootstrap", "debootstrap"), ("dpkg-deb", "dpkg"),
                          ("depmod", "kmod"), ("apt-get", "apt")):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed: run `sudo ./lab install` "
                           f"(it installs the {package} package).")
    final = FOREIGN_CACHE / cache_key(arch)
    with _lock():
        found = _load(final)
        if found is not None:
            return found
        work = FOREIGN_CACHE / f"{final.name}.building"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            with tqdm(total=len(STEPS), desc=f"{arch} userland", unit="step",
                      disable=not show_progress) as bar:
                _assemble(arch, work, bar)
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    userland = _load(final)
    assert userland is not None
    return userland


@dataclass(frozen=True)
class Wheels:
    """The pinned requirements as wheels for one architecture, unzipped in the cache."""

    path: Path
    requirements: tuple[str, ...]
    seconds: float  # the wall time pip took when they were fetched

    @property
    def share(self) -> Share:
        return Share(WHEELS_TAG, self.path, guest_path=GUEST_WHEELS)


def wheels(arch: str) -> Wheels:
    """The guest's Python packages for ``arch``, fetched once per set of pins."""
    requirements = pinned()
    digest = hashlib.sha256(json.dumps([arch, PYTHON, *requirements]).encode()).hexdigest()[:10]
    final = FOREIGN_CACHE / f"{arch}-wheels-{digest}"
    manifest = final / ".wheels.json"
    with _lock():
        if not manifest.is_file():
            work = final.with_name(final.name + ".building")
            shutil.rmtree(work, ignore_errors=True)
            started = time.monotonic()
            try:
                install_wheels(work, platforms.of(arch), requirements)
                (work / manifest.name).write_text(json.dumps(
                    {"requirements": requirements,
                     "seconds": round(time.monotonic() - started, 1)}))
                shutil.rmtree(final, ignore_errors=True)
                work.rename(final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    data = json.loads(manifest.read_text())
    return Wheels(final, tuple(data["requirements"]), data["seconds"])


def boot_parts(arch: str) -> tuple[GuestKernel, initramfs.GuestRoot, list[Share]]:
    """The kernel, root and shares a guest of ``arch`` boots with (built if needed)."""
    userland = build(arch, show_progress=sys.stderr.isatty())
    return userland.kernel, userland.guest_root, [wheels(arch).share]
