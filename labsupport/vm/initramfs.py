"""The guest's first root: a busybox initramfs whose /init borrows the host's root.

A VM needs a root filesystem, and building a disk image takes minutes. The
lab's guest needs none: the kernel unpacks this small archive (cpio "newc",
gzip) into RAM and runs ``/init``, a busybox shell script that

1. loads the few modules needed to reach the host (virtio-mmio, 9p, overlay),
2. mounts the host's ``/`` read-only over 9p (virtio-9p, a paravirtual
   device: the guest knows it runs on QEMU and asks it for files),
3. puts a tmpfs on top with overlayfs, so the guest may write anywhere and
   every write vanishes at power-off,
4. mounts its *own* proc, sys, dev, cgroup2, tmp and run there, plus the
   extra 9p shares the host asked for (``lab.mount=TAG:PATH``),
5. switches to that root (``switch_root``, so it is the mount namespace's
   real root, not a chroot), prints the ready marker, runs ``lab.run`` (a
   script), prints the exit marker with its exit code, and powers off.

So the guest runs the host's own Python and the lab's own checkout, on a
different kernel - with pure cgroup v2 whatever the host uses.

The archive is written by Python (no ``cpio`` tool needed) and is
deterministic, so its name can carry a hash of everything that went in.
"""
from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from tqdm import tqdm

from labsupport import ownership
from labsupport.kernel.errors import LabError
from labsupport.vm.guest_kernel import GuestKernel, fetch_kernel
from labsupport.vm.qemu import Share, VMConfig

INITRAMFS_CACHE = ownership.CACHE_DIR / "vm" / "initramfs"
BUSYBOX = Path("/bin/busybox")

#: The /init protocol, shared with the host side (qemu.py, guest_tests.py).
READY_MARKER = "LAB-GUEST-READY"
EXIT_MARKER = "LAB-GUEST-EXIT"
FAILED_MARKER = "LAB-GUEST-FAILED"
HOST_ROOT_TAG = "hostroot"

#: Modules /init loads before any root exists; everything else is modprobed
#: later from the guest kernel's module tree in the cache, reached over 9p.
BOOT_MODULES = ("virtio_mmio", "9pnet_virtio", "9p", "overlay")

# Options for every 9p mount: the Linux dialect, and 256 KiB messages
# instead of the 8 KiB default (far fewer round trips through QEMU).
NINEP_OPTIONS = "trans=virtio,version=9p2000.L,msize=262144"

#: What every lab guest's /init does first: a way to fail loudly, the kernel command line's
#: lab.NAME=VALUE words, the kernel's file systems, and the driver modules (@MODULES@).
GUEST_PRELUDE = r"""fail() { echo "@FAILED@ $*"; poweroff -f; }
# Every value of a lab.NAME=VALUE word on the kernel command line.
param() { for word in $(cat /proc/cmdline); do case "$word" in "$1="*) echo "${word#*=}";; esac; done; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in @MODULES@; do
    insmod "/lib/modules/$module" || fail "cannot load $module"
done
"""

