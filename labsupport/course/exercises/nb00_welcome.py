"""Notebook 00 (welcome): two light checks that compare an answer with the real host.

The learner writes a one-line answer into /var/lib/labsupport/exercises/00/;
the check asks the kernel the same question and compares.
"""
from __future__ import annotations

from pathlib import Path

from labsupport.cgroups.layout import detect_layout
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.process import run_command

LAYOUTS = ("v1", "v2", "hybrid")


def _answer(name: str) -> tuple[Path, str | None]:
    """The learner's answer file and its first line (None when the file is missing)."""
    path = exercise_dir("00", create=False) / name
    try:
        lines = path.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError):
        return path, None
    return path, (lines[0].strip() if lines else "")


@exercise("00", 1, "Read the doctor: which cgroup layout does this host have?")
def cgroup_layout_named() -> Verdict:
    path, answer = _answer("cgroup-layout.txt")
    if answer is None:
        return hint(f"Write your answer, one word, into {path}.")
    word = answer.split()[0].lower() if answer.split() else ""
    layout = detect_layout()
    if word == layout.kind:
        return passed(f"Yes: {layout.summary()}. cgroups (독립된 자원에 대한 제어) are the second half "
                      "of a container; notebook 08 uses them through one API on every layout.")
    if word in LAYOUTS:
        return hint(f"'{word}' is one of the three layouts, but not this host's: read the doctor's "
                    "cgroup row again.")
    return hint(f"Answer with one word - v1, v2 or hybrid - in {path} (it now holds {answer!r}).")


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
