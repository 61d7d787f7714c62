"""A QEMU virtual machine as a Python object: start it, watch its console, measure it, stop it.

The face is psutil-like and the same whichever accelerator runs the guest::

    vm = VM.start(VMConfig(kernel=..., initrd=...))
    vm.wait_for("LAB-GUEST-READY", timeout=60)   # -> Reached(line, seconds, accelerator)
    vm.memory()                                  # -> RSS / PSS / USS of QEMU, labelled
    vm.stop()

*Which* accelerator is decided by ``labsupport.vm.kvm.probe_accelerator``, which
runs a test guest: on a machine with working KVM the guest's instructions run
natively on the CPU (hardware-assisted virtualization); elsewhere QEMU's TCG
translates every guest instruction into host code (full virtualization by
binary translation, several times slower). Every figure this module returns
names the accelerator it was measured with, so the two are never mixed up.

QEMU starts through ``labsupport.process``: it carries the lab's marker,
is registered, sits in its own process group and dies with its parent, so
``clean`` finds it and a killed notebook kernel takes it along.
"""
from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import psutil

from labsupport import ownership, process
from labsupport.kernel.errors import LabError
from labsupport.vm import platforms
from labsupport.vm.kvm import probe_accelerator

#: This host's emulator (a guest of another architecture names its own in VMConfig).
QEMU = platforms.host_or_x86().qemu
ACCELERATORS = ("kvm", "tcg")
KMSG = Path("/dev/kmsg")
CPUINFO = Path("/proc/cpuinfo")
POLL_SECONDS = 0.02


# -- the host's clock ------------------------------------------------------------

def tsc_khz_from_kernel_log(text: str) -> Optional[int]:
    """The host kernel's own TSC frequency from its log: the refined figure if it has one.

    >>> tsc_khz_from_kernel_log("tsc: Detected 2596.134 MHz processor")
    2596134
    """
    for pattern in (r"Refined TSC clocksource calibration: ([\d.]+) MHz",
                    r"tsc: Detected ([\d.]+) MHz (?:processor|TSC)"):
        found = re.findall(pattern, text)
        if found:
            return round(float(found[-1]) * 1000)
    return None


def tsc_khz_from_cpuinfo(text: str) -> Optional[int]:
    """The first 'cpu MHz' of /proc/cpuinfo: the TSC rate on a VM or a CPU at its base clock."""
    found = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.MULTILINE)
    return round(float(found.group(1)) * 1000) if found else None


def _kernel_log() -> str:
    """The host kernel's log as /dev/kmsg still holds it (one record per read)."""
    records = []
    try:
        fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        while True:
            try:
                records.append(os.read(fd, 8192).decode(errors="replace"))
            except BlockingIOError:
                return "".join(records)
            except OSError as err:
                if err.errno != errno.EPIPE:  # EPIPE: a record was overwritten; go on
                    return "".join(records)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def host_tsc_khz() -> int:
    """How fast this host's time-stamp counter ticks, in kHz.

    Under TCG the guest's ``rdtsc`` reads the host's counter, yet the guest
    kernel measures its rate against emulated timers that run at the mercy of
    translation - about one boot in three then hangs in calibration. Telling
    it the rate (``tsc_early_khz=``) skips the measurement. The host kernel's
    log holds the best figure; /proc/cpuinfo is the fallback when the log
    has rotated.
    """
    khz = tsc_khz_from_kernel_log(_kernel_log())
    if khz is None:
        try:
            khz = tsc_khz_from_cpuinfo(CPUINFO.read_text())
        except OSError:
            khz = None
    if not khz:
        raise LabError("Neither the kernel log nor /proc/cpuinfo tells this host's TSC "
                       "frequency, which QEMU's TCG guests need: run the lab on an x86_64 host.")
    return khz


# -- what to start -----------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def usable_accelerator() -> str:
    """'kvm' or 'tcg': what really runs a stock guest kernel here (probed once per process)."""
    return probe_accelerator().accelerator


