"""Every notebook runs top to bottom in a fresh kernel, as root, and leaves nothing behind.

One test item per notebook. The host-residue check (conftest) wraps each one,
so a notebook whose clean-up cell forgets something fails here.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from labsupport import ownership

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SECTIONS = ("Goal", "Idea", "Try it", "Look under the hood", "Exercises", "Clean up")
CELL_TIMEOUT = 300


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them before committing"
    nameless = [i for i, c in enumerate(cells) if not c.get("id")]
    assert not nameless, f"{path.name}: cells {nameless} have no id (nbformat 4.5 wants one per cell)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_has_the_course_shape(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    headings = [line.lstrip("# ").strip() for c in nb.cells if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("#")]
    for section in SECTIONS:
        assert any(h.split(" ", 1)[-1].startswith(section) or h.startswith(section)
                   for h in headings), f"{path.name} has no '{section}' section"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_top_to_bottom(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_FAST", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    scratch_before = set(ownership.TEMP_DIR.glob("*"))
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    # The residue check sees mounts and processes; the clean-up cell must take the scratch too.
    left = sorted(d.name for d in set(ownership.TEMP_DIR.glob("*")) - scratch_before)
    assert not left, f"{path.name} left scratch directories: {left}"
