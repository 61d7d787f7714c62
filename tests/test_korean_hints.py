"""Every check speaks Korean too: each hint and verdict carries a Korean message.

The learner who wrote the seed reads Korean first. The exercise modules are read as
source (an AST walk), so a new ``hint(...)`` without its Korean fails here before any
learner meets it; ``LAB_LANG`` decides what a verdict shows, and the grading files keep
both languages.
"""
from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import pytest

from labsupport.course import grading, predictions
from labsupport.course.exercises import Verdict, check, hint, passed, stopped
from labsupport.kernel.errors import LabError

PACKAGE = Path(grading.__file__).resolve().parent
#: Every file that makes verdicts: the exercise modules, the prediction helper, the registry.
SOURCES = sorted((PACKAGE / "exercises").glob("nb*.py")) + [
    PACKAGE / "predictions.py", PACKAGE / "exercises" / "__init__.py"]
#: The calls that make a learner-facing message, and so need a Korean one beside it.
SPEAKERS = {"hint", "passed", "required", "made_before"}


def _hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)


def _name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _speaks_korean(value: ast.expr) -> bool:
    """A literal with Hangul in it, or a helper asked for its Korean (``korean=True``)."""
    return any(isinstance(node, ast.Constant) and isinstance(node.value, str) and _hangul(node.value)
               for node in ast.walk(value)) or any(
        isinstance(node, ast.keyword) and node.arg == "korean" for node in ast.walk(value))


def _beside_language(call: ast.Call) -> str:
    """The language a ``predictions.beside`` call is asked for (its third argument)."""
    lang = call.args[2] if len(call.args) > 2 else None
    return lang.value if isinstance(lang, ast.Constant) else "en"