INIT_TEMPLATE = r"""#!/bin/sh
# PID 1 of the lab's guest, stage 1: build the real root, then switch to it.
export PATH=/sbin:/bin
""" + GUEST_PRELUDE + r"""
mount -t 9p -o ro,cache=loose,@NINEP@ @HOSTROOT@ /host || fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755 upper /upper
mkdir /upper/data /upper/work
mount -t overlay -o lowerdir=/host,upperdir=/upper/data,workdir=/upper/work overlay /newroot \
    || fail "cannot put an overlay on the host root"

cd /newroot
mount -t proc proc proc
mount -t sysfs sysfs sys
# Mounted the way systemd mounts it on a pure-v2 machine.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 sys/fs/cgroup || fail "cannot mount cgroup2"
mount -t bpf bpf sys/fs/bpf
mount -t devtmpfs devtmpfs dev
mkdir -p dev/pts dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts dev/pts
mount -t tmpfs -o mode=1777 shm dev/shm
# Fresh, like a machine that just booted. An overlay cannot be the upper
# layer of another overlay, so where the lab puts upper layers is a tmpfs too.
mount -t tmpfs -o mode=1777 tmp tmp
mount -t tmpfs -o mode=0755 run run
mkdir -p var/lib/labsupport
mount -t tmpfs -o mode=0755 labwork var/lib/labsupport || fail "cannot mount /var/lib/labsupport"
# The guest kernel's modules, from the lab cache, where modprobe looks for them.
mkdir -p "lib/modules/$(uname -r)"
mount --bind ".@MODULE_TREE@" "lib/modules/$(uname -r)" || fail "cannot find the guest's modules"
for spec in $(param lab.mount); do
    mkdir -p ".${spec#*:}"
    mount -t 9p -o @NINEP@ "${spec%%:*}" ".${spec#*:}" || fail "cannot mount the share ${spec%%:*}"
done
mkdir run/lab-guest
cp /bin/busybox /stage2 run/lab-guest/
cd /
umount /proc /sys /dev
# switch_root moves /newroot onto / and chroots there: the new root is then the
# mount namespace's own root - a mere chroot is not, and the kernel refuses
# user namespaces to a chrooted process.
exec switch_root /newroot /run/lab-guest/busybox sh /run/lab-guest/stage2
"""

STAGE2_TEMPLATE = r"""# PID 1 of the lab's guest, stage 2: in the host's root (over 9p, under a tmpfs).
bb=/run/lab-guest/busybox
fail() { echo "@FAILED@ $*"; $bb poweroff -f; }
param() { for word in $($bb cat /proc/cmdline); do case "$word" in "$1="*) echo "${word#*=}";; esac; done; }
# PID 1 shares its root with the kernel's threads, so from here on the kernel
# loads modules (a veth link, a qdisc...) with the host's own /sbin/modprobe.
# /dev/loop-control only appears once the loop module is in.
/sbin/modprobe loop || fail "cannot load the loop module"
# systemd makes every mount shared at boot; so does the guest, like a learner's machine.
$bb mount --make-rshared /
$bb hostname labguest
$bb ip link set lo up

echo "@READY@ $($bb uname -r)"
run=$(param lab.run)
if [ -z "$run" ]; then
    while :; do $bb sleep 3600; done
fi
$bb env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 TERM=dumb /bin/sh "$run"
echo "@EXIT@ $?"
$bb sync
$bb poweroff -f
"""


# -- modules -------------------------------------------------------------------

def _module_name(path: str) -> str:
    """``kernel/net/9p/9pnet_virtio.ko.xz`` -> ``9pnet_virtio`` (the kernel treats - as _)."""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def read_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep as {path: [paths it needs]}."""
    deps = {}
    for line in text.splitlines():
        if ":" in line:
            module, _, needs = line.partition(":")
            deps[module.strip()] = needs.split()
    return deps


def load_order(deps: dict[str, list[str]], names: Sequence[str]) -> list[str]:
    """The module files to insmod, each after the ones it needs."""
    by_name = {_module_name(path): path for path in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for needed in deps.get(path, []):
            visit(needed)
        order.append(path)

    for name in names:
        path = by_name.get(name.replace("-", "_"))
        if path is None:
            raise LabError(f"The guest kernel has no module {name!r} (is it built in, "
                           "or misspelt?): pick one from its modules.dep.")
        visit(path)
    return order


def module_bytes(path: Path) -> bytes:
    """A module file, decompressed: busybox insmod reads plain .ko only."""
    data = path.read_bytes()
    if path.name.endswith(".ko"):
        return data
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    raise LabError(f"{path.name} is compressed in a way the lab cannot unpack "
                   "(only .ko and .ko.xz): use a kernel with such modules.")


# -- cpio newc -------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One member of a cpio archive."""

    name: str  # without a leading slash, as the kernel expects
    mode: int  # file type and permission bits, as in st_mode
    data: bytes = b""  # a file's bytes, or a symlink's target
    rdev: tuple[int, int] = (0, 0)  # a device node's (major, minor)


