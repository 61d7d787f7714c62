"""The syscall layer: real calls, and failures turned into one plain sentence."""
from __future__ import annotations

import os
import platform
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from labsupport import ownership, process
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError


def _as_nobody(func):
    """Run ``func`` in a child that dropped root, and return what it returns or raises."""
    def dropped():
        os.setgid(65534)
        os.setuid(65534)
        return func()
    return process.run_function(dropped)


def test_namespace_names_become_flags() -> None:
    assert syscalls.namespace_flags(["uts", "pid"]) == syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWPID
    assert syscalls.namespace_flags([]) == 0


def test_an_unknown_namespace_name_is_refused_plainly() -> None:
    with pytest.raises(LabError, match=r"Unknown namespace 'utc': choose from mnt, uts"):
        syscalls.namespace_flags(["utc"])


def test_unshare_and_sethostname_change_only_the_child() -> None:
    def rename() -> str:
        syscalls.unshare(syscalls.CLONE_NEWUTS)
        syscalls.sethostname("labtest")
        return socket.gethostname()

    host = socket.gethostname()
    assert process.run_function(rename) == "labtest"
    assert socket.gethostname() == host


def test_unshare_without_root_names_the_call_and_the_cause() -> None:
    with pytest.raises(LabError) as caught:
        _as_nobody(lambda: syscalls.unshare(syscalls.CLONE_NEWUTS))
    text = str(caught.value)
    assert text.startswith("unshare failed: Operation not permitted (EPERM)")
    assert "needs root" in text and "\n" not in text


def test_mount_errors_name_the_path() -> None:
    missing = "/run/labsupport/no/such/dir"
    with pytest.raises(LabError, match=f"mount on {missing} failed: No such file or directory"):
        process.run_function(lambda: syscalls.mount("tmpfs", missing, "tmpfs"), namespaces=["mnt"])


def test_mount_and_umount_a_tmpfs_in_a_private_namespace_only() -> None:
    target = ownership.temp_dir("mnt")

    def mount_and_look() -> bool:
        syscalls.mount("labtmp", target, "tmpfs")
        (target / "inside").write_text("x")
        seen = any(line.split()[4] == str(target) for line in open("/proc/self/mountinfo"))
        syscalls.umount(target)
        return seen

    try:
        assert process.run_function(mount_and_look, namespaces=["mnt"]) is True
        assert not (target / "inside").exists(), "the tmpfs leaked to the host"
    finally:
        os.rmdir(target)


def test_umount_of_a_non_mount_point_is_explained() -> None:
    scratch = ownership.temp_dir("umount")
    try:
        with pytest.raises(LabError, match="umount2 on .* failed: Invalid argument .*not a mount point"):
            process.run_function(lambda: syscalls.umount(scratch), namespaces=["mnt"])
    finally:
        os.rmdir(scratch)


def test_pivot_root_outside_a_mount_namespace_is_explained() -> None:
    scratch = ownership.temp_dir("pivot")
    try:
        with pytest.raises(LabError, match=r"pivot_root on \S+ failed: .* \(E[A-Z]+\) - "):
            process.run_function(lambda: syscalls.pivot_root(scratch, scratch))
    finally:
        os.rmdir(scratch)


def test_setns_joins_another_process_namespace() -> None:
    with process.start(["sleep", "30"], namespaces=["uts"], hostname="labjoin") as child:
        def join() -> str:
            fd = os.open(f"/proc/{child.pid}/ns/uts", os.O_RDONLY)
            syscalls.setns(fd, syscalls.CLONE_NEWUTS)
            return socket.gethostname()

        for _ in range(100):  # wait until the child has renamed itself
            if Path(f"/proc/{child.pid}/ns/uts").resolve() != Path("/proc/self/ns/uts").resolve():
                break
        assert process.run_function(join) == "labjoin"


