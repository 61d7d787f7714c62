"""The classroom layer: grade every exercise at once, and reset one notebook's lab state.

A teacher grades with the same checks a learner calls in the notebooks, so a
score means exactly what the notebook's "Passed" meant. ``reset`` puts one
notebook back to its start: it finds what that notebook's checks look at -
the boxes, kept namespaces, IPC keys, network namespaces and groups the
exercise modules name - and removes only those, never anything the lab did
not make.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from labsupport.course.exercises import all_exercises, check, in_language, module_of, workdir
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.namespaces import mount as mounts


@dataclass(frozen=True)
class Score:
    """One exercise's line in the score table."""

    notebook: str
    number: int
    title: str
    passed: bool
    message: str
    message_ko: str = ""

    def lines(self) -> list[str]:
        """The message in the language(s) ``LAB_LANG`` asks for, as the notebook shows it."""
        return in_language(self.message, self.message_ko)


def notebooks() -> list[str]:
    """The notebooks that have exercises, in order (whatever is registered now)."""
    return sorted({e.notebook for e in all_exercises()})


def _require_notebook(notebook: str) -> str:
    nb = str(notebook).zfill(2) if str(notebook).isdigit() else str(notebook).upper()
    if nb not in notebooks():
        raise LabError(f"Notebook {notebook} has no exercises: pick one of {', '.join(notebooks())}.")
    return nb


def grade(notebook: str | None = None) -> list[Score]:
    """Run every exercise's check (or one notebook's) and collect the verdicts."""
    wanted = _require_notebook(notebook) if notebook is not None else None
    return [Score(e.notebook, e.number, e.title, *_verdict(e.notebook, e.number))
            for e in all_exercises() if wanted in (None, e.notebook)]


def _verdict(notebook: str, number: int) -> tuple[bool, str, str]:
    verdict = check(notebook, number)
    return verdict.passed, verdict.message, verdict.ko


def total(scores: Sequence[Score]) -> str:
    done = sum(s.passed for s in scores)
    return f"{done} of {len(scores)} exercises passed"


def render_text(scores: Sequence[Score], width: int = 100) -> str:
    """The score table for a terminal: one line per exercise, the check's message below it."""
    lines = [f"{'nb':3} {'ex':3} {'result':8} title", "-" * width]
    for s in scores:
        lines.append(f"{s.notebook:3} {s.number:<3} {'passed' if s.passed else 'not yet':8} {s.title}")
        for line in s.lines():
            lines += textwrap.wrap(line, width, initial_indent=" " * 16, subsequent_indent=" " * 16)
    lines += ["-" * width, total(scores)]
    return "\n".join(lines)


def table(scores: Sequence[Score]) -> Table:
    """The score table for a notebook."""
    rows = [(s.notebook, s.number, s.title, "passed" if s.passed else "not yet", "\n".join(s.lines()))
            for s in scores]
    return Table(["notebook", "exercise", "title", "result", "message"], rows, total(scores))


def save_json(scores: Sequence[Score], path: str | os.PathLike) -> Path:
    target = Path(path)
    target.write_text(json.dumps({"total": total(scores), "passed": sum(s.passed for s in scores),
                                  "exercises": [asdict(s) for s in scores]}, indent=2,
                                 ensure_ascii=False) + "\n")
    return target


def save_csv(scores: Sequence[Score], path: str | os.PathLike) -> Path:
    target = Path(path)
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["notebook", "exercise", "title", "passed", "message", "message_ko"])
        for s in scores:
            writer.writerow([s.notebook, s.number, s.title, s.passed, s.message, s.message_ko])
    return target


# -- reset ------------------------------------------------------------------------

def _remove_work(notebook: str) -> list[str]:
    """Unmount everything in the notebook's exercise directory, then remove it."""
    work = workdir.EXERCISES_DIR / notebook  # not exercise_dir: appendix A has no number to pad
    if not work.exists():
        return []
    done = [f"unmounted {m}" for m in mounts.unmount_below(work)]
    # rmtree would descend into a mount that is still there - into the host's own files.
    left = [m.mountpoint for m in hoststate.mounts()
            if Path(m.mountpoint) == work or work in Path(m.mountpoint).parents]
    if left:
        raise LabError(f"{left[0]} is still mounted inside {work}: unmount it, then reset again.")
    shutil.rmtree(work)
    return done + [f"removed {work}"]


def reset(notebook: str) -> list[str]:
    """Return ``notebook``'s lab state to its start; says what it removed, line by line.

    Each notebook's own ``reset()`` sits beside its exercises and removes what
    they make; a notebook without one still gets its exercise directory
    removed (with every mount in it).
    """
    nb = _require_notebook(notebook)
    own = getattr(module_of(nb), "reset", None)
    done = own() if own else []
    return done + _remove_work(nb)
