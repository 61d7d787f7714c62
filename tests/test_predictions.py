"""Predict, then measure: the shared record of predictions, and what checks make of it.

The record is a file in the notebook's exercise directory; these tests write to a scratch
one (the ``exercises`` fixture), never to a learner's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from labsupport.course import predict, predictions
from labsupport.course.exercises import Verdict, check
from labsupport.kernel.errors import LabError


def test_a_prediction_is_kept_with_its_time_and_a_second_one_beside_the_first(exercises: Path) -> None:
    assert predictions.recorded("08", 1) is None
    before = time.time()
    first = predict("08", 1, "  the heavy group gets 80 %  ")
    assert first.first == first.latest == "the heavy group gets 80 %"
    assert before <= first.made_at <= time.time()
    assert first.numbers() == [80.0] and "heavy" in first.words()
    second = predict(8, 1, "maybe 75")
    assert (second.first, second.latest, second.made_at) == (first.first, "maybe 75", first.made_at)
    assert "later: 'maybe 75'" in str(second)
    saved = json.loads((exercises / "08" / predictions.FILE).read_text())
    assert [answer for _, answer in saved["1"]] == ["the heavy group gets 80 %", "maybe 75"]
    assert predictions.recorded("08", 2) is None, "each exercise has its own"
    assert predict("A", 3, "twice").notebook == "A"


def test_an_empty_prediction_is_refused_in_a_sentence(exercises: Path) -> None:
    with pytest.raises(LabError, match="needs words"):
        predict("08", 1, "   ")
    assert predictions.recorded("08", 1) is None


def test_a_check_without_a_prediction_says_how_to_make_one(exercises: Path) -> None:
    verdict = predictions.required("06", 3, "for the proxy's cost")
    assert isinstance(verdict, Verdict) and not verdict.passed
    assert 'predict("06", 3, ' in verdict.message and "for the proxy's cost" in verdict.message
    predict("06", 3, "3x")
    assert not isinstance(predictions.required("06", 3, "x"), Verdict)


def test_a_measurement_older_than_the_prediction_does_not_count(exercises: Path) -> None:
    guess = predict("12", 3, "disk x2, nic x5")
    late = predictions.made_before(guess, guess.made_at - 60, "The kept result")
    assert late is not None and not late.passed and "before you recorded" in late.message
    assert predictions.made_before(guess, guess.made_at + 1, "The kept result") is None
    assert "You predicted: 'disk x2, nic x5'" in predictions.beside(guess, "x3")


def test_exercise_00_1_shows_what_a_box_without_its_own_proc_sees(exercises: Path) -> None:
    verdict = check("00", 1)
    assert not verdict.passed and "Predict first" in verdict.message
    predict("00", 1, "PID 1 and only its own processes")
    verdict = check("00", 1)
    assert verdict.passed, verdict.message
    assert "the shell is PID 1" in verdict.message and "box with its own /proc 1" in verdict.message
    assert "PID 1 and only its own processes" in verdict.message
