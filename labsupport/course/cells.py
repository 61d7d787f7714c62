"""Find a notebook's cell by its id, and the heading a link to it can jump to.

The seed map and the glossary point at the cells that *show* a point running.
A cell is named by ``"NB#id"`` - the notebook's number or letter and the cell's
nbformat 4.5 id - because ids survive edits that move or reword cells. A browser
cannot jump to a cell id, though: JupyterLab and nbconvert give every markdown
heading an anchor (its text, spaces turned into ``-``), so a link goes to the
nearest heading at or above the cell.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from labsupport.kernel.tables import Table

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class CellRef:
    """One cell of one notebook, as a ``"NB#id"`` text names it."""

    notebook: str  # "00".."13", "A", "G"
    cell_id: str

    @classmethod
    def parse(cls, text: str) -> "CellRef":
        notebook, sep, cell_id = text.partition("#")
        if not sep or not notebook or not cell_id:
            raise ValueError(f"{text!r} does not name a cell: write NOTEBOOK#CELL-ID, e.g. 04#04-07")
        return cls(notebook, cell_id)

    def __str__(self) -> str:
        return f"{self.notebook}#{self.cell_id}"


def notebook_file(notebook: str) -> Path | None:
    """The notebook file for an id such as "05" or "A", or None while it is not written."""
    found = sorted(NOTEBOOKS.glob(f"{notebook}_*.ipynb"))
    return found[0] if found else None


@lru_cache(maxsize=64)
def _cells(path: Path, mtime_ns: int) -> tuple[dict, ...]:
    return tuple(json.loads(path.read_text(encoding="utf-8"))["cells"])


def cells(notebook: str) -> tuple[dict, ...]:
    """The cells of a notebook, read again whenever the file changed; () if it does not exist."""
    path = notebook_file(notebook)
    return _cells(path, path.stat().st_mtime_ns) if path else ()


def find(ref: CellRef | str) -> dict | None:
    """The cell a reference names, or None when its notebook or its id is gone."""
    ref = CellRef.parse(ref) if isinstance(ref, str) else ref
    return next((c for c in cells(ref.notebook) if c.get("id") == ref.cell_id), None)


def source(cell: dict) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else text


_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def heading_above(ref: CellRef | str) -> str | None:
    """The text of the last markdown heading at or above the cell - what a reader scrolls to."""
    ref = CellRef.parse(ref) if isinstance(ref, str) else ref
    last = None
    for cell in cells(ref.notebook):
        if cell.get("cell_type") == "markdown":
            for line in source(cell).splitlines():
                match = _HEADING.match(line)
                if match:
                    last = match.group(1)
        if cell.get("id") == ref.cell_id:
            return last
    return None


def link(ref: CellRef | str) -> str:
    """A relative URL to the heading above the cell: ``04_pid.ipynb#Signals-to-PID-1``."""
    ref = CellRef.parse(ref) if isinstance(ref, str) else ref
    path = notebook_file(ref.notebook)
    if path is None:
        return ""
    heading = heading_above(ref)
    if not heading:
        return path.name
    anchor = re.sub(r"[*`]", "", heading).replace(" ", "-")
    return f"{path.name}#{anchor}"


class LinkedTable:
    """A table whose cell references render as links a reader can click in JupyterLab.

    A value that is a ``CellRef`` (or a list of them) becomes ``NB#id · section`` linked to
    the section holding the cell; any other value is shown as text. In a terminal it prints as
    the plain ``Table`` it was made from.
    """

    def __init__(self, headers: Sequence[str], rows: list[Sequence[Any]], plain: Table) -> None:
        self.headers, self.rows, self.plain = headers, rows, plain

    @staticmethod
    def _html(value: Any) -> str:
        refs = value if isinstance(value, list) and all(isinstance(v, CellRef) for v in value) else None
        if isinstance(value, CellRef):
            refs = [value]
        if refs is None:
            return html.escape(str(value)).replace("\n", "<br>")
        anchors = []
        for ref in refs:
            label = f"{ref} · {heading_above(ref) or ''}"
            anchors.append(f'<a href="{html.escape(link(ref))}">{html.escape(label)}</a>')
        return "<br>".join(anchors)

    def _repr_html_(self) -> str:
        style = 'style="text-align:left;vertical-align:top;padding:3px 8px"'
        head = "".join(f"<th {style}>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td {style}>{self._html(v)}</td>" for v in row) + "</tr>"
                       for row in self.rows)
        return (f'<table style="border-collapse:collapse"><caption style="text-align:left;'
                f'font-weight:bold">{html.escape(self.plain.caption)}</caption>'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def __repr__(self) -> str:
        return str(self.plain)
