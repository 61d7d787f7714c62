"""The lab doctor: can this machine run the lab, and what does each finding mean?

Notebook 00 and ``lab doctor`` show the same table. Each row is one small
check that only reads the system (``/proc``, ``/sys``, files on disk; the KVM
check runs a throw-away test VM in a child process) and says, in one sentence,
what the finding means for the lab - not just "ok". A check that crashes
becomes a "problem" row naming it, so one surprise never hides the others.
"""
from __future__ import annotations

import html
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, NamedTuple, Sequence

from labsupport.cgroups.layout import detect_layout
from labsupport.kernel.errors import LabError
from labsupport.vm.kvm import probe_accelerator

Status = Literal["ok", "warning", "problem"]

MIN_KERNEL = (5, 10)
CACHE_DIR = Path("/var/cache")
GIB = 1024 ** 3
WARN_FREE_BYTES = 5 * GIB
PROBLEM_FREE_BYTES = 1 * GIB
BUSYBOX = Path("/bin/busybox")
# The namespaces the notebooks use; "time" exists since Linux 5.6 and is only shown.
LAB_NAMESPACES = ("mnt", "uts", "ipc", "pid", "net", "user", "cgroup")
OPTIONAL_NAMESPACES = ("time",)


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    status: Status
    finding: str  # a short value, e.g. "hybrid (v1 + v2 at /sys/fs/cgroup/unified)"
    meaning: str  # one sentence: what this means for the lab


class Verdict(NamedTuple):
    """What a check function returns; ``run_checks`` adds the check's name."""

    status: Status
    finding: str
    meaning: str


CheckFunction = Callable[[], Verdict]


# ---------------------------------------------------------------------------
# The checks. Each reads the system and returns a Verdict.
# ---------------------------------------------------------------------------
def check_root() -> Verdict:
    """Root is needed for namespaces other than user, mounts and cgroups."""
    uid = os.geteuid()
    if uid == 0:
        return Verdict("ok", "yes (uid 0)",
                       "The lab can create namespaces, mounts and cgroups directly.")
    return Verdict("problem", f"no (uid {uid})",
                   "Most notebooks change kernel state and need root: start the lab "
                   "with sudo, or use the Vagrant VM in vagrant/.")


def _kernel_version(release: str) -> tuple[int, int]:
    """'6.18.44-fc-v857' -> (6, 18)."""
    match = re.match(r"(\d+)\.(\d+)", release)
    if match is None:
        raise LabError(f"The kernel release {release!r} does not start with a version number.")
    return int(match.group(1)), int(match.group(2))


def check_kernel() -> Verdict:
    """Linux, and recent enough: the lab is written for 5.10 (2020) and later."""
    if platform.system() != "Linux":
        return Verdict("problem", platform.system(),
                       "Containers are a Linux kernel feature: run the lab in the "
                       "Vagrant VM in vagrant/.")
    release = platform.release()
    if _kernel_version(release) < MIN_KERNEL:
        wanted = ".".join(map(str, MIN_KERNEL))
        return Verdict("warning", f"Linux {release}",
                       f"This kernel is older than {wanted}, so some cgroup and "
                       "namespace features the notebooks show may be missing.")
    return Verdict("ok", f"Linux {release}",
                   "Recent enough for every notebook (the lab needs 5.10 or later).")


def check_architecture() -> Verdict:
    """The lab calls and filters system calls by number, and the numbers differ per architecture."""
    from labsupport.kernel import syscalls

    arch = platform.machine()
    if arch not in syscalls.SYSCALL_NUMBERS:
        known = " and ".join(syscalls.SYSCALL_NUMBERS)
        return Verdict("problem", arch, f"The lab knows system call numbers for {known} only: a "
                       "container's root change and its seccomp filter would be wrong here; run "
                       "the lab on one of those.")
    return Verdict("ok", arch, "The lab knows this architecture's system call numbers (pivot_root, "
                   "bpf, the seccomp filter's list).")


