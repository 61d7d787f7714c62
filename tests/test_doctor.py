"""The lab doctor on the real machine, every row checked against an independent fact."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labsupport.cgroups import detect_layout
from labsupport.course import doctor as doc
from labsupport.course.doctor import Check, Verdict, render_html, render_text, run_check, run_checks
from labsupport.kernel.errors import LabError

STATUSES = {"ok", "warning", "problem"}


@pytest.fixture(scope="module")
def checks() -> dict[str, Check]:
    return {c.name: c for c in run_checks()}


def test_every_check_gives_a_status_a_finding_and_one_sentence(checks: dict[str, Check]) -> None:
    assert list(checks) == [name for name, _ in doc.CHECKS]
    for check in checks.values():
        assert check.status in STATUSES, check
        assert check.finding, check
        assert check.meaning.endswith(".") and "\n" not in check.meaning, check
        assert "crashed" not in check.finding, check


def test_root_row_matches_euid(checks: dict[str, Check]) -> None:
    assert (checks["root"].status == "ok") == (os.geteuid() == 0)


def test_kernel_row_names_the_release(checks: dict[str, Check]) -> None:
    assert os.uname().release in checks["kernel"].finding


def test_cgroup_row_says_the_detected_layout(checks: dict[str, Check]) -> None:
    layout = detect_layout()
    row = checks["cgroup layout"]
    assert row.finding == layout.summary()
    assert row.finding.startswith(layout.kind)
    assert "v2" in row.meaning  # always tells learners where they likely stand
    if layout.kind == "hybrid":
        assert row.finding == f"hybrid (v1 + v2 at {layout.v2_mount})"


def test_overlay_row_matches_proc_filesystems(checks: dict[str, Check]) -> None:
    known = Path("/proc/filesystems").read_text().split()
    assert (checks["overlayfs"].status == "ok") == ("overlay" in known)


def test_user_namespace_row_matches_the_sysctls(checks: dict[str, Check]) -> None:
    row = checks["user namespaces"]
    maximum = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    apparmor = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    if maximum == 0:
        assert row.status == "problem"
    elif apparmor.exists() and apparmor.read_text().strip() == "1":
        assert row.status == "warning" and "root is unaffected" in row.meaning
    else:
        assert row.status in ("ok", "warning")


def test_namespace_row_lists_proc_self_ns(checks: dict[str, Check]) -> None:
    present = set(os.listdir("/proc/self/ns"))
    for kind in doc.LAB_NAMESPACES:
        assert (kind in checks["namespace kinds"].finding.split()) == (kind in present)


def test_disk_row_thresholds_match_statvfs(checks: dict[str, Check]) -> None:
    stats = os.statvfs("/var/cache")
    free = stats.f_bavail * stats.f_frsize
    expected = "problem" if free < doc.PROBLEM_FREE_BYTES else (
        "warning" if free < doc.WARN_FREE_BYTES else "ok")
    assert checks["disk space"].status == expected
    assert "GiB free" in checks["disk space"].finding


def test_busybox_row_agrees_with_ldd(checks: dict[str, Check]) -> None:
    row = checks["busybox-static"]
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        assert row.status == "problem" and "sudo ./lab up" in row.meaning
        return
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd to compare with")
    out = subprocess.run([ldd, str(busybox)], capture_output=True, text=True)
    static = "not a dynamic executable" in out.stdout + out.stderr or "statically" in out.stdout
    assert (row.status == "ok") == static


def test_elf_reader_tells_static_from_dynamic() -> None:
    python = Path(os.path.realpath(sys.executable))
    ldd = subprocess.run(["ldd", str(python)], capture_output=True, text=True)
    dynamic = "=>" in ldd.stdout
    assert doc.elf_interpreter_present(python) == dynamic
    with pytest.raises(LabError, match="not an ELF"):
        doc.elf_interpreter_present(Path(__file__))


def test_python_row_says_which_way_namespaces_are_reached(checks: dict[str, Check]) -> None:
    row = checks["python"]
    assert row.status == "ok"
    expected = "os.unshare and os.setns" if hasattr(os, "unshare") else "ctypes"
    assert expected in row.meaning


def test_kvm_row_follows_the_pvm_fact(checks: dict[str, Check]) -> None:
    row = checks["kvm"]
    if Path("/sys/module/kvm_pvm").exists():
        assert row.status == "warning"
        assert "PVM" in row.meaning and "cannot run a stock guest kernel" in row.meaning
        assert "TCG" in row.meaning
    if not Path("/dev/kvm").exists():
        assert row.status == "warning" and row.finding == "no /dev/kvm"


def test_a_crashing_check_becomes_a_problem_row_and_the_rest_still_run() -> None:
    def explode() -> Verdict:
        raise ZeroDivisionError("division by zero")

    rows = run_checks([("exploding check", explode), ("root", doc.check_root)])
    assert [r.name for r in rows] == ["exploding check", "root"]
    broken = rows[0]
    assert broken.status == "problem"
    assert "ZeroDivisionError" in broken.finding
    assert "exploding check" in broken.meaning
    assert rows[1].status in STATUSES


def test_a_lab_error_becomes_a_problem_row_with_its_sentence() -> None:
    def refuse() -> Verdict:
        raise LabError("The kernel said no.")

    row = run_check("refusing", refuse)
    assert (row.status, row.meaning) == ("problem", "The kernel said no.")


SAMPLE = [
    Check("root", "ok", "yes (uid 0)", "Fine."),
    Check("a longer name", "warning", "<b>not bold</b>", "Careful & slow."),
    Check("x", "problem", "missing", "Broken."),
]


def test_text_table_is_aligned_with_a_symbol_per_status() -> None:
    text = render_text(SAMPLE)
    rows = [line for line in text.splitlines() if line[:1] in doc.SYMBOLS.values()]
    assert [r[0] for r in rows[:3]] == ["✓", "!", "✗"]
    finding_columns = {line.index(c.finding) for line, c in zip(rows, SAMPLE)}
    assert len(finding_columns) == 1
    assert "1 ok, 1 warning, 1 problem" in text


def test_text_table_wraps_long_meanings_under_the_finding_column() -> None:
    long = Check("kvm", "warning", "kvm_pvm", "word " * 60 + "end.")
    lines = render_text([long], width=60).splitlines()
    assert all(len(line) <= 60 for line in lines[1:-1])
    assert len({len(line) - len(line.lstrip()) for line in lines[1:-1]}) == 1


def test_html_table_escapes_and_colours() -> None:
    page = render_html(SAMPLE)
    assert "<b>not bold</b>" not in page and "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert "Careful &amp; slow." in page
    for text_colour, _background in doc.COLOURS.values():
        assert text_colour in page
    assert page.count("<tr>") == len(SAMPLE) + 1


def test_doctor_object_displays_in_jupyter_and_terminal(checks: dict[str, Check]) -> None:
    report = doc.DoctorReport(tuple(checks.values()))
    assert report._repr_html_().startswith("<table")
    assert str(report) == render_text(report.checks) == repr(report)
    assert report.ok == all(c.status != "problem" for c in report.checks)


def test_kernel_version_parser() -> None:
    assert doc._kernel_version("6.18.44-fc-v857") == (6, 18)
    assert doc._kernel_version("5.4.0-150-generic") < doc.MIN_KERNEL
    with pytest.raises(LabError):
        doc._kernel_version("unknown")


def test_library_code_does_not_print() -> None:
    for module in ("course/doctor.py", "vm/kvm.py", "cgroups/layout.py"):
        source = (Path(doc.__file__).parent.parent / module).read_text()
        prints = [line for line in source.splitlines() if re.search(r"\bprint\(", line)]
        # kvm.py's only print is the child's JSON line, behind __main__.
        assert all("json.dumps" in line for line in prints), (module, prints)


def test_the_notebook_one_liner_runs_every_check() -> None:
    import labsupport

    report = labsupport.doctor()
    assert isinstance(report, doc.DoctorReport)
    assert [c.name for c in report.checks] == [name for name, _ in doc.CHECKS]


@pytest.mark.parametrize("version, container, privileged, hypervisor, status, finding", [
    ("Linux version 5.15.153.1-microsoft-standard-WSL2", False, False, True, "ok", "WSL2"),
    ("Linux version 6.1.0-18-arm64 (debian-kernel@lists.debian.org)", False, False, True, "ok",
     "a virtual machine"),
    ("Linux version 6.8.0-31-generic (buildd@ubuntu)", False, False, False, "ok", "bare metal"),
    ("Linux version 6.1.0-18-amd64", True, False, False, "problem", "inside a container"),
    ("Linux version 6.1.0-18-amd64", True, True, True, "warning", "a privileged container in a VM"),
])
def test_the_platform_row_tells_each_kind_of_machine_what_changes(
        version: str, container: bool, privileged: bool, hypervisor: bool, status: str,
        finding: str) -> None:
    verdict = doc.platform_verdict(version, container, privileged, hypervisor)
    assert (verdict.status, verdict.finding) == (status, finding)
    assert verdict.meaning.endswith(".") and verdict.meaning.count(". ") <= 2


def test_the_platform_row_here_matches_the_files_it_reads(checks: dict[str, Check]) -> None:
    row = checks["platform"]
    in_container = Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    assert ("container" in row.finding) == in_container
    assert ("WSL2" == row.finding) == ("microsoft" in Path("/proc/version").read_text().lower())
