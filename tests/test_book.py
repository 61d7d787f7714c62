"""`python -m labsupport book`: the course run on this host, as static pages (see also the browser test)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labsupport.course import book
from labsupport.kernel.errors import LabError

REPO = Path(__file__).resolve().parent.parent


def test_notebooks_are_picked_by_number_and_an_unknown_one_is_named() -> None:
    assert [p.stem for p in book.notebooks(["02", "A"])] == ["02_uts", "A_docker_under_the_hood"]
    with pytest.raises(LabError, match="no notebook 99"):
        book.notebooks(["99"])


def test_the_cli_refuses_an_unknown_notebook_in_one_sentence(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "labsupport", "book", str(tmp_path), "--notebooks", "99"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "There is no notebook 99" in done.stderr


@pytest.mark.slow
def test_a_page_carries_the_runs_outputs_and_names_the_machine(tmp_path: Path) -> None:
    pages = book.write(tmp_path, ["02"], progress=False)
    assert [p.notebook for p in pages] == ["02_uts"] and not pages[0].errors
    text = pages[0].file.read_text()
    assert "Run on:" in text and "cgroups" in text
    assert text.count("jp-OutputArea-output") > 3, "no outputs: the notebook was not run"
    index = (tmp_path / "index.html").read_text()
    assert "02_uts.html" in index and "doctor" in index
