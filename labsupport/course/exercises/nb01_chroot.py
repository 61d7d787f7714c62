"""Notebook 01 (chroot): checks that run the learner's own root for real.

The learner builds ``/var/lib/labsupport/exercises/01/myroot``. Each check
enters it with the same runner the notebook uses and reads what really
happens - a program that starts or not, what ``ls`` prints, a process the
host can see - so a hint can name the idea that is missing. Exercise 4 runs notebook 01's
escape in a scratch root twice, with and without CAP_SYS_CHROOT, beside the learner's
prediction.
"""
from __future__ import annotations

import os
from pathlib import Path

from labsupport import ownership
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.hoststate import processes
from labsupport.namespaces import chroot
from labsupport.process import DEFAULT_PATH, CommandResult, run_command, run_function

ROOT_NAME = "myroot"
TIMEOUT = 10
#: The capability chroot(2) asks for (capability.h).
CAP_SYS_CHROOT = 18


def my_root() -> Path:
    """The root the learner builds for these exercises."""
    return exercise_dir("01", create=False) / ROOT_NAME


def _program_inside(root: Path, name: str) -> Path | None:
    """Where a shell inside ``root`` would find ``name`` on the PATH, seen from the host."""
    for directory in DEFAULT_PATH.split(":"):
        candidate = root / directory.lstrip("/") / name
        if os.path.lexists(candidate):
            return candidate
    return None


def _root_problem(root: Path) -> Verdict | None:
    """A hint when there is no usable root directory yet."""
    if not root.is_dir():
        return hint(f"There is no directory {root} yet: your root starts as an empty directory there.")
    if root.resolve() == Path("/"):
        return hint(f"{root} leads to the host's own /: a root of your own is a separate directory tree.")
    return None


def _run_inside(root: Path, argv: list[str]) -> CommandResult | Verdict:
    """Run ``argv`` chrooted into ``root``, or explain in a hint why it could not start."""
    try:
        return run_command(argv, root=root, timeout=TIMEOUT)
    except LabError as err:
        if "Cannot run" not in str(err):
            return hint(str(err))
        program = _program_inside(root, argv[0])
        if program is None:
            return hint(f"There is no {argv[0]} where a process inside your root looks for programs "
                        f"(the PATH directories, such as /usr/bin, inside {root}).")
        return hint(f"Your root has {argv[0]} at /{program.relative_to(root)}, but the kernel cannot "
                    "start it ('No such file or directory' for a file that exists): a dynamically "
                    "linked program names a loader that must be inside the root too. Which files "
                    "does it load? ldd on the host lists them.")


def _library_hint(result: CommandResult, program: str) -> Verdict | None:
    if "error while loading shared libraries" in result.stderr:
        missing = result.stderr.split("libraries:", 1)[1].split(":")[0].strip()
        return hint(f"{program} starts but stops at once: it cannot find the shared library "
                    f"{missing} inside your root. ldd on the host lists every library a program "
                    "loads, and where.")
    return None


@exercise("01", 1, "A root of your own where ls / runs")
def ls_runs_in_my_root() -> Verdict:
    root = my_root()
    problem = _root_problem(root)
    if problem:
        return problem
    result = _run_inside(root, ["ls", "/"])
    if isinstance(result, Verdict):
        return result
    if not result.ok:
        return _library_hint(result, "ls") or hint(
            f"ls / ran inside your root but failed (exit {result.returncode}): "
            f"{result.stderr.strip()[:200]}")
    listed = sorted(result.stdout.split())
    expected = sorted(n for n in os.listdir(root) if not n.startswith("."))
    if listed != expected:
        return hint(f"ls / printed {listed}, not what your root holds ({expected}).")
    return passed(f"ls / inside your root lists {', '.join(listed)}: your tree, not the host's /. "
                  "The same program file now finds its libraries at the same paths inside.")


def _owner_columns(listing: str) -> list[tuple[str, str]]:
    """(owner, group) of each entry of an ``ls -l`` listing."""
    columns = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not line.startswith("total"):
            columns.append((fields[2], fields[3]))
    return columns


