"""The Korean layer: each notebook opens with a 한국어 요약 and closes its main sections with one.

The learner who wrote the seed reads Korean first. Right after the title cell comes a
summary of the notebook's goal and idea (3-6 sentences); the Idea, Try it and Look under
the hood sections each end with a 1-3 sentence summary, just before the next section.
Notebooks named B_* are written elsewhere and get their layer there.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (REPO / "notebooks").glob("*.ipynb") if not p.name.startswith("B_"))
SECTIONS = {"ko-sum-idea": 3, "ko-sum-try": 4, "ko-sum-hood": 5}  # the summary stands before "## N"


def _sentences(text: str) -> int:
    """Korean sentences end in -다. / -요. (a summary uses the formal -니다.)."""
    return len(re.findall(r"[다요][)*]*\.(?:\s|$)", text))


def _hangul(text: str) -> int:
    return sum("\uac00" <= ch <= "\ud7a3" for ch in text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_opens_with_a_korean_summary(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    assert cells[1]["id"] == "ko-summary" and cells[1]["cell_type"] == "markdown", \
        f"{path.name}: the cell after the title is not the 한국어 요약"
    text = "".join(cells[1]["source"])
    assert text.startswith("### 한국어 요약")
    assert 3 <= _sentences(text) <= 6, f"{path.name}: the 요약 has {_sentences(text)} sentences"
    assert _hangul(text) > 100


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_main_section_closes_with_a_korean_summary(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    ids = [c["id"] for c in cells]
    for cell_id, next_section in SECTIONS.items():
        assert cell_id in ids, f"{path.name}: no {cell_id}"
        at = ids.index(cell_id)
        text = "".join(cells[at]["source"])
        assert cells[at]["cell_type"] == "markdown" and 1 <= _sentences(text) <= 3 and _hangul(text) > 20
        following = "".join(cells[at + 1]["source"])
        assert re.search(rf"^## {next_section} ", following, re.M), \
            f"{path.name}: {cell_id} does not close the section before '## {next_section}'"