def scratch_of(pid: int) -> Optional[Path]:
    """The lab scratch directory of a running QEMU the lab started (its console file's
    directory), for a clean-up that has only the PID; None if it has none."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    for arg in argv:
        if arg.startswith("file,id=console,path="):
            directory = Path(arg.split("path=", 1)[1].replace(",,", ",")).parent
            return directory if directory.parent == ownership.TEMP_DIR else None
    return None


def _qemu_value(value: object) -> str:
    """QEMU splits option values on commas; a literal comma is written twice."""
    return str(value).replace(",", ",,")


@dataclass(frozen=True)
class Share:
    """A host directory the guest mounts over virtio-9p under ``tag``.

    ``guest_path`` is where the guest should mount it; the lab's initramfs
    learns it from the kernel command line (see ``initramfs.guest_config``).
    """

    tag: str
    host_path: Path
    writable: bool = False
    guest_path: Optional[Path] = None

    def qemu_args(self, index: int) -> list[str]:
        # security_model=none: files keep the host's owners, the guest cannot chown them.
        # multidevs=remap: a tree spanning several host filesystems keeps unique inodes.
        fsdev = (f"local,id=fs{index},path={_qemu_value(self.host_path)},"
                 "security_model=none,multidevs=remap" + ("" if self.writable else ",readonly=on"))
        return ["-fsdev", fsdev, "-device", f"virtio-9p-device,fsdev=fs{index},mount_tag={self.tag}"]


@dataclass(frozen=True)
class VMConfig:
    """What to boot, and with how much: a direct kernel boot of QEMU's smallest machine.

    On x86 that is microvm: no PCI bus, no firmware menus and no emulated
    legacy disks - only virtio devices on memory-mapped I/O - so a kernel
    reaches user space in seconds even under TCG. On ARM it is ``virt``, which
    is built that way already (see ``platforms``). ``arch`` names the guest's
    architecture; None means the host's, and only then can KVM run it.
    """

    kernel: Path
    initrd: Optional[Path] = None
    kernel_args: tuple[str, ...] = ()
    shares: tuple[Share, ...] = ()
    memory_mb: int = 512
    cpus: int = 2
    accelerator: Optional[str] = None  # None: usable_accelerator()
    qemu: Optional[str] = None  # None: the emulator of the guest's architecture
    # What the full guest (fullvm) and the tuning comparison (tuning) change:
    machine: Optional[str] = None  # None: the architecture's machine (microvm, virt)
    tcg_options: str = "thread=multi"  # e.g. "thread=multi,tb-size=128" trims the translation cache
    base_kernel_args: tuple[str, ...] = ("panic=-1", "quiet")  # after console=<the serial port>
    extra_args: tuple[str, ...] = ()  # devices: disks, NICs
    arch: Optional[str] = None  # the guest's architecture (uname -m); None: the host's

    @property
    def platform(self) -> platforms.Platform:
        return platforms.of(self.arch)

    @property
    def emulator(self) -> str:
        return self.qemu or self.platform.qemu

    def check(self) -> None:
        """Refuse bad input before anything starts, one sentence each."""
        if shutil.which(self.emulator) is None:
            raise LabError(f"QEMU ({self.emulator}) is not installed: run `sudo ./lab install` "
                           f"(it installs the {self.platform.qemu_package} package).")
        if not Path(self.kernel).is_file():
            raise LabError(f"The guest kernel {self.kernel} does not exist: run "
                           "`python -m labsupport setup` to fetch it.")
        if self.initrd is not None and not Path(self.initrd).is_file():
            raise LabError(f"The initramfs {self.initrd} does not exist: run "
                           "`python -m labsupport setup` to build it.")
        if self.accelerator not in (None, *ACCELERATORS):
            raise LabError(f"Unknown accelerator {self.accelerator!r}: use 'kvm', 'tcg' or None.")
        if self.accelerator == "kvm" and not platforms.is_host(self.arch):
            raise LabError(f"KVM runs guests of this host's own architecture only, not "
                           f"{self.arch}: leave the accelerator to the lab (it picks TCG).")
        if self.memory_mb < 64 or self.cpus < 1:
            raise LabError("A guest needs at least 64 MiB of memory and one CPU.")
        for share in self.shares:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,31}", share.tag):
                raise LabError(f"The share tag {share.tag!r} must be 1-31 letters, digits, - or _.")
            if not Path(share.host_path).is_dir():
                raise LabError(f"The shared directory {share.host_path} does not exist.")
        for arg in self.kernel_args:
            if not arg or any(c.isspace() for c in arg):
                raise LabError(f"The kernel argument {arg!r} is empty or holds a space: "
                               "the kernel splits its command line on spaces.")

    def kernel_command_line(self, accelerator: str) -> str:
        args = [f"console={self.platform.console}", *self.base_kernel_args]
        if accelerator == "tcg" and self.platform.tsc_hint:
            args.append(f"tsc_early_khz={host_tsc_khz()}")
        return " ".join(args + list(self.kernel_args))

    def argv(self, accelerator: str, console: Path) -> list[str]:
        """QEMU's command line; the serial console goes to the file ``console``."""
        tcg_cpu = self.platform.tcg_cpu
        accel = ((["-accel", f"tcg,{self.tcg_options}".rstrip(",")]
                  + (["-cpu", tcg_cpu] if tcg_cpu else [])) if accelerator == "tcg"
                 else ["-accel", "kvm", "-cpu", "host"])
        argv = [self.emulator, "-M", self.machine or self.platform.machine, *accel, "-m", f"{self.memory_mb}M",
                "-smp", str(self.cpus), "-nodefaults", "-no-user-config", "-display", "none",
                "-no-reboot", "-chardev", f"file,id=console,path={_qemu_value(console)}",
                "-serial", "chardev:console", "-kernel", _qemu_value(self.kernel),
                "-append", self.kernel_command_line(accelerator)]
        if self.initrd is not None:
            argv += ["-initrd", _qemu_value(self.initrd)]
        for index, share in enumerate(self.shares):
            argv += share.qemu_args(index)
        return argv + list(self.extra_args)


