"""Run a pytest module inside a guest kernel and bring the verdict back to the host.

The lab's reference machine mounts cgroups in the hybrid layout (v1 plus a
nearly empty v2), while most learners' laptops run pure cgroup v2. Tests on
the host alone would prove only one of the two code paths. So the same
checkout and the same interpreter run again inside a VM whose kernel mounts
nothing but cgroup2 - a different kernel, real, not mocked.

The guest sees the host's root read-only (with a throwaway tmpfs on top) and
one writable share, where it leaves pytest's JUnit XML, its output and what
the guest's /sys/fs/cgroup looked like; the exit code comes back on the
console.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from labsupport import ownership
from labsupport.kernel.errors import LabError
from labsupport.vm import foreign, initramfs, platforms
from labsupport.vm.guest_kernel import fetch_kernel
from labsupport.vm.qemu import VM, Reached, Share

REPO = Path(__file__).resolve().parents[2]
CHECKOUT_TAG = "labcheckout"
SHARE_TAG = "labshare"
#: Where the writable share appears inside the guest: outside the lab's own
#: directories, so a ``clean`` run by the tests in there never touches it.
GUEST_SHARE = Path("/mnt/labshare")


@dataclass(frozen=True)
class GuestTestRun:
    """What pytest said inside the guest, and what the guest was."""

    module: str
    exit_code: int
    tests: int
    failures: int
    errors: int
    skipped: int
    kernel_release: str  # uname -r inside the guest
    machine: str  # uname -m inside the guest: its CPU architecture
    cgroup_controllers: tuple[str, ...]  # /sys/fs/cgroup/cgroup.controllers inside
    cgroup_mounts: tuple[str, ...]  # "cgroup2 /sys/fs/cgroup" for every cgroup mount inside
    boot_seconds: float  # QEMU start -> the guest's ready marker
    test_seconds: float  # ready marker -> pytest's end
    accelerator: str
    output: str  # pytest's report

    @property
    def passed(self) -> int:
        return self.tests - self.failures - self.errors - self.skipped

    @property
    def pure_v2(self) -> bool:
        """Only one cgroup mount, of type cgroup2, at /sys/fs/cgroup."""
        return self.cgroup_mounts == ("cgroup2 /sys/fs/cgroup",)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.tests > 0 and not (self.failures or self.errors)

    def __str__(self) -> str:
        layout = "pure cgroup v2" if self.pure_v2 else "cgroups: " + ", ".join(self.cgroup_mounts)
        return (f"{self.module}: {self.passed} passed, {self.failures} failed, {self.errors} errors, "
                f"{self.skipped} skipped in {self.test_seconds:.1f} s inside Linux "
                f"{self.kernel_release} ({layout}; {self.accelerator.upper()}, "
                f"boot {self.boot_seconds:.1f} s)")


def collected_on_the_host(modules: Sequence[str], pytest_args: Sequence[str] = ()) -> int:
    """How many tests pytest collects from ``modules`` here: the count a guest run is held to."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-o", "addopts=",
                          "-p", "no:cacheprovider", *pytest_args, *modules], cwd=REPO,
                         capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if "::" in line)


def _test_file(module: str) -> Path:
    path = Path(module)
    path = path if path.is_absolute() else (REPO / path)
    if not path.is_file():
        raise LabError(f"There is no test module {module}: give a path such as "
                       "tests/test_cgroups.py (relative to the lab's checkout).")
    return path.resolve()


def pytest_script(test_files: Sequence[Path], pytest_args: Sequence[str],
                  python: str = sys.executable) -> str:
    """The shell script that runs pytest in the guest and notes what the guest was.

    ``python`` is the host's interpreter when the guest borrows the host's
    root, the guest's own ``python3`` when it boots over a foreign userland.
    """
    share = GUEST_SHARE
    q = shlex.quote
    pytest = [python, "-m", "pytest", "-p", "no:cacheprovider",
              f"--junitxml={share / 'junit.xml'}", *pytest_args, *map(str, test_files)]
    return "\n".join([
        "export PYTHONDONTWRITEBYTECODE=1",
        f"uname -r > {q(str(share / 'uname'))}",
        f"uname -m > {q(str(share / 'machine'))}",
        f"cat /sys/fs/cgroup/cgroup.controllers > {q(str(share / 'controllers'))}",
        # Field 5 of mountinfo is the mount point, the field after " - " the type.
        "awk '{for (i = 7; $i != \"-\"; i++); if ($(i+1) ~ /^cgroup/) print $(i+1), $5}' "
        f"/proc/self/mountinfo > {q(str(share / 'cgroup-mounts'))}",
        f"cd {q(str(REPO))} || exit 97",
        " ".join(q(a) for a in pytest) + f" > {q(str(share / 'pytest.out'))} 2>&1",
        "",
    ])


