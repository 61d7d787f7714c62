"""Notebook G: every term of the notes and of the lab has a Korean and an English definition
and a link to a cell that shows it running.

The older checks - each seed term's Korean word is the seed's own, and each notebook
named shows the word - live in tests/test_grading.py.
"""
from __future__ import annotations

import dataclasses

import pytest

from labsupport.course import cells, glossary, seedmap

#: Words the issue found missing from the glossary; the notes write each of them.
SEED_WORDS = ("호스트OS", "커널드라이브", "OP서버", "하이퍼바이징", "추상화", "실행환경", "오픈소스",
              "자동화", "효율성", "로우레벨", "꼬이면 다시", "스케일업", "유휴자원", "전가상화", "반가상화")

#: The lab's own words a learner meets; each must have a row.
LAB_WORDS = ("chroot", "pivot_root", "mount namespace", "PID namespace", "network namespace",
             "IPC namespace", "UTS namespace", "user namespace", "memory limit", "CPU weight",
             "I/O throttle", "network shaping", "device node", "zombie process", "orphan process",
             "bridge", "veth pair", "whiteout", "copy-up", "overlayfs", "capability", "seccomp",
             "type 1 hypervisor", "type 2 hypervisor", "binary translation", "trap-and-emulate",
             "hardware-assisted virtualization", "virtio")


def test_the_notes_words_are_all_there() -> None:
    words = {t.korean for t in glossary.TERMS}
    assert not [w for w in SEED_WORDS if w not in words]
    seed = glossary.seed_text()
    assert not [t.korean for t in glossary.TERMS if t.korean not in seed]


def test_the_labs_words_are_all_there() -> None:
    words = {t.english for t in glossary.LAB_TERMS}
    assert not [w for w in LAB_WORDS if w not in words]
    assert len({t.english for t in glossary.ALL_TERMS}) == len(glossary.ALL_TERMS)


@pytest.mark.parametrize("term", glossary.ALL_TERMS, ids=[t.english for t in glossary.ALL_TERMS])
def test_each_term_has_both_definitions_and_a_cell_that_runs(term: glossary.Term) -> None:
    assert not glossary.problems((term,))
    assert cells.link(term.shown).startswith(cells.notebook_file(term.notebooks[0]).name + "#")


def test_each_seed_word_stands_in_the_notebook_that_shows_it() -> None:
    """The learner who follows a link finds their own word there, in the summary or the text."""
    def text(nb: str) -> str:
        return "\n".join(cells.source(c) for c in cells.cells(nb))
    missing = [(t.korean, t.shown) for t in glossary.TERMS if t.korean not in text(t.notebooks[0])]
    assert not missing


def test_a_term_without_a_cell_or_a_definition_is_caught() -> None:
    term = glossary.TERMS[0]
    assert glossary.problems((dataclasses.replace(term, shown="00#gone"),)) == [
        f"{term.english}: its cell 00#gone does not exist"]
    assert "runs nothing" in glossary.problems((dataclasses.replace(term, shown="00#fe970085"),))[0]
    assert "Korean" in glossary.problems((dataclasses.replace(term, ko="container"),))[0]
    assert "English" in glossary.problems((dataclasses.replace(term, en=""),))[0]


def test_notebook_g_shows_both_lists_with_links() -> None:
    page = glossary.linked(glossary.LAB_TERMS)._repr_html_()
    assert page.count("<tr>") == len(glossary.LAB_TERMS) + 1
    assert 'href="04_pid.ipynb#' in page and "좀비 프로세스" in page
    assert len(glossary.search("namespace").rows) >= 6
    notes = seedmap.linked()._repr_html_()
    assert notes.count('<a href="') >= len(seedmap.load()) and "노트 vs 커널" in notes
    source = "\n".join(cells.source(c) for c in cells.cells("G"))
    for call in ("glossary.linked(glossary.TERMS)", "glossary.linked(glossary.LAB_TERMS)", "seedmap.linked()"):
        assert call in source, f"notebook G does not show {call}"
