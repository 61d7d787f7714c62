"""Where a learner does each notebook's exercises: /var/lib/labsupport/exercises/<nb>/.

The directory belongs to the learner: a notebook's clean-up cell leaves it,
so work survives a restarted kernel and a teacher can grade it later. Checks
read it through ``exercise_dir`` (never a fixed path), so tests can point it
at a scratch directory instead of a learner's real work.
"""
from __future__ import annotations

from pathlib import Path

from labsupport import ownership

#: Parent of every notebook's exercise directory (tests replace it).
EXERCISES_DIR = ownership.WORK_DIR / "exercises"


def exercise_dir(notebook: str, create: bool = True) -> Path:
    """The exercise directory of ``notebook`` ("01", or a lettered one with no number to pad:
    "A", "B"); made on request, as learners write into it."""
    key = str(notebook)
    path = EXERCISES_DIR / (key.zfill(2) if key.isdigit() else key.upper())
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