def test_setns_on_a_file_that_is_not_a_namespace() -> None:
    def join_wrong() -> None:
        fd = os.open("/etc/hostname", os.O_RDONLY)
        syscalls.setns(fd, syscalls.CLONE_NEWUTS, "/etc/hostname")

    with pytest.raises(LabError, match="setns on /etc/hostname failed: Invalid argument"):
        process.run_function(join_wrong)


def test_the_cli_refuses_a_non_root_user_in_one_line() -> None:
    # In a user namespace with no map the CLI's euid is 65534 (the overflow "nobody"), while the
    # kernel still checks its file access as the host's root: it can read a checkout under a
    # private (0700) parent and the venv's interpreter under /root, as on a fresh machine, and
    # only the lab's own check can refuse it. (setpriv to 65534 could not even start Python there.)
    out = subprocess.run(["unshare", "--user", sys.executable, "-c",
                          "import os, runpy, sys; assert os.geteuid() == 65534; sys.argv = ['labsupport', 'clean']; "
                          "runpy.run_module('labsupport', run_name='__main__')"],
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "needs root" in out.stderr and "Traceback" not in out.stderr


def test_set_dumpable_gives_a_process_that_dropped_root_its_proc_files_back() -> None:
    def owners() -> tuple[int, int]:
        before = os.stat("/proc/self/uid_map").st_uid  # non-dumpable after setuid: root's
        syscalls.set_dumpable()
        return before, os.stat("/proc/self/uid_map").st_uid

    assert _as_nobody(owners) == (0, 65534)


# -- numbers per architecture -----------------------------------------------------------------

_GENERIC = ("#define __ARCH_WANT_SYS_CLONE3\n#define __BITS_PER_LONG 64\n"
            "#include <asm-generic/unistd.h>\n")  # aarch64 uses the generic table


def _header_numbers(source: str) -> dict[str, int]:
    """__NR_* as the C preprocessor defines them (the kernel's own headers, not our memory)."""
    done = subprocess.run(["gcc", "-E", "-dM", "-x", "c", "-"], input=source, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"the kernel headers are not installed: {done.stderr.strip()[:80]}")
    found: dict[str, int] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].startswith(("__NR_", "__NR3264_")) and parts[2].isdigit():
            found.setdefault(parts[1].split("_", 3)[-1] if parts[1].startswith("__NR3264_")
                             else parts[1][len("__NR_"):], int(parts[2]))
    return found


@pytest.mark.parametrize("arch, source", [
    ("x86_64", "#include <asm/unistd_64.h>\n"), ("aarch64", _GENERIC)])
def test_every_syscall_number_is_the_kernel_headers(arch: str, source: str) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("no C preprocessor")
    headers = _header_numbers(source)
    for name, number in syscalls.SYSCALL_NUMBERS[arch].items():
        assert headers.get(name) == number, (arch, name)
    if arch == "aarch64":  # a call it never had is absent from its table, not given a wrong number
        assert "iopl" not in headers and "iopl" not in syscalls.SYSCALL_NUMBERS[arch]


def test_an_unknown_architecture_gets_one_sentence_never_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from labsupport.course import doctor

    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    with pytest.raises(LabError, match="knows system call numbers for x86_64 and aarch64, not for riscv64"):
        syscalls.number("pivot_root")
    assert doctor.check_architecture().status == "problem"


def test_the_seccomp_filter_is_built_for_the_architecture_it_runs_on() -> None:
    from labsupport.container import seccomp

    for arch, clone in (("x86_64", 56), ("aarch64", 220)):
        code = seccomp.program(seccomp.DEFAULT, arch)
        words = [struct.unpack_from("HBBI", code, i) for i in range(0, len(code), 8)]
        assert words[1][3] == syscalls.AUDIT_ARCH[arch]      # the first comparison: the architecture
        assert any(k == clone for _, _, _, k in words)       # clone's own number there
    assert len(seccomp.program(seccomp.DEFAULT, "aarch64")) < len(seccomp.program(seccomp.DEFAULT, "x86_64"))
