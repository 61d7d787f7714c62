"""Paravirtual devices against emulated ones, measured inside the guest.

One guest machine (``-M pc``) carries four devices at once - a virtio disk
and an IDE disk, a virtio NIC and an e1000 NIC (``table()`` lists them with
their drivers). An emulated device (전가상화, full virtualization) lets the guest's
unmodified driver program fake hardware: every register access traps into
QEMU, which acts out what the chip would do. A virtio device (반가상화,
paravirtualization) only exists because the guest knows it is virtualized:
its driver puts whole requests on a ring in shared memory and rings one
doorbell. Under TCG the emulated device pays twice - once to emulate the
chip, once to translate the driver's instructions that poke it.

Every trial is one fresh boot of the same machine that measures one device,
so each read starts with a cold guest page cache and the runner can
interleave the four devices round by round. (One boot measuring all four
would be cheaper, but the order inside the guest would be fixed, and the
later devices would find the kernel's code already translated by TCG.)
The guest times the work with
its own clock (/proc/uptime) and prints one marker line; QEMU's wall time,
boot included, never enters the figure.

The disks read two sparse image files (holes read as zeros, so the host's
storage is not what is measured); the NICs fetch a payload over HTTP from a
lab-owned server on the host's 127.0.0.1, through QEMU's user-mode network
(each NIC on its own netdev and subnet; no bridge, no tap, nothing leaves
the machine: the guest only ever talks to the host alias 10.0.2.2/10.0.3.2).
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from labsupport import ownership, process
from labsupport.bench.result import BenchResult, number
from labsupport.bench.runner import Peer, run_peers
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.vm import initramfs
from labsupport.vm.guest_kernel import GuestKernel, fetch_kernel
from labsupport.vm.initramfs import char_device, directory, file, symlink, write_newc
from labsupport.vm.qemu import VM, VMConfig

DEVICES_CACHE = ownership.CACHE_DIR / "vm" / "devices"
#: Loaded in every boot, so the four trials boot the very same guest.
MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "ata_piix", "sd_mod", "e1000")
MARKER, FAILED = "LAB-DEVICE", "LAB-DEVICE-FAILED"
#: What each trial moves (halved by ``quick``): read from a disk, or fetched over a NIC.
DISK_MIB, NIC_MIB = 32, 16
#: Each disk read is one request of a page (what a page fault or a database asks for). The
#: emulated disk's register dance is paid per request, so larger blocks hide it: 64 KiB
#: reads ran neck and neck here, within the noise of a shared machine.
BLOCK_KIB = 4
ROUNDS, QUICK_ROUNDS = 3, 1
TRIAL_TIMEOUT = 180.0
PARAVIRTUAL, EMULATED = "virtio (paravirtual)", "emulated"
DISK_GROUP, NIC_GROUP = "disk read (virtio-blk vs IDE)", "NIC download (virtio-net vs e1000)"


@dataclass(frozen=True)
class Device:
    """One device the guest measures: what it is, and what /init does with it."""

    group: str
    series: str
    workload: str  # the /init function and its arguments
    hardware: str  # what QEMU shows the guest
    driver: str  # the guest's driver, and how it talks to the device


#: netdev n0 is 10.0.2.0/24, n1 10.0.3.0/24; QEMU's own host alias is .2 in each.
DEVICES = {
    "virtio-blk": Device(DISK_GROUP, PARAVIRTUAL, "disk /dev/vda", "a virtio disk on PCI",
                         "virtio_blk: whole requests on a ring in shared memory, one doorbell"),
    "IDE": Device(DISK_GROUP, EMULATED, "disk /dev/sda", "the PIIX IDE controller of a 1990s PC",
                  "ata_piix (libata) + sd_mod: ATA task-file and DMA registers, port by port"),
    "virtio-net": Device(NIC_GROUP, PARAVIRTUAL, "nic virtio_net 10.0.2.15 10.0.2.2",
                         "a virtio NIC on PCI",
                         "virtio_net: packet buffers on shared rings, one doorbell per batch"),
    "e1000": Device(NIC_GROUP, EMULATED, "nic e1000 10.0.3.15 10.0.3.2",
                    "an Intel 82540EM gigabit NIC",
                    "e1000: the real chip's descriptor and interrupt registers"),
}


def table() -> Table:
    """The four devices of the measuring machine, with the guest driver that drives each."""
    rows = [[name, "반가상화 (paravirtualization)" if d.series == PARAVIRTUAL
             else "전가상화 (full virtualization, emulated)",
             d.hardware, d.driver] for name, d in DEVICES.items()]
    return Table(["device", "kind", "QEMU shows the guest", "the guest's driver talks by"], rows,
                 caption="One -M pc machine, four devices")


INIT = r"""#!/bin/sh
export PATH=/bin
""" + initramfs.GUEST_PRELUDE + r"""now() { cut -d' ' -f1 /proc/uptime; }
mib=$(param lab.mib)