def untranslated(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` makes a learner-facing message without a Korean one."""
    problems = []
    for call in ast.walk(ast.parse(source, filename)):
        if not isinstance(call, ast.Call) or _name(call) not in SPEAKERS or not call.args:
            continue  # passed() with no message: its default is bilingual
        where = f"{filename}:{call.lineno} {_name(call)}(...)"
        korean = next((k.value for k in call.keywords if k.arg == "ko"), None)
        if korean is None:
            problems.append(f"{where} has no ko=")
            continue
        if not _speaks_korean(korean):
            problems.append(f"{where} has a ko= without Korean in it")
        for inner in ast.walk(korean):
            if isinstance(inner, ast.Call) and _name(inner) == "beside" and _beside_language(inner) != "ko":
                problems.append(f"{where}: the Korean sets the measurement beside the guess in English")
        for arg in call.args:
            for inner in ast.walk(arg):
                if isinstance(inner, ast.Call) and _name(inner) == "beside" and _beside_language(inner) != "en":
                    problems.append(f"{where}: the English message uses the Korean beside()")
    return problems


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_every_message_has_a_korean_one(path: Path) -> None:
    problems = untranslated(path.read_text(), path.name)
    assert not problems, "\n".join(problems)


def test_the_walk_sees_every_exercise_module() -> None:
    names = {p.stem for p in SOURCES}
    assert {"nb00_welcome", "nb08_cgroups", "nb13_vms_vs_containers", "nbA_docker", "nbB_build"} <= names
    calls = sum(1 for p in SOURCES for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, ast.Call) and _name(n) in {"hint", "passed"} and n.args)
    assert calls >= 240, f"only {calls} hint/passed calls found: is the walk looking at the modules?"


def test_the_walk_fails_on_a_message_without_korean() -> None:
    """The walk is a test that can fail: a module as it was before the Korean layer."""
    before = '''
def check():
    if not ready:
        return hint(f"There is no directory {root} yet.")
    guess = predictions.required("01", 4, "for whether the escape works")
    return passed(predictions.beside(guess, story) + " Well done.")
'''
    assert len(untranslated(before)) == 3
    english_only = 'def c():\n    return hint("Start one.", ko="Start one.")\n'
    assert untranslated(english_only) == ["<source>:2 hint(...) has a ko= without Korean in it"]
    mixed_up = ('def c():\n    return passed(predictions.beside(g, "80 %") + ".",\n'
                '                  ko=predictions.beside(g, "80 %") + " 잘 했습니다.")\n')
    assert len(untranslated(mixed_up)) == 1
    after = ('def c():\n    return passed(predictions.beside(g, "80 %") + ".",\n'
             '                  ko=predictions.beside(g, "80 %", "ko") + " 잘 했습니다.")\n')
    assert untranslated(after) == []


VERDICT = hint("Which file maps user names to uids?", ko="사용자 이름과 uid를 짝지어 주는 파일은 무엇일까요?")


def test_lab_lang_ko_shows_korean_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_LANG", "ko")
    assert str(VERDICT).splitlines() == ["아직: 사용자 이름과 uid를 짝지어 주는 파일은 무엇일까요?",
                                         "    Which file maps user names to uids?"]
    page = VERDICT._repr_html_()
    assert "아직" in page and page.index("사용자 이름") < page.index("Which file")


def test_lab_lang_en_shows_english_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_LANG", "en")
    assert str(VERDICT) == "not yet: Which file maps user names to uids?"
    assert not _hangul(VERDICT._repr_html_())
    assert str(passed("Yes.", ko="맞습니다.")) == "passed: Yes."


def test_by_default_both_show_korean_under_english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB_LANG", raising=False)
    assert str(VERDICT).splitlines() == ["not yet: Which file maps user names to uids?",
                                         "    사용자 이름과 uid를 짝지어 주는 파일은 무엇일까요?"]
    page = VERDICT._repr_html_()
    assert page.index("Which file") < page.index("사용자 이름")
    monkeypatch.setenv("LAB_LANG", "klingon")  # an unknown choice falls back to both
    assert len(str(VERDICT).splitlines()) == 2


def test_the_html_escapes_both_languages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB_LANG", raising=False)
    page = hint("<b>", ko="<i>한글</i>")._repr_html_()
    assert "&lt;b&gt;" in page and "&lt;i&gt;한글&lt;/i&gt;" in page


def test_a_check_that_stops_still_says_so_in_korean() -> None:
    verdict = stopped(LabError("Cannot run ls in /nowhere."))
    assert verdict.message == "Cannot run ls in /nowhere." and _hangul(verdict.ko)


def test_a_missing_prediction_is_asked_for_in_korean(exercises: Path) -> None:
    asked = predictions.required("08", 1, "for the split", ko="두 그룹이 나눠 받는 몫")
    assert isinstance(asked, Verdict) and not asked.passed
    assert "두 그룹이 나눠 받는 몫에 대한 예상" in asked.ko and 'predict("08", 1,' in asked.ko


def test_a_real_check_answers_in_the_language_asked(exercises: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Notebook 00's exercise 2 on a fresh lab: no answer file yet, so a hint - in Korean first."""
    monkeypatch.setenv("LAB_LANG", "ko")
    verdict = check("00", 2)
    first, second = str(verdict).splitlines()
    assert first.startswith("아직: ") and _hangul(first) and "kernel-inside.txt" in first
    assert second.strip().startswith("Write what `uname -r` printed")


def test_the_grading_files_carry_both_languages(exercises: Path, tmp_path: Path) -> None:
    scores = grading.grade("00")
    assert [s.number for s in scores] == [1, 2]
    saved = json.loads(grading.save_json(scores, tmp_path / "scores.json").read_text())
    for entry in saved["exercises"]:
        assert entry["message"] and not _hangul(entry["message"].split("(")[0])
        assert _hangul(entry["message_ko"]), entry
    rows = list(csv.DictReader(grading.save_csv(scores, tmp_path / "scores.csv").open(encoding="utf-8")))
    assert all(_hangul(row["message_ko"]) and row["message"] for row in rows)
    shown = grading.table(scores)
    assert all(_hangul(cell) for cell in shown.column("message"))
