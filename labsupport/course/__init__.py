"""The course itself: each notebook's exercises and their checks, grading, resets, the doctor
and the glossary. What a notebook imports from here::

    from labsupport.course import check, exercise_dir
    check("08", 2)                 # passed, or a hint
    exercise_dir("08")             # where the learner works: /var/lib/labsupport/exercises/08
    predict("08", 1, "80 %")       # a prediction, recorded before the measurement
    exercises_of("06").EXERCISE_NAMESPACES   # names an exercise asks for

Imported on first use, so that a notebook's first cell does not load every other notebook's code.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

#: The public names and the module each lives in.
_PUBLIC = {"check": "exercises", "exercise_dir": "exercises.workdir",
           "grade": "grading", "reset": "grading", "predict": "predictions"}


def exercises_of(notebook: str) -> ModuleType:
    """The module that holds one notebook's exercises (``"06"`` -> ``exercises.nb06_network``)."""
    from labsupport.course import exercises

    return exercises.module_of(notebook)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)


__all__ = ["exercises_of", *_PUBLIC]