def platform_verdict(kernel_version: str, in_container: bool, privileged: bool,
                     hypervisor: bool) -> Verdict:
    """What kind of machine the lab runs on, from /proc/version and /proc/cpuinfo: pure, so a
    test can ask what a WSL2 laptop or a cloud VM would be told."""
    if in_container and privileged:
        return Verdict("warning", "a privileged container" + (" in a VM" if hypervisor else ""),
                       "The lab runs inside a privileged container: its root is root of the kernel, "
                       "so namespaces, mounts and cgroups work, but the container's own init and "
                       "groups are around the lab (it never touches them) and /dev/kvm may be "
                       "missing or limited.")
    if in_container:
        return Verdict("problem", "inside a container",
                       "The lab is running inside a container: it needs a Linux host or a VM of its "
                       "own, where it may make namespaces, mounts and cgroups - use the lab's "
                       "Vagrant VM (vagrant/README.md) or a Linux VM.")
    if "microsoft" in kernel_version.lower():
        return Verdict("ok", "WSL2",
                       "WSL2: a real Linux kernel in a small Hyper-V VM, so namespaces and cgroups "
                       "work. systemd runs only with [boot] systemd=true in /etc/wsl.conf; /dev/kvm "
                       "only with nested virtualization, so VMs usually run under TCG.")
    if hypervisor:
        return Verdict("ok", "a virtual machine",
                       "A virtual machine: containers behave as on any Linux host; the lab's own VMs "
                       "run nested, with KVM only if the host passes virtualization through (see the "
                       "kvm row).")
    return Verdict("ok", "bare metal", "A physical machine: containers and, with KVM, VMs run "
                   "directly on its hardware.")


def check_platform() -> Verdict:
    """Bare metal, a VM, WSL2 or inside a container: each changes what the lab can show."""
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith(("flags", "Features"))), "")
    markers = (Path("/.dockerenv"), Path("/run/.containerenv"))
    # Root of the first user namespace with CAP_SYS_ADMIN (bit 21) is root of the kernel.
    first_userns = Path("/proc/self/uid_map").read_text().split()[:3] == ["0", "0", "4294967295"]
    effective = next(int(line.split()[1], 16) for line in Path("/proc/self/status").read_text()
                     .splitlines() if line.startswith("CapEff:"))
    return platform_verdict(Path("/proc/version").read_text(), any(m.exists() for m in markers),
                            first_userns and bool(effective & (1 << 21)), " hypervisor" in flags)


def check_cgroup_layout() -> Verdict:
    """v2, v1 or hybrid: the lab supports all, but learners should know which they have."""
    layout = detect_layout()
    where_v1 = ", ".join(sorted(layout.v1_controllers))
    if layout.kind == "v2":
        return Verdict("ok", layout.summary(),
                       "Pure cgroup v2, like most learners' machines: every "
                       "controller lives in one tree.")
    if layout.kind == "hybrid":
        where_v2 = ", ".join(layout.v2_controllers) or "no controllers"
        return Verdict("ok", layout.summary(),
                       f"Controllers are split ({where_v1} in v1; {where_v2} in v2); "
                       "most learners have pure v2, and the lab uses each "
                       "controller where it lives, so both work.")
    return Verdict("warning", layout.summary(),
                   "Only cgroup v1 is mounted, so notebook 08 runs on v1 here and "
                   "the v2 side can only be shown in a VM; most learners have pure "
                   "v2, and the lab supports both.")


def _filesystems(path: Path = Path("/proc/filesystems")) -> set[str]:
    """Filesystem types the running kernel knows: last word of each line ('nodev\\toverlay')."""
    return {line.split()[-1] for line in path.read_text().splitlines() if line.strip()}


def _overlay_module_files(release: str) -> list[Path]:
    """overlay.ko, overlay.ko.xz, ... under /lib/modules/<release>, if any."""
    base = Path("/lib/modules") / release
    if not base.is_dir():
        return []
    return sorted(base.rglob("overlay.ko*"))


def check_overlayfs() -> Verdict:
    """Image layers (notebooks 09 and 10) are stacked with overlayfs."""
    if "overlay" in _filesystems():
        return Verdict("ok", "available",
                       "Image layers can be stacked with overlayfs (notebooks 09 and 10).")
    modules = _overlay_module_files(platform.release())
    if modules:
        return Verdict("warning", f"module not loaded ({modules[0].name})",
                       "The kernel has overlayfs as a module that is not loaded yet; "
                       "it loads on the first overlay mount (or run modprobe overlay).")
    return Verdict("problem", "missing",
                   "This kernel has no overlayfs, so images and layers (notebook 09) "
                   "and the full container (10) cannot run: use the Vagrant VM.")


