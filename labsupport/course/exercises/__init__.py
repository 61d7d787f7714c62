"""Exercises and their offline checks.

Each notebook ends with two to four exercises. A check inspects the real
system - the root the learner built, the process they started - and answers
"passed" or a hint that points at the idea, never at the solution. Checks are
registered here by notebook and number, so the notebooks, the CLI and the
teacher's grading all call the same functions.
"""
from __future__ import annotations

import html
import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from labsupport.kernel.errors import LabError


@dataclass(frozen=True)
class Verdict:
    """The answer of one check."""

    passed: bool
    message: str

    def __str__(self) -> str:
        return f"{'passed' if self.passed else 'not yet'}: {self.message}"

    def _repr_html_(self) -> str:
        colour, word = ("#1a7f37", "Passed") if self.passed else ("#9a6700", "Not yet")
        return (f'<div style="border-left:4px solid {colour};padding:4px 8px">'
                f'<b style="color:{colour}">{word}</b> - {html.escape(self.message)}</div>')


def passed(message: str = "well done.") -> Verdict:
    return Verdict(True, message)


def hint(message: str) -> Verdict:
    return Verdict(False, message)


@dataclass(frozen=True)
class Exercise:
    notebook: str
    number: int
    title: str
    check: Callable[[], Verdict]


_REGISTRY: dict[tuple[str, int], Exercise] = {}


def exercise(notebook: str, number: int, title: str) -> Callable[[Callable[[], Verdict]], Callable[[], Verdict]]:
    """Register a check function as exercise ``number`` of ``notebook`` ("01", ...)."""
    def register(func: Callable[[], Verdict]) -> Callable[[], Verdict]:
        _REGISTRY[(notebook, number)] = Exercise(notebook, number, title, func)
        return func
    return register


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def all_exercises() -> list[Exercise]:
    _load_all()
    return [_REGISTRY[key] for key in sorted(_REGISTRY)]


def check(notebook: str, number: int) -> Verdict:
    """Run one exercise's check; an unexpected failure inside it becomes a hint, not a traceback."""
    _load_all()
    key = (str(notebook).zfill(2) if str(notebook).isdigit() else str(notebook), number)  # "3" -> "03"; "A" stays
    if key not in _REGISTRY:
        raise LabError(f"There is no exercise {number} in notebook {notebook}.")
    try:
        return _REGISTRY[key].check()
    except LabError as err:
        return hint(str(err))


def module_of(notebook: str) -> ModuleType:
    """The module of one notebook's exercises: ``"06"`` -> ``nb06_network``, ``"A"`` -> ``nbA_docker``."""
    key = str(notebook).zfill(2) if str(notebook).isdigit() else str(notebook)
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith(f"nb{key}_"):
            return importlib.import_module(f"{__name__}.{info.name}")
    raise LabError(f"There is no notebook {notebook} with exercises.")