# -- the running machine ---------------------------------------------------------------

@dataclass(frozen=True)
class Reached:
    """A console line the guest printed, and when (seconds after QEMU started)."""

    line: str
    seconds: float
    accelerator: str

    def __str__(self) -> str:
        return f"{self.seconds:.2f} s ({self.accelerator.upper()}): {self.line}"


@dataclass(frozen=True)
class MemoryUse:
    """QEMU's memory as the host sees it, in bytes.

    RSS counts every page QEMU has touched, shared or not; PSS splits shared
    pages among their users (the fair share to add up across VMs); USS is
    what would be freed if this QEMU ended.
    """

    rss: int
    pss: int
    uss: int
    accelerator: str

    def __str__(self) -> str:
        mib = 1024 * 1024
        return (f"RSS {self.rss / mib:.0f} MiB, PSS {self.pss / mib:.0f} MiB, "
                f"USS {self.uss / mib:.0f} MiB ({self.accelerator.upper()})")


class VM:
    """One running QEMU. Use it in a ``with`` block, or call ``stop()``."""

    def __init__(self, config: VMConfig, accelerator: str, child: process.Child,
                 scratch: Path) -> None:
        self.config = config
        self.accelerator = accelerator
        self._child = child
        self._scratch = scratch
        self.console_path = scratch / "console.log"
        self.pid = child.pid
        self.started = child.started

    @classmethod
    def start(cls, config: VMConfig) -> "VM":
        """Launch QEMU; returns at once, while the guest boots."""
        config.check()
        accelerator = config.accelerator or (usable_accelerator() if platforms.is_host(config.arch)
                                             else "tcg")
        scratch = ownership.temp_dir("vm")
        console = scratch / "console.log"
        console.touch()
        try:
            child = process.start(config.argv(accelerator, console))
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return cls(config, accelerator, child, scratch)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<VM pid={self.pid} {self.accelerator.upper()} {state}>"

    def __enter__(self) -> "VM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- questions --

    def is_running(self) -> bool:
        """True while QEMU has not exited (asked without collecting its exit status)."""
        if self._child.returncode is not None:
            return False
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def console(self) -> str:
        """Everything the guest printed on its serial console so far."""
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console_tail(self, lines: int = 15) -> list[str]:
        text = self.console().replace("\r", "")
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def _describe_tail(self) -> str:
        tail = self.console_tail()
        return "\n  ".join(["the guest's last console lines:"] + (tail or ["(nothing at all)"]))

    def memory(self) -> MemoryUse:
        """QEMU's RSS, PSS and USS right now (psutil reads /proc/PID/smaps_rollup)."""
        try:
            info = psutil.Process(self.pid).memory_full_info()
        except psutil.NoSuchProcess:
            raise LabError(f"QEMU (PID {self.pid}) is no longer running: "
                           "nothing to measure.") from None
        return MemoryUse(info.rss, info.pss, info.uss, self.accelerator)

    def wait_for(self, marker: str, timeout: float, fail_on: Sequence[str] = ()) -> Reached:
        """Wait until a console line holds ``marker``; raise if it never comes.

        ``fail_on`` lists markers that mean the guest gave up: seeing one
        ends the wait at once, with the guest's own words.
        """
        deadline = time.monotonic() + timeout
        while True:
            for line in self.console().replace("\r", "").splitlines():
                if marker in line:
                    return Reached(line.strip(), time.monotonic() - self.started, self.accelerator)
                if any(bad in line for bad in fail_on):
                    raise LabError(f"The guest reported a failure ({line.strip()}); "
                                   + self._describe_tail())
            if not self.is_running():
                code = self._collect()
                stderr = self._child.stderr.strip().splitlines()
                why = f": {stderr[-1]}" if stderr else ""
                raise LabError(f"QEMU exited (code {code}) before the guest printed {marker!r}"
                               f"{why}; " + self._describe_tail())
            if time.monotonic() > deadline:
                raise LabError(f"The guest did not print {marker!r} within {timeout:g} s "
                               f"({self.accelerator.upper()}); " + self._describe_tail())
            time.sleep(POLL_SECONDS)

    # -- ending --

    def _collect(self) -> int:
        return self._child.wait(timeout=10)

    def wait(self, timeout: float = 30) -> int:
        """Wait for QEMU to exit by itself (the guest powered off); return its exit code."""
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                raise LabError(f"The guest did not power off within {timeout:g} s; "
                               + self._describe_tail())
            time.sleep(POLL_SECONDS)
        return self._collect()

    def stop(self, grace: float = 3.0) -> int:
        """End QEMU (SIGTERM, then SIGKILL after ``grace`` s) and remove its scratch files.

        Safe to call twice. SIGTERM makes QEMU close its files and exit; the
        guest itself gets no say, as when a machine's power cord is pulled.
        """
        if self.is_running():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while self.is_running() and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        code = self._child.stop()
        shutil.rmtree(self._scratch, ignore_errors=True)
        return code
