"""Notebook 00 (welcome): two light checks that ask the real host.

Exercise 1 shows the learner's prediction beside what a box made without its own /proc
really sees; exercise 2 compares a one-line answer in /var/lib/labsupport/exercises/00/
with what the kernel says inside a box.
"""
from __future__ import annotations

from pathlib import Path

from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.process import run_command


def _answer(name: str) -> tuple[Path, str | None]:
    """The learner's answer file and its first line (None when the file is missing)."""
    path = exercise_dir("00", create=False) / name
    try:
        lines = path.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError):
        return path, None
    return path, (lines[0].strip() if lines else "")


def _count_processes(listing: str) -> int:
    return sum(1 for name in listing.split() if name.isdigit())


@exercise("00", 1, "Predict what a box without its own /proc sees, then look")
def box_without_its_own_proc() -> Verdict:
    guess = predictions.required("00", 1, "for the PID a box's shell gets and how many processes "
                                 "its `ls /proc` lists, when the box is made without mount_proc")
    if isinstance(guess, Verdict):
        return guess
    box = dict(namespaces=["uts", "pid", "mnt"], hostname="labcheck")
    pid = run_command(["sh", "-c", "echo $$"], **box).stdout.strip()
    seen = _count_processes(run_command(["ls", "/proc"], **box).stdout)
    host = _count_processes(run_command(["ls", "/proc"]).stdout)
    own = _count_processes(run_command(["ls", "/proc"], mount_proc=True, **box).stdout)
    return passed(predictions.beside(
        guess, f"the shell is PID {pid}, yet `ls /proc` lists {seen} processes - the host lists "
        f"{host}, a box with its own /proc {own}") + " /proc shows the processes of the PID "
        "namespace it was mounted from: a box that keeps the host's /proc reads the host's "
        "process table. A runtime mounts a fresh /proc inside every container for that reason.")


@exercise("00", 2, "Which kernel runs inside a box?")
def kernel_inside_a_box() -> Verdict:
    path, answer = _answer("kernel-inside.txt")
    if answer is None:
        return hint(f"Write what `uname -r` printed inside a box into {path}.")
    inside = run_command(["uname", "-r"], namespaces=["uts", "pid", "mnt"],
                         hostname="labcheck").stdout.strip()
    if answer == inside:
        return passed(f"Yes: {inside}, the host's own kernel. A container has no kernel and no "
                      "guest OS (게스트OS) of its own - there is no virtualization layer "
                      "(가상화 계층) between it and the host.")
    return hint(f"{answer!r} is not what `uname -r` prints inside a box on this host. Run it in a "
                "box (the keyword arguments of Try it) and copy its answer exactly.")


def reset() -> list[str]:
    """What notebook 00's exercises leave besides the exercise directory, removed (``reset 00``)."""
    return []