disk() {  # read $mib MiB from block device $1, bypassing the page cache
    # libata finds its disks asynchronously, after insmod has returned.
    for i in $(seq 100); do [ -b "$1" ] && break; sleep 0.1; done
    [ -b "$1" ] || fail "no block device $1"
    start=$(now)
    dd if="$1" of=/dev/null bs=@BLOCK_KIB@k count=$((mib * 1024 / @BLOCK_KIB@)) iflag=direct 2>/dev/null \
        || fail "cannot read $1"
    echo "@MARKER@ $(param lab.device) $((mib * 1048576)) $start $(now)"
}

nic() {  # bring up the NIC driven by $1 as $2, fetch the payload from the host $3
    for link in /sys/class/net/*; do
        [ "$(basename "$(readlink "$link/device/driver")")" = "$1" ] && name=${link##*/}
    done
    [ -n "$name" ] || fail "no network interface driven by $1"
    ip link set "$name" up && ip addr add "$2/24" dev "$name" || fail "cannot configure $name"
    start=$(now)
    wget -q -O /dev/null "http://$3:$(param lab.port)/payload" || fail "cannot fetch over $name"
    echo "@MARKER@ $(param lab.device) $((mib * 1048576)) $start $(now)"
}

$(param lab.workload | tr , ' ')
poweroff -f
"""


def _init_script(module_files: list[str]) -> str:
    return (INIT.replace("@MODULES@", " ".join(module_files)).replace("@BLOCK_KIB@", str(BLOCK_KIB))
            .replace("@MARKER@", MARKER).replace("@FAILED@", FAILED))


def build_initramfs(kernel: GuestKernel) -> Path:
    """busybox, the drivers of the four devices (with what they need) and the /init above."""
    deps = initramfs.read_modules_dep((kernel.modules / "modules.dep").read_text())
    order = initramfs.load_order(deps, MODULES)
    stored = [Path(path).name.split(".ko")[0] + ".ko" for path in order]  # busybox insmod: plain .ko
    init = _init_script(stored)
    key = hashlib.sha256(f"{kernel.release}\0{kernel.version}\0{init}".encode()).hexdigest()[:12]
    target = DEVICES_CACHE / f"{kernel.release}-{key}.cpio.gz"
    if target.is_file():
        return target
    members = [directory(d) for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules")]
    members += [char_device("dev/console", 5, 1), file("bin/busybox", initramfs.BUSYBOX.read_bytes(), 0o755),
                file("init", init.encode(), 0o755)]
    members += [symlink(f"bin/{applet}", "busybox") for applet in
                ("sh", "mount", "insmod", "cat", "cut", "seq", "sleep", "dd", "echo", "basename",
                 "readlink", "ip", "wget", "tr", "poweroff")]
    members += [file(f"lib/modules/{name}", initramfs.module_bytes(kernel.modules / path))
                for path, name in zip(order, stored)]
    DEVICES_CACHE.mkdir(parents=True, exist_ok=True)
    for old in DEVICES_CACHE.glob("*.cpio.gz"):
        old.unlink()
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_bytes(gzip.compress(write_newc(members), compresslevel=6, mtime=0))
    partial.rename(target)
    return target


# -- the host's side: two disk images, one HTTP server ---------------------------------

@dataclass(frozen=True)
class Bench:
    """What every trial's guest shares: its kernel, initramfs, images and the payload server."""

    kernel: GuestKernel
    initrd: Path
    scratch: Path
    port: int
    disk_mib: int
    nic_mib: int

    def config(self, device: str) -> VMConfig:
        """The same -M pc machine with all four devices; only ``lab.workload`` differs."""
        if device not in DEVICES:
            raise LabError(f"There is no device {device!r} to measure; choose one of: "
                           f"{', '.join(DEVICES)}.")
        # romfile= : no network boot ROMs for SeaBIOS to load - the kernel is given directly.
        devices = ("-drive", f"file={self.scratch / 'virtio.img'},if=virtio,format=raw",
                   "-drive", f"file={self.scratch / 'ide.img'},if=ide,format=raw",
                   "-netdev", "user,id=n0,net=10.0.2.0/24",
                   "-device", "virtio-net-pci,netdev=n0,romfile=",
                   "-netdev", "user,id=n1,net=10.0.3.0/24",
                   "-device", "e1000,netdev=n1,romfile=")
        workload = DEVICES[device].workload
        mib = self.disk_mib if workload.startswith("disk") else self.nic_mib
        return VMConfig(kernel=self.kernel.boot_image, initrd=self.initrd, machine="pc",
                        memory_mb=256, cpus=1, extra_args=devices,
                        kernel_args=(f"lab.device={device}", f"lab.workload={workload.replace(' ', ',')}",
                                     f"lab.mib={mib}", f"lab.port={self.port}"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_listening(server: process.Child, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if server.returncode is not None or not Path(f"/proc/{server.pid}").exists():
            break
        time.sleep(0.05)
    raise LabError(f"The lab's payload server did not start listening on 127.0.0.1:{port}; "
                   "is the port taken? Run the benchmark again.")


@contextlib.contextmanager
def bench(quick: bool = False, kernel: Optional[GuestKernel] = None) -> Iterator[Bench]:
    """Images and the payload server for the duration of a run; all gone afterwards.

    The images and the payload are sparse files in a lab scratch directory
    (``clean`` removes one left behind); the server is Python's http.server
    started through the lab's process module, so it carries the lab's
    marker, and it is stopped by its PID.
    """
    kernel = kernel or fetch_kernel()
    initrd = build_initramfs(kernel)
    disk_mib, nic_mib = (DISK_MIB // 2, NIC_MIB // 2) if quick else (DISK_MIB, NIC_MIB)
    scratch = ownership.temp_dir("devices")
    server = None
    try:
        for name, size in (("virtio.img", disk_mib), ("ide.img", disk_mib), ("payload", nic_mib)):
            with open(scratch / name, "wb") as sparse:
                sparse.truncate(size * 2 ** 20)
        port = _free_port()
        server = process.start([sys.executable, "-m", "http.server", str(port),
                                "--bind", "127.0.0.1", "--directory", str(scratch)])
        _wait_until_listening(server, port)
        yield Bench(kernel, initrd, scratch, port, disk_mib, nic_mib)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# -- one trial ---------------------------------------------------------------------

def parse_marker(line: str) -> float:
    """MiB/s from /init's line ``LAB-DEVICE <device> <bytes> <start> <end>`` (uptime seconds).

    >>> parse_marker("LAB-DEVICE IDE 16777216 3.10 5.10")
    8.0
    """
    found = re.search(rf"{MARKER} (\S+) (\d+) ([\d.]+) ([\d.]+)", line)
    if not found:
        raise LabError(f"The guest printed {line!r}, not a measurement.")
    seconds = float(found.group(4)) - float(found.group(3))
    # /proc/uptime ticks in hundredths: a shorter transfer could not be timed.
    return int(found.group(2)) / 2 ** 20 / max(seconds, 0.01)


def measure(setup: Bench, device: str) -> float:
    """Boot the machine once, let the guest measure ``device``, return its MiB/s."""
    with VM.start(setup.config(device)) as vm:
        vm.wait_for(f"{MARKER} {device} ", timeout=TRIAL_TIMEOUT, fail_on=(FAILED,))
        # The console may hold half the line yet; /init powers off right after printing it.
        vm.wait(timeout=60)
        line = next(line for line in vm.console().splitlines() if f"{MARKER} {device} " in line)
    return parse_marker(line)


def run(rounds: Optional[int] = None, quick: bool = False,
        progress: Optional[bool] = None) -> BenchResult:
    """The four devices, interleaved round by round; ratios are virtio over emulated."""
    quick = quick or bool(os.environ.get("LAB_FAST"))
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    with bench(quick) as setup:
        peers = [Peer(d.series, (lambda name=name: measure(setup, name)), d.group)
                 for name, d in DEVICES.items()]
        result = run_peers(peers, rounds, name="devices", unit="MiB/s", baseline=EMULATED,
                           title="Inside the guest: paravirtual (virtio) vs emulated devices",
                           warmup=0 if quick else 1, progress=progress,
                           names_accelerator=True, higher_is_better=True)
    result.settings["note"] = (f"disk: {setup.disk_mib} MiB in {BLOCK_KIB} KiB O_DIRECT reads from a "
                               f"sparse raw image; NIC: {setup.nic_mib} MiB over HTTP from 127.0.0.1 "
                               "through QEMU user-mode networking; timed by the guest's own "
                               "/proc/uptime, one boot per trial")
    return result


def _pairs(result: BenchResult) -> dict[str, tuple[str, str, str]]:
    """{"disk": (group, virtio peer, emulated peer), "nic": ...} for the groups it holds."""
    found = {}
    for kind, group in (("disk", DISK_GROUP), ("nic", NIC_GROUP)):
        virtio, emulated = result.find(group, PARAVIRTUAL), result.find(group, EMULATED)
        if virtio and emulated:
            found[kind] = (group, virtio.name, emulated.name)
    return found


def gains(result: BenchResult) -> dict[str, float]:
    """{"disk": ..., "nic": ...}: virtio's median throughput over the emulated device's."""
    return {kind: result.ratio(virtio, emulated).value
            for kind, (_, virtio, emulated) in _pairs(result).items()}


def explain(result: BenchResult) -> str:
    """What the figures say, under the accelerator that produced them, in a few sentences."""
    accelerator = str(result.machine.get("accelerator", "?")).upper()
    lines = []
    for group, virtio, emulated in _pairs(result).values():
        ratio = result.ratio(virtio, emulated)
        para, emul = (number(result.summary(name).median) for name in (virtio, emulated))
        steady = ""
        if len(result.order) == 1:
            steady = " - one round only: no spread to tell a difference from noise"
        elif ratio.p25 <= 1 <= ratio.p75:
            steady = " - the per-round ratios straddle 1: no clear difference in this run"
        lines.append(f"{group}: virtio {para} MiB/s, emulated {emul} MiB/s; "
                     f"virtio delivers {ratio.value:.2f}x (p25-p75 {ratio.p25:.2f}-{ratio.p75:.2f}) "
                     f"the emulated device's throughput ({accelerator}, {len(result.order)} round(s))"
                     f"{steady}.")
    if accelerator == "TCG":
        lines.append("Under TCG the emulated device pays twice: QEMU emulates the chip, and it "
                     "translates every guest instruction of the driver that pokes the chip's "
                     "registers; virtio skips that register dance. A register access under TCG "
                     "is no world switch, though - the translated code calls QEMU's device model "
                     "directly - so the dance costs most where it is longest.")
    elif accelerator == "KVM":
        lines.append("Under KVM the driver's instructions run on the CPU, yet each register access "
                     "of the emulated device still exits to QEMU; virtio needs one exit per batch.")
    return "\n".join(lines)


def report(result: BenchResult) -> str:
    return f"{result}\n{explain(result)}"
