"""Does hardware-assisted virtualization (KVM) really work here?

Opening ``/dev/kvm`` proves nothing. On the lab's reference machine ``/dev/kvm``
belongs to ``kvm_pvm``, a pagetable-based *paravirtual* KVM: the host is
itself a guest, and PVM can only run guest kernels built for it - exactly the
seed's point about paravirtualization (반가상화), where the guest has to be
modified. A stock Debian kernel never boots there, so the lab must fall back
to QEMU's TCG emulation (full virtualization by binary translation).

So the probe *runs* something: a child process builds a tiny VM through the
raw KVM ioctls (no QEMU), loads three instructions of 16-bit real-mode code
(``mov al, 0x42; out 0x10, al; hlt``) and expects KVM to report the port write
and then the halt. The child has a timeout, so a hang or a crash inside KVM
cannot hurt the caller (a Jupyter kernel, the CLI); when the child exits, the
kernel frees the VM with its file descriptors.

Measured on the reference machine (kernel 6.18, ``kvm_pvm`` loaded, CPU flags
show ``hypervisor`` but neither ``vmx`` nor ``svm``): every ioctl succeeds and
the real-mode guest RUNS - KVM reports ``IO out port 0x10 value 0x42`` and then
``HLT``; the whole child process takes 0.1-0.2 s. A variant that loops 1000
times (``add ax, 3; loop``) also returns the right value in about 8 ms, so
the code really executes - no emulation failure, no hang. Yet a stock Debian
kernel never boots on the same ``/dev/kvm`` (QEMU ``-cpu host`` aborts on an
MSR, ``kvm64`` stops with "emulation failure", q35 hangs after decompression).

So a real-mode guest running is necessary, not sufficient: PVM runs such toy
code yet never boots a stock kernel. Hence the rule: KVM is usable for stock
guests only if the real-mode guest ran *and* the module is not ``kvm_pvm``.
A later QEMU boot test can refine this through ``probe_accelerator``'s
``boot_check`` argument.

The child is ``labsupport/kernel/kvm.py``, the raw KVM ioctls, run as a script
(``python -I kvm.py --real-mode-child``): a hang or a crash stays in it.

On an ARM host (aarch64) there is no real mode and no vmx/svm flag: the toy
guest is x86 code. There the only proof is the one that counts anyway - a
stock kernel booting under QEMU ``-accel kvm`` - so on ARM the default
``boot_check`` boots the cached Debian kernel with no root at all: reaching
its own "cannot mount root" panic means its whole early boot ran on this
/dev/kvm. It too runs in a throw-away process with a timeout.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from labsupport.vm import guest_kernel, platforms

KVM_DEVICE = Path("/dev/kvm")
PVM_MODULE = Path("/sys/module/kvm_pvm")
CPUINFO = Path("/proc/cpuinfo")
#: The child program: the lab's raw KVM ioctls, run as a script in a throw-away process.
PROBE = Path(__file__).resolve().parents[1] / "kernel" / "kvm.py"

# ---------------------------------------------------------------------------
# The parent: facts from /proc and /sys, the child with a timeout, the verdict.
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AcceleratorProbe:
    """What the lab may use to run VMs, and why."""

    accelerator: str  # "kvm" or "tcg"
    kvm_device: bool
    pvm: bool
    cpu_flags: tuple[str, ...]  # those of vmx / svm / hypervisor the CPU shows
    guest_ran: bool
    reason: str  # one sentence for learners
    detail: str = ""  # what the real-mode guest did, e.g. "IO out ..., then HLT"
    boot_check: Optional[bool] = None  # None: no boot check was run

    @property
    def kvm_usable(self) -> bool:
        return self.accelerator == "kvm"


BootCheck = Callable[[], tuple[bool, str]]
"""An extra check (e.g. a QEMU boot with a timeout): returns (booted, one sentence)."""


def read_cpu_flags(cpuinfo_path: Path = CPUINFO) -> tuple[str, ...]:
    """The virtualization-related CPU flags: vmx (Intel VT-x), svm (AMD-V), hypervisor (we are a guest)."""
    try:
        text = cpuinfo_path.read_text()
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return tuple(f for f in ("vmx", "svm", "hypervisor") if f in flags)


def run_real_mode_guest_in_child(timeout: float = 3.0) -> dict:
    """Run the real-mode guest (labsupport/kernel/kvm.py) in a fresh interpreter, killed after
    ``timeout`` s."""
    command = [sys.executable, "-I", str(PROBE), "--real-mode-child"]
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, close_fds=True)
    except OSError as err:
        return {"stage": "child", "guest_ran": False, "exits": [],
                "detail": f"the probe process could not start ({err.strerror})"}
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        _reap(child)
        return {"stage": "KVM_RUN", "guest_ran": False, "exits": [],
                "detail": f"the guest did not halt within {timeout:g} s (hang)"}
    try:
        return json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return {"stage": "child", "guest_ran": False, "exits": [],
                "detail": f"the probe process died (exit {child.returncode}): {tail[0]}"}


def _reap(child: subprocess.Popen) -> None:
    """Wait briefly for a killed child; one stuck in the kernel is left to init."""
    try:
        child.communicate(timeout=1.0)
    except subprocess.TimeoutExpired:
        pass


def _guest_report(kvm_device: Path, timeout: float) -> dict:
    """Run the test guest, unless this user cannot even open the device."""
    if not os.access(kvm_device, os.R_OK | os.W_OK):
        return {"stage": "open /dev/kvm", "guest_ran": False, "exits": [],
                "detail": f"{kvm_device} is not readable and writable for this user"}
    return run_real_mode_guest_in_child(timeout)


def _verdict(kvm_device: bool, pvm: bool, guest: dict) -> tuple[str, str]:
    """Apply the rule; return (accelerator, reason)."""
    if not kvm_device:
        return "tcg", ("There is no /dev/kvm, so VMs will use QEMU's TCG emulation "
                       "(full virtualization in software, slower).")
    if pvm:
        ran = "even though" if guest.get("guest_ran") else "and"
        return "tcg", ("The KVM device is present but it is a paravirtual PVM host "
                       "(kvm_pvm) that only runs guest kernels built for it, not a "
                       f"stock guest kernel, {ran} a tiny real-mode test guest "
                       f"{'ran' if guest.get('guest_ran') else 'did not run'}; VMs "
                       "will use QEMU's TCG emulation (slower).")
    if guest.get("stage") == "open /dev/kvm":
        return "tcg", ("This user may not open /dev/kvm (run the lab as root or join "
                       "the kvm group), so VMs will use QEMU's TCG emulation (slower).")
    if not guest.get("guest_ran"):
        return "tcg", (f"/dev/kvm is present but a tiny test guest failed at "
                       f"{guest.get('stage')} ({guest.get('detail')}), so VMs will "
                       "use QEMU's TCG emulation (slower).")
    return "kvm", ("A tiny real-mode test guest ran on /dev/kvm, so VMs can use "
                   "hardware-assisted virtualization (KVM).")


def boot_stock_kernel(timeout: float = 30.0) -> tuple[bool, str]:
    """Boot the lab's cached guest kernel under QEMU -accel kvm, rootless; (booted, one sentence)."""
    kernel = guest_kernel.cached()
    row = platforms.of()
    if kernel is None:
        return False, ("No guest kernel is cached yet to try /dev/kvm with (run `python -m "
                       "labsupport setup`); VMs use QEMU's TCG emulation meanwhile.")
    argv = [row.qemu, "-M", row.machine, "-accel", "kvm", "-cpu", "host", "-m", "256",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", str(kernel.boot_image), "-append", f"console={row.console} panic=-1"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        console = done.stdout
    except subprocess.TimeoutExpired as err:  # run() has killed QEMU
        console = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else ""
    except OSError as err:
        return False, f"QEMU could not start ({err.strerror}); VMs will use TCG emulation."
    if "Unable to mount root" in console:
        return True, "Debian's kernel booted on /dev/kvm up to mounting its root, so VMs use KVM."
    return False, ("/dev/kvm did not boot Debian's kernel within "
                   f"{timeout:g} s; VMs will use QEMU's TCG emulation (slower).")


def _arm_verdict(has_device: bool, kvm_device: Path,
                 boot_check: Optional[BootCheck]) -> tuple[str, str]:
    """Before the boot check, on a host whose CPU cannot run the real-mode toy guest."""
    if not has_device:
        return _verdict(False, False, {})
    if not os.access(kvm_device, os.R_OK | os.W_OK):
        return _verdict(True, False, {"stage": "open /dev/kvm"})
    if boot_check is None:
        return "tcg", ("/dev/kvm is present, but on this CPU only booting a guest kernel "
                       "can prove it works and none was tried; VMs will use QEMU's TCG "
                       "emulation (slower).")
    return "kvm", "A stock guest kernel booted on /dev/kvm, so VMs can use KVM."


def probe_accelerator(timeout: float = 3.0, boot_check: Optional[BootCheck] = None,
                      kvm_device: Path = KVM_DEVICE, pvm_module: Path = PVM_MODULE,
                      ) -> AcceleratorProbe:
    """Tell whether VMs can use KVM or must use TCG, by running a guest for real.

    ``boot_check``, if given, runs only when KVM passed every other test and has
    the last word (e.g. "does a stock kernel boot under QEMU -accel kvm"). On
    a host that is not x86 it is the only test there is.
    """
    has_device = kvm_device.exists()
    pvm = pvm_module.exists()
    if platform.machine() != "x86_64":
        guest: dict = {"guest_ran": False, "detail": "no x86 real-mode guest on this CPU"}
        boot_check = boot_check or boot_stock_kernel
        accelerator, reason = _arm_verdict(has_device, kvm_device, boot_check)
    else:
        guest = _guest_report(kvm_device, timeout) if has_device else {"guest_ran": False}
        accelerator, reason = _verdict(has_device, pvm, guest)
    booted: Optional[bool] = None
    if accelerator == "kvm" and boot_check is not None:
        booted, boot_reason = boot_check()
        if not booted:
            accelerator, reason = "tcg", boot_reason
    return AcceleratorProbe(
        accelerator=accelerator, kvm_device=has_device, pvm=pvm,
        cpu_flags=read_cpu_flags(), guest_ran=bool(guest.get("guest_ran")),
        reason=reason, detail=str(guest.get("detail", "")), boot_check=booted,
    )
