"""Exercises and their offline checks.

Each notebook ends with two to four exercises. A check inspects the real
system - the root the learner built, the process they started - and answers
"passed" or a hint that points at the idea, never at the solution. Checks are
registered here by notebook and number, so the notebooks, the CLI and the
teacher's grading all call the same functions.

Every verdict speaks English and Korean. ``LAB_LANG`` picks what is shown:
``ko`` puts the Korean first with the English beneath it, ``en`` shows English
only, anything else (the default) shows the English with the Korean under it.
The setting is read each time a verdict is shown, so a learner can switch
languages in a running notebook.
"""
from __future__ import annotations

import html
import importlib
import os
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from labsupport.kernel.errors import LabError


def language() -> str:
    """``ko``, ``en`` or ``both``, from ``LAB_LANG`` (read now, not at import)."""
    chosen = os.environ.get("LAB_LANG", "").strip().lower()
    return chosen if chosen in ("ko", "en") else "both"


def in_language(english: str, korean: str) -> list[str]:
    """The message lines to show, in the order ``LAB_LANG`` asks for."""
    if not korean or language() == "en":
        return [english]
    return [korean, english] if language() == "ko" else [english, korean]


#: What a verdict is called, by language: (passed, not yet).
_WORDS = {"en": ("passed", "not yet"), "ko": ("통과", "아직"), "both": ("passed", "not yet")}


@dataclass(frozen=True)
class Verdict:
    """The answer of one check, in English and (``ko``) in Korean."""

    passed: bool
    message: str
    ko: str = ""

    @property
    def word(self) -> str:
        return _WORDS[language()][0 if self.passed else 1]

    def lines(self) -> list[str]:
        return in_language(self.message, self.ko)

    def __str__(self) -> str:
        first, *rest = self.lines()
        return "\n".join([f"{self.word}: {first}"] + [f"    {line}" for line in rest])

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else "#9a6700"
        first, *rest = (html.escape(line) for line in self.lines())
        beneath = "".join(f'<div style="color:#57606a">{line}</div>' for line in rest)
        return (f'<div style="border-left:4px solid {colour};padding:4px 8px">'
                f'<b style="color:{colour}">{self.word.capitalize()}</b> - {first}{beneath}</div>')


def passed(message: str = "well done.", ko: str = "잘 했습니다.") -> Verdict:
    return Verdict(True, message, ko)


def hint(message: str, ko: str = "") -> Verdict:
    return Verdict(False, message, ko)


def stopped(err: Exception) -> Verdict:
    """A hint for a check the lab could not finish: the lab's errors are written in English."""
    return hint(str(err), ko="확인이 중간에 멈췄습니다. 이유는 함께 나온 영어 메시지에 있습니다.")


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
        return stopped(err)


def module_of(notebook: str) -> ModuleType:
    """The module of one notebook's exercises: ``"06"`` -> ``nb06_network``, ``"A"`` -> ``nbA_docker``."""
    key = str(notebook).zfill(2) if str(notebook).isdigit() else str(notebook)
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith(f"nb{key}_"):
            return importlib.import_module(f"{__name__}.{info.name}")
    raise LabError(f"There is no notebook {notebook} with exercises.")