def _read_int(path: Path) -> int | None:
    """An integer sysctl, or None when the file does not exist on this kernel."""
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return None


def check_user_namespaces() -> Verdict:
    """User namespaces (notebook 07) can be capped to zero or restricted by the distribution."""
    maximum = _read_int(Path("/proc/sys/user/max_user_namespaces"))
    debian_switch = _read_int(Path("/proc/sys/kernel/unprivileged_userns_clone"))
    ubuntu_switch = _read_int(Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"))
    if maximum == 0:
        return Verdict("problem", "max_user_namespaces = 0",
                       "User namespaces are switched off, so notebook 07 cannot run: "
                       "raise user.max_user_namespaces with sysctl.")
    if ubuntu_switch == 1:
        return Verdict("warning", "apparmor_restrict_unprivileged_userns = 1",
                       "Ubuntu's AppArmor restricts user namespaces for ordinary users; "
                       "root is unaffected, but notebook 07's unprivileged demo needs "
                       "kernel.apparmor_restrict_unprivileged_userns=0.")
    if debian_switch == 0:
        return Verdict("warning", "unprivileged_userns_clone = 0",
                       "Ordinary users may not create user namespaces; root is "
                       "unaffected, but notebook 07's unprivileged demo needs "
                       "kernel.unprivileged_userns_clone=1.")
    return Verdict("ok", f"allowed (max {maximum})",
                   "Root and ordinary users can create user namespaces (notebook 07).")


def check_namespace_kinds() -> Verdict:
    """Each namespace kind the kernel offers shows up as a file in /proc/self/ns."""
    present = set(os.listdir("/proc/self/ns"))
    kinds = sorted(k for k in (*LAB_NAMESPACES, *OPTIONAL_NAMESPACES) if k in present)
    missing = [k for k in LAB_NAMESPACES if k not in present]
    if missing:
        return Verdict("problem", f"missing {' '.join(missing)}",
                       f"This kernel lacks the {', '.join(missing)} namespace, so the "
                       "notebooks about it cannot run: use the Vagrant VM.")
    return Verdict("ok", " ".join(kinds),
                   "Every namespace kind the notebooks use exists in this kernel.")


def _nearest_existing(path: Path) -> Path:
    """/var/cache/labsupport -> /var/cache if the former does not exist yet."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space() -> Verdict:
    """Images, root filesystems and VM disks are cached under /var/cache."""
    where = _nearest_existing(CACHE_DIR)
    stats = os.statvfs(where)
    free = stats.f_bavail * stats.f_frsize
    finding = f"{free / GIB:.1f} GiB free under {where}"
    if free < PROBLEM_FREE_BYTES:
        return Verdict("problem", finding,
                       "Less than 1 GiB is free where the lab caches images and VM "
                       "disks: free some space before running notebooks 09-13.")
    if free < WARN_FREE_BYTES:
        return Verdict("warning", finding,
                       "Less than 5 GiB is free: containers work, but a full VM guest "
                       "(notebooks 12-13, several hundred MiB each) may not fit.")
    return Verdict("ok", finding,
                   "Enough room to cache container images and VM disks.")


def elf_interpreter_present(path: Path) -> bool:
    """True if an ELF file asks for a dynamic loader (has a PT_INTERP program header).

    A static binary has none, so it runs inside a root that holds no libc -
    which is why the lab's minimal roots use busybox-static.
    """
    pt_interp = 3
    with path.open("rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF":
            raise LabError(f"{path} is not an ELF executable.")
        is_64 = header[4] == 2
        endian = "<" if header[5] == 1 else ">"
        if is_64:
            (phoff,) = struct.unpack_from(endian + "Q", header, 0x20)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 0x36)
        else:
            (phoff,) = struct.unpack_from(endian + "I", header, 0x1C)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 0x2A)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    types = (struct.unpack_from(endian + "I", table, i * phentsize)[0] for i in range(phnum))
    return pt_interp in types


def check_busybox_static() -> Verdict:
    """The hand-built roots (notebooks 01-10) copy one static busybox in."""
    fix = "run sudo ./lab up (it installs busybox-static)."
    if not BUSYBOX.exists():
        return Verdict("problem", "missing",
                       f"The lab builds minimal roots from {BUSYBOX}: {fix}")
    if elf_interpreter_present(BUSYBOX):
        return Verdict("problem", "dynamically linked",
                       f"{BUSYBOX} needs shared libraries, so it cannot run alone in "
                       f"a minimal root: {fix}")
    return Verdict("ok", f"{BUSYBOX} is static",
                   "Minimal container roots can be built from one static busybox.")


def check_python() -> Verdict:
    """Which way the lab reaches unshare/setns: os (3.12+) or ctypes (3.11)."""
    version = platform.python_version()
    if sys.version_info >= (3, 12):
        return Verdict("ok", f"Python {version}",
                       "The lab uses Python's own os.unshare and os.setns.")
    if sys.version_info >= (3, 11):
        return Verdict("ok", f"Python {version}",
                       "Python 3.11 has no os.unshare, so the lab calls unshare and "
                       "setns through ctypes; everything works the same.")
    return Verdict("warning", f"Python {version}",
                   "The lab is written for Python 3.11 or later; some parts may fail.")


def check_kvm() -> Verdict:
    """Can VMs use KVM, or must they use TCG? Decided by running a test guest."""
    probe = probe_accelerator()
    if probe.accelerator == "kvm":
        return Verdict("ok", "usable (test guest ran)",
                       "VMs can use hardware-assisted virtualization (KVM), the fast way.")
    if not probe.kvm_device:
        return Verdict("warning", "no /dev/kvm",
                       "There is no KVM here, so VMs will use QEMU's TCG emulation "
                       "(slower); containers are unaffected.")
    if probe.pvm:
        return Verdict("warning", "kvm_pvm (paravirtual PVM host)",
                       "KVM device present but it is a paravirtual PVM host that "
                       "cannot run a stock guest kernel; VMs will use QEMU's TCG "
                       "emulation (slower).")
    if "may not open" in probe.reason:
        return Verdict("warning", "/dev/kvm not accessible", probe.reason)
    return Verdict("warning", "/dev/kvm present, test guest failed", probe.reason)


def check_qemu() -> Verdict:
    """Notebooks 12-13 boot Debian's kernel under QEMU; `setup` caches that kernel."""
    from labsupport.vm import guest_kernel, platforms, qemu

    if shutil.which(qemu.QEMU) is None:
        return Verdict("warning", "not installed",
                       "Notebooks 12-13 boot VMs with QEMU: run sudo ./lab install "
                       f"(it installs {platforms.host_or_x86().qemu_package}); "
                       "containers are unaffected.")
    banner = subprocess.run([qemu.QEMU, "--version"], capture_output=True, text=True).stdout
    version = (re.findall(r"version ([\d.]+)", banner) or ["?"])[0]
    kernel = guest_kernel.cached()
    if kernel is None:
        return Verdict("warning", f"QEMU {version}, no guest kernel",
                       "Run `python -m labsupport setup` once to fetch the guest's "
                       "kernel (about 70 MB) before notebooks 12-13.")
    return Verdict("ok", f"QEMU {version}, guest Linux {kernel.release}",
                   "VMs can boot Debian's own kernel, under the accelerator the kvm row names.")


CHECKS: tuple[tuple[str, CheckFunction], ...] = (
    ("root", check_root),
    ("kernel", check_kernel),
    ("architecture", check_architecture),
    ("platform", check_platform),
    ("cgroup layout", check_cgroup_layout),
    ("overlayfs", check_overlayfs),
    ("user namespaces", check_user_namespaces),
    ("namespace kinds", check_namespace_kinds),
    ("disk space", check_disk_space),
    ("busybox-static", check_busybox_static),
    ("python", check_python),
    ("kvm", check_kvm),
    ("qemu", check_qemu),
)


def run_check(name: str, function: CheckFunction) -> Check:
    """Run one check; a LabError or a crash becomes a 'problem' row instead of escaping."""
    try:
        verdict = function()
    except LabError as err:
        return Check(name, "problem", "check failed", str(err))
    except Exception as err:  # noqa: BLE001 - one broken check must not hide the table
        return Check(name, "problem", f"check crashed: {type(err).__name__}",
                     f"The doctor's {name} check crashed ({err}); the other rows "
                     "are still valid - please report this.")
    return Check(name, *verdict)


def check(name: str) -> Check:
    """One of the doctor's rows by its name, e.g. ``check("user namespaces")``."""
    functions = dict(CHECKS)
    if name not in functions:
        raise LabError(f"The doctor has no check {name!r}; it has: {', '.join(functions)}.")
    return run_check(name, functions[name])


def report_for(*names: str) -> "DoctorReport":
    """Only the named rows, shown as the doctor shows them (notebook 07 shows one)."""
    return DoctorReport(tuple(check(name) for name in names))


def run_checks(checks: Sequence[tuple[str, CheckFunction]] = CHECKS) -> list[Check]:
    """Every check, in order, each one isolated from the others' failures."""
    return [run_check(name, function) for name, function in checks]


# ---------------------------------------------------------------------------
# Rendering: text for the CLI, HTML for the notebook.
# ---------------------------------------------------------------------------
SYMBOLS: dict[str, str] = {"ok": "✓", "warning": "!", "problem": "✗"}
COLOURS: dict[str, tuple[str, str]] = {  # status -> (text, background)
    "ok": ("#1a7f37", "#dafbe1"),
    "warning": ("#9a6700", "#fff8c5"),
    "problem": ("#cf222e", "#ffebe9"),
}


def _tally(checks: Sequence[Check]) -> str:
    """'8 ok, 1 warning, 0 problems'."""
    counts = {s: sum(c.status == s for c in checks) for s in SYMBOLS}
    return ", ".join(f"{n} {s}{'' if n == 1 or s == 'ok' else 's'}" for s, n in counts.items())


def render_text(checks: Sequence[Check], width: int = 100) -> str:
    """An aligned table: symbol, name, finding; the meaning wrapped below each row."""
    name_width = max((len(c.name) for c in checks), default=0)
    indent = " " * (name_width + 4)
    lines = []
    for check in checks:
        lines.append(f"{SYMBOLS[check.status]} {check.name:<{name_width}}  {check.finding}")
        lines.extend(textwrap.wrap(check.meaning, width, initial_indent=indent,
                                   subsequent_indent=indent))
    lines.append(f"{_tally(checks)}  ({' '.join(f'{v} {k}' for k, v in SYMBOLS.items())})")
    return "\n".join(lines)


def _html_row(check: Check) -> str:
    colour, background = COLOURS[check.status]
    badge = (f'<span style="color:{colour};background:{background};padding:1px 8px;'
             f'border-radius:8px;font-weight:600;white-space:nowrap">'
             f"{SYMBOLS[check.status]} {check.status}</span>")
    cell = 'style="text-align:left;vertical-align:top;padding:4px 8px"'
    return (f"<tr><td {cell}>{badge}</td><td {cell}><b>{html.escape(check.name)}</b></td>"
            f"<td {cell}><code>{html.escape(check.finding)}</code></td>"
            f"<td {cell}>{html.escape(check.meaning)}</td></tr>")


def render_html(checks: Sequence[Check]) -> str:
    """A small styled table for Jupyter: status badge, check, finding, meaning."""
    head = "".join(f'<th style="text-align:left;padding:4px 8px">{h}</th>'
                   for h in ("status", "check", "finding", "what it means for the lab"))
    rows = "".join(_html_row(c) for c in checks)
    return (f'<table style="border-collapse:collapse">'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            f"<p>{html.escape(_tally(checks))}</p>")


@dataclass(frozen=True)
class DoctorReport:
    """The doctor's table; Jupyter shows it as HTML, a terminal as text."""

    checks: tuple[Check, ...]

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == "problem"]

    @property
    def ok(self) -> bool:
        """True when nothing blocks the lab (warnings allowed)."""
        return not self.problems

    def _repr_html_(self) -> str:
        return render_html(self.checks)

    def __str__(self) -> str:
        return render_text(self.checks)

    def __repr__(self) -> str:
        return render_text(self.checks)


def doctor() -> DoctorReport:
    """Run every check; the last line of a notebook cell displays the table."""
    return DoctorReport(tuple(run_checks()))
