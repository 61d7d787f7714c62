"""Predict, then measure: what a learner expects, written down before the kernel answers.

A prediction is one line of the learner's own words, kept with the moment it was made in
the notebook's exercise directory (``predictions.json``), so a restarted kernel, the check
and the teacher's grading all read the same record. A second call does not overwrite the
first: a learner who changes their mind keeps both, and the check shows the first guess
beside the measurement - the surprise is the lesson.

In a notebook::

    from labsupport.course import predict
    predict("08", 1, "the weight-4 group gets about 80 % of the core")

In a check::

    guess = predictions.required("08", 1, "the CPU split of the two groups")
    if isinstance(guess, Verdict):
        return guess                    # no prediction yet: the hint says how to make one
    return passed(predictions.beside(guess, f"{share:.0%} for the heavier group"))

A prediction earns no credit by being right: the check grades what was measured on this
kernel, and shows the prediction beside it.
"""
from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from labsupport.course.exercises import Verdict, hint
from labsupport.course.exercises.workdir import exercise_dir

FILE = "predictions.json"


@dataclass(frozen=True)
class Prediction:
    """Every answer a learner recorded for one exercise, oldest first, with its time."""

    notebook: str
    number: int
    answers: tuple[tuple[float, str], ...]

    @property
    def first(self) -> str:
        return self.answers[0][1]

    @property
    def latest(self) -> str:
        return self.answers[-1][1]

    @property
    def made_at(self) -> float:
        """When the first answer was recorded (seconds since the epoch)."""
        return self.answers[0][0]

    def numbers(self) -> list[float]:
        """The numbers in the first answer, in order ('about 80 %, maybe 75' -> [80.0, 75.0])."""
        return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", self.first)]

    def words(self) -> set[str]:
        """The first answer's words, lower case."""
        return set(re.findall(r"[a-z0-9_]+", self.first.lower()))

    def __str__(self) -> str:
        later = f" (later: {self.latest!r})" if len(self.answers) > 1 else ""
        return f"{self.first!r}{later}"

    def _repr_html_(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.answers[-1][0]))
        return (f'<div style="border-left:4px solid #0969da;padding:4px 8px">Prediction for '
                f"exercise {self.notebook}.{self.number} recorded at {when}: "
                f"<i>{html.escape(self.latest)}</i></div>")


def _file(notebook: str, create: bool) -> Path:
    return exercise_dir(notebook, create=create) / FILE


def _read(notebook: str) -> dict[str, list[list]]:
    try:
        return json.loads(_file(notebook, create=False).read_text())
    except (OSError, ValueError):
        return {}


def _notebook(notebook: str | int) -> str:
    return str(notebook).zfill(2) if str(notebook).isdigit() else str(notebook)


def predict(notebook: str | int, number: int, answer: str) -> Prediction:
    """Record ``answer`` as the prediction for exercise ``number`` of ``notebook``, now."""
    nb = _notebook(notebook)
    if not str(answer).strip():
        from labsupport.kernel.errors import LabError

        raise LabError("A prediction needs words: write what you expect, e.g. '80 % for the heavy group'.")
    saved = _read(nb)
    saved.setdefault(str(number), []).append([time.time(), str(answer).strip()])
    _file(nb, create=True).write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n")
    return recorded(nb, number)  # type: ignore[return-value]


def recorded(notebook: str | int, number: int) -> Prediction | None:
    """The prediction recorded for one exercise, or None."""
    nb = _notebook(notebook)
    answers = _read(nb).get(str(number))
    if not answers:
        return None
    return Prediction(nb, number, tuple((float(t), str(a)) for t, a in answers))


def required(notebook: str | int, number: int, about: str, ko: str = "") -> Prediction | Verdict:
    """The prediction, or the hint a check returns when none was made yet (``ko``: ``about`` in
    Korean, a noun phrase)."""
    found = recorded(notebook, number)
    if found is None:
        call = f'predict("{_notebook(notebook)}", {number}, "your answer in words")'
        return hint(f"Predict first: before you measure, record what you expect {about} - {call}.",
                    ko=f"먼저 예측부터 하세요: 재 보기 전에 {ko}에 대한 예상을 기록하세요 - {call}.")
    return found


def made_before(prediction: Prediction, moment: float, what: str, ko: str = "") -> Verdict | None:
    """A hint when the measurement (at ``moment``) is older than the prediction."""
    if moment < prediction.made_at:
        return hint(f"{what} was measured before you recorded your prediction: measure again now, "
                    "so the prediction really came first.",
                    ko=f"{ko}은(는) 예측을 기록하기 전에 잰 것입니다. 예측이 정말 먼저가 되도록 "
                    "지금 다시 재 보세요.")
    return None


#: How a check's message sets the measurement beside the prediction, by language.
_BESIDE = {"en": "Measured on this kernel: {measured}. You predicted: {prediction}.",
           "ko": "이 커널에서 잰 결과: {measured}. 내가 한 예측: {prediction}."}


def beside(prediction: Prediction, measured: str, lang: str = "en") -> str:
    """The measurement and the prediction, side by side, for a check's message (``lang``:
    ``en`` or ``ko``, the language ``measured`` is written in)."""
    return _BESIDE[lang].format(measured=measured, prediction=prediction)