def _junit_counts(text: str) -> dict[str, int]:
    """tests, failures, errors and skipped, summed over the report's test suites."""
    keys = ("tests", "failures", "errors", "skipped")
    if not text:
        return dict.fromkeys(keys, 0)
    root = ElementTree.fromstring(text)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return {key: sum(int(s.get(key, 0)) for s in suites) for key in keys}


@dataclass(frozen=True)
class GuestRun:
    """A script's run inside the guest: its exit code and the files it left in the share."""

    exit_code: int
    files: dict[str, str]  # name -> text, for every file in the share
    boot: Reached  # the ready marker
    done: Reached  # the exit marker

    @property
    def accelerator(self) -> str:
        return self.boot.accelerator

    def file(self, name: str) -> str:
        return self.files.get(name, "").strip()


def run_in_guest(script: str, boot_timeout: float = 120, run_timeout: float = 900,
                 memory_mb: int = 1024, cpus: int = 2, arch: Optional[str] = None) -> GuestRun:
    """Boot the guest, run ``script`` (sh) in it, power off, and bring back the share.

    ``arch`` asks for a guest of another architecture (``aarch64`` on an
    x86_64 host): it boots that architecture's Debian kernel over its own
    userland (``foreign``, built once), under TCG.

    The script runs as root in the guest's copy of the host's root, from
    ``/``; whatever it writes under ``GUEST_SHARE`` comes back in
    ``GuestRun.files``. A guest that never boots, or a script that never
    ends, raises a ``LabError`` holding the last console lines; QEMU is
    stopped either way, and the share is removed.
    """
    if platforms.is_host(arch):
        kernel, root, extra = fetch_kernel(), initramfs.HOST_ROOT, []
    else:
        kernel, root, extra = foreign.boot_parts(str(arch))
    share = ownership.temp_dir("guest-run")
    try:
        (share / "run.sh").write_text(script)
        config = initramfs.guest_config(
            kernel, run=GUEST_SHARE / "run.sh", memory_mb=memory_mb, cpus=cpus, root=root,
            shares=[Share(SHARE_TAG, share, writable=True, guest_path=GUEST_SHARE),
                    # The checkout may sit under a path the guest covers with a fresh
                    # tmpfs (a CI clone in /tmp): mount it again at the same place.
                    Share(CHECKOUT_TAG, REPO, guest_path=REPO), *extra])
        with VM.start(config) as vm:
            fail_on = (initramfs.FAILED_MARKER,)
            boot = vm.wait_for(initramfs.READY_MARKER, boot_timeout, fail_on)
            done = vm.wait_for(initramfs.EXIT_MARKER, run_timeout, fail_on)
            vm.wait(timeout=30)
        files = {p.name: p.read_text(errors="replace") for p in share.iterdir() if p.is_file()}
        return GuestRun(int(done.line.split()[-1]), files, boot, done)
    finally:
        shutil.rmtree(share, ignore_errors=True)


def run_pytest_in_guest(module: Union[str, Sequence[str]], pytest_args: Sequence[str] = (),
                        boot_timeout: float = 120, run_timeout: float = 900, memory_mb: int = 1024,
                        cpus: int = 2, arch: Optional[str] = None) -> GuestTestRun:
    """Boot the guest, run ``pytest MODULE...`` inside, and report.

    The interpreter is the host's own, or the foreign userland's ``python3``
    for a guest of another ``arch``.
    """
    modules = [module] if isinstance(module, str) else list(module)
    test_files = [_test_file(m) for m in modules]
    python = sys.executable if platforms.is_host(arch) else "python3"
    run = run_in_guest(pytest_script(test_files, pytest_args, python), boot_timeout, run_timeout,
                       memory_mb, cpus, arch)
    names = [str(f.relative_to(REPO) if REPO in f.parents else f) for f in test_files]
    return GuestTestRun(
        module=" ".join(names),
        exit_code=run.exit_code, **_junit_counts(run.file("junit.xml")),
        kernel_release=run.file("uname"), machine=run.file("machine"),
        cgroup_controllers=tuple(run.file("controllers").split()),
        cgroup_mounts=tuple(run.file("cgroup-mounts").splitlines()),
        boot_seconds=run.boot.seconds, test_seconds=run.done.seconds - run.boot.seconds,
        accelerator=run.accelerator, output=run.file("pytest.out"))
