"""Notebook B (build your own container): the teacher's runtime, and each level of it.

``mycontainer.py`` beside this file is the whole program a learner ends with (about 45 lines of
code). Every line a level adds is tagged ``# level N``, so the runtime as it stands after any
level can be printed and read aloud - a complete program that runs - and the diff between two
levels is that level's lesson. Each check runs the learner's file as it stands, so the whole
program passes them all; ``solve(k)`` puts it in place (the same file for every k).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from labsupport.course.exercises.nbB_build import runtime_file

RUNTIME = Path(__file__).with_name("mycontainer.py")
LEVELS = 7


def level_program(k: int) -> str:
    """The runtime after level ``k``: every line of a later level left out, and the names a later
    level makes (the group, the network namespace) standing for nothing yet."""
    kept = [line for line in RUNTIME.read_text().splitlines()
            if not (tag := re.search(r"# levels? (\d)", line)) or int(tag.group(1)) <= k]
    later = [name for name, level in (("group", 5), ("netns", 7)) if k < level]
    if later:
        fork = kept.index("    pid = os.fork()                                     # level 1")
        kept.insert(fork, f"    {' = '.join(later)} = None  # made from a later level on")
    return "\n".join(kept) + "\n"


def solve(k: int) -> None:
    target = runtime_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RUNTIME, target)