@exercise("01", 2, "Names for the numbers: who owns the files inside")
def owners_have_names() -> Verdict:
    root = my_root()
    problem = _root_problem(root)
    if problem:
        return problem
    result = _run_inside(root, ["ls", "-l", "/"])
    if isinstance(result, Verdict):
        return result
    if not result.ok:
        return _library_hint(result, "ls") or hint("Do exercise 1 first: ls has to run in your root.")
    columns = _owner_columns(result.stdout)
    if not columns:
        return hint("ls -l / shows no entries: put something into your root first (exercise 1).")
    if any(owner.isdigit() for owner, _ in columns):
        return hint("ls -l / inside your root prints a number where it could print a user name. "
                    "ls asks the C library to turn a uid into a name, and it reads a plain text "
                    "file inside the root the process sees. Which file maps user names to uids?")
    if any(group.isdigit() for _, group in columns):
        return hint("The owners have names now; the group column still shows numbers: groups "
                    "have a table of their own.")
    owners = sorted({owner for owner, _ in columns})
    return passed(f"ls -l / shows {', '.join(owners)} as owner. The name came from your root's "
                  "files, but the number behind it is the host's uid 0 - the same all-powerful "
                  "root: chroot does not isolate users (사용자).")


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


@exercise("01", 3, "Find your chrooted program from the host")
def chrooted_program_seen_from_host() -> Verdict:
    root = my_root()
    problem = _root_problem(root)
    if problem:
        return problem
    target = str(root.resolve())
    forked_only = None
    for pid, proc in sorted(processes().items()):
        if _link(f"/proc/{pid}/root") != target:
            continue
        exe = _link(f"/proc/{pid}/exe") or ""
        if exe.startswith(target + "/"):
            return passed(f"The host lists PID {pid} ({proc.name}) like any other process; "
                          f"/proc/{pid}/root -> {target} and /proc/{pid}/exe -> {exe}. "
                          "A chrooted process is an ordinary host process: the host sees it, "
                          "and could signal it. Stop it now that you have seen it.")
        forked_only = (pid, exe)
    if forked_only:
        pid, exe = forked_only
        return hint(f"PID {pid} has its root in your root, but runs {exe}, a program from outside "
                    "it (a forked copy of Python). Start a program that lives inside your root.")
    return hint(f"No process on this host has its root in {target} right now. Start a program "
                "from your root that keeps running, in the background, and check while it runs: "
                "the host finds it through /proc/PID/root.")


def _escape_with(capabilities: int | None, marker: str) -> str:
    """Inside a chroot: keep only ``capabilities`` (None: leave them alone), then the classic
    escape."""
    if capabilities is not None:
        syscalls.capset(capabilities, capabilities, 0)
    try:
        _, text = chroot.classic_escape(marker)
    except PermissionError as err:
        return f"stopped: {err.strerror} at chroot()"
    return "escaped: it read the host's marker file" if text else "stayed inside"


@exercise("01", 4, "Predict whether the escape works without one capability, then try both")
def escape_needs_a_capability() -> Verdict:
    guess = predictions.required("01", 4, "for whether the classic chroot escape still works for "
                                 "a root that lacks CAP_SYS_CHROOT")
    if isinstance(guess, Verdict):
        return guess
    own = int(next(line for line in open("/proc/self/status")
                    if line.startswith("CapEff")).split()[1], 16)  # inside there is no /proc
    marker = chroot.write_host_marker()
    jail = ownership.temp_dir("ex01jail")
    try:
        (jail / chroot.HATCH).mkdir()
        seen = {label: run_function(_escape_with, capabilities, str(marker), root=jail, timeout=10)
                for label, capabilities in (("root with its capabilities", None),
                                            ("root without CAP_SYS_CHROOT",
                                             own & ~(1 << CAP_SYS_CHROOT)))}
    finally:
        chroot.remove_scratch(marker.parent, jail)
    story = "; ".join(f"{who}: {what}" for who, what in seen.items())
    return passed(predictions.beside(guess, story) + " The escape is built of chroot() calls, and "
                  "chroot() asks for CAP_SYS_CHROOT: take that one bit away and the climb never "
                  "starts. Docker keeps the capability by default - pivot_root is what makes it "
                  "harmless there.")


def reset() -> list[str]:
    """What notebook 01's exercises leave besides the exercise directory, removed (``reset 01``)."""
    return [f"stopped PID {p}" for p in chroot.stop_processes_rooted_in(my_root())]