def directory(name: str) -> Entry:
    return Entry(name, stat.S_IFDIR | 0o755)


def file(name: str, data: bytes, mode: int = 0o644) -> Entry:
    return Entry(name, stat.S_IFREG | mode, data)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def char_device(name: str, major: int, minor: int, mode: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFCHR | mode, rdev=(major, minor))


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _newc_member(inode: int, entry: Entry) -> bytes:
    name = entry.name.encode() + b"\0"
    fields = (inode, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, *entry.rdev, len(name), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    return header + name + _pad4(len(header) + len(name)) + entry.data + _pad4(len(entry.data))


def write_newc(entries: Iterable[Entry]) -> bytes:
    """An uncompressed cpio archive in the "newc" format the kernel unpacks.

    Every header field is 8 hex digits; names and data are padded to 4 bytes;
    mtimes and owners are 0 so the same input gives the same bytes.
    """
    members = [_newc_member(inode, entry) for inode, entry in enumerate(entries, start=1)]
    return b"".join(members) + _newc_member(0, Entry("TRAILER!!!", 0))


def read_newc(data: bytes) -> Iterator[Entry]:
    """The members of a newc archive (gzip-compressed or not), for looking inside."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    offset = 0
    while True:
        if data[offset:offset + 6] != b"070701":
            raise LabError("This is not a cpio archive in the newc format.")
        fields = [int(data[offset + 6 + 8 * i: offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, name_size = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name_start = offset + 110
        name = data[name_start:name_start + name_size - 1].decode()
        data_start = name_start + name_size + (-(110 + name_size) % 4)
        if name == "TRAILER!!!":
            return
        yield Entry(name, mode, data[data_start:data_start + size], rdev)
        offset = data_start + size + (-size % 4)


# -- the guest's initramfs --------------------------------------------------------

def fill(template: str, module_files: Sequence[str], module_tree: Path) -> str:
    """A script template with the module list, paths and markers filled in."""
    values = {"@MODULES@": " ".join(module_files), "@NINEP@": NINEP_OPTIONS,
              "@HOSTROOT@": HOST_ROOT_TAG, "@MODULE_TREE@": str(module_tree),
              "@READY@": READY_MARKER, "@EXIT@": EXIT_MARKER, "@FAILED@": FAILED_MARKER}
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    return template


@dataclass(frozen=True)
class GuestRoot:
    """The tree a guest boots over (read-only, under a tmpfs), and what /init takes from it.

    The default is the host's own root. A guest of another architecture
    boots over a Debian userland of its own instead (``foreign``): its
    busybox is built for that architecture, and its kernel's modules lie
    inside that userland rather than in the host's cache.
    """

    path: Path = Path("/")  # on the host; shared with the guest over 9p
    busybox: Path = BUSYBOX  # a static busybox the guest's CPU can run
    modules_inside: Optional[str] = None  # the module tree as the guest sees it; None: the cache's
    arch: Optional[str] = None  # the guest's architecture; None: the host's
    cache: Path = INITRAMFS_CACHE  # one archive per root kind: a build replaces only its own


HOST_ROOT = GuestRoot()


def _busybox_applets() -> list[str]:
    """The applets to link, as the host's busybox lists them.

    Asked of the host's busybox even for a guest of another architecture,
    whose binary cannot run here: both come from the same Debian release.
    """
    if not BUSYBOX.is_file():
        raise LabError("busybox is not installed: run `sudo ./lab install` (it installs busybox-static).")
    out = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def entries(kernel: GuestKernel, modules: Sequence[str] = BOOT_MODULES,
            root: GuestRoot = HOST_ROOT) -> list[Entry]:
    """Everything the archive holds, in the order the kernel must create it."""
    deps = read_modules_dep((kernel.modules / "modules.dep").read_text())
    order = load_order(deps, modules)
    # Stored decompressed, so the names lose any .xz.
    stored = [path.split(".ko")[0] + ".ko" for path in order]
    members = [directory(d) for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev",
                                      "proc", "sys", "host", "upper", "newroot", "lib",
                                      "lib/modules")]
    members.append(char_device("dev/console", 5, 1))
    members.append(file("bin/busybox", root.busybox.read_bytes(), 0o755))
    members += [symlink(applet, "/bin/busybox") for applet in _busybox_applets()
                if applet != "bin/busybox"]
    tree = Path(root.modules_inside or kernel.modules)
    members.append(file("init", fill(INIT_TEMPLATE, stored, tree).encode(), 0o755))
    members.append(file("stage2", fill(STAGE2_TEMPLATE, stored, tree).encode()))
    module_dirs = {str(parent) for name in stored for parent in Path("lib/modules", name).parents}
    members += [directory(d) for d in sorted(module_dirs - {".", "lib", "lib/modules"})]
    members += [file(f"lib/modules/{name}", module_bytes(kernel.modules / path))
                for path, name in zip(order, stored)]
    return members


def _cache_key(kernel: GuestKernel, modules: Sequence[str], root: GuestRoot = HOST_ROOT) -> str:
    """Changes whenever anything that goes into the archive changes."""
    h = hashlib.sha256()
    for part in (kernel.release, kernel.version, str(kernel.modules), " ".join(modules),
                 INIT_TEMPLATE, STAGE2_TEMPLATE, NINEP_OPTIONS):
        h.update(part.encode() + b"\0")
    if root.modules_inside is not None:
        h.update(root.modules_inside.encode() + b"\0")
    busybox = root.busybox
    h.update(hashlib.sha256(busybox.read_bytes()).digest() if busybox.is_file() else b"")
    return h.hexdigest()[:16]


def build(kernel: GuestKernel, modules: Sequence[str] = BOOT_MODULES,
          cache: Optional[Path] = None, root: GuestRoot = HOST_ROOT) -> Path:
    """The guest's initramfs (cpio newc, gzip), built once per input into the cache."""
    cache = cache or root.cache
    target = cache / f"{kernel.release}-{_cache_key(kernel, modules, root)}.cpio.gz"
    if target.is_file():
        return target
    data = gzip.compress(write_newc(entries(kernel, modules, root)), compresslevel=6, mtime=0)
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("*.cpio.gz"):
        old.unlink()
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.rename(target)
    return target


def guest_config(kernel: GuestKernel, run: Optional[Path] = None, shares: Sequence[Share] = (),
                 memory_mb: int = 512, cpus: int = 2, accelerator: Optional[str] = None,
                 root: GuestRoot = HOST_ROOT) -> VMConfig:
    """A VM booting this initramfs on ``kernel``, over the host's root (or ``root``).

    Each share in ``shares`` appears inside at the path named by its tag's
    ``guest_path``; ``run`` is a script (a path as the guest sees it) that
    the guest runs and then powers off - without it the guest idles until
    it is stopped.
    """
    args = [f"lab.mount={s.tag}:{s.guest_path}" for s in shares]
    if run is not None:
        args.append(f"lab.run={run}")
    return VMConfig(kernel=kernel.boot_image, initrd=build(kernel, root=root),
                    kernel_args=tuple(args), shares=(Share(HOST_ROOT_TAG, root.path), *shares),
                    memory_mb=memory_mb, cpus=cpus, accelerator=accelerator, arch=root.arch)


def prepare(show_progress: bool = True) -> tuple[GuestKernel, Path]:
    """Fetch the guest kernel and build the initramfs, with a progress bar: what `setup` does.

    Only the first run is slow (a 70 MB download and a 400 MB unpack); later
    runs find both in the cache and return at once.
    """
    steps = ("download", "unpack", "depmod", "extract", "initramfs")
    with tqdm(total=len(steps), desc="guest VM", unit="step", disable=not show_progress) as bar:
        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.n = steps.index(name.split()[0])
            bar.refresh()

        kernel = fetch_kernel(step)
        step("initramfs")
        initrd = build(kernel)
        bar.n = len(steps)
    return kernel, initrd
