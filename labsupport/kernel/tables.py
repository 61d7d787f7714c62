"""Small tables: rows that a notebook shows as HTML and a terminal as aligned text.

The notebooks promise "a table rather than a raw dump". Most of what the lab
observes is a handful of rows (host vs inside, one row per aspect), so a tiny
class is enough - no pandas needed, and tests can read ``rows`` directly.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Sequence


def _cell_html(value: Any) -> str:
    """Escape a cell; keep its line breaks so lists stay readable."""
    return html.escape(str(value)).replace("\n", "<br>")


@dataclass
class Table:
    """A caption, a header row and data rows; every cell is shown with ``str()``."""

    headers: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    caption: str = ""

    def column(self, header: str) -> list[Any]:
        """The values of one column, by its header."""
        index = list(self.headers).index(header)
        return [row[index] for row in self.rows]

    def _repr_html_(self) -> str:
        cell = 'style="text-align:left;vertical-align:top;padding:3px 8px"'
        head = "".join(f"<th {cell}>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td {cell}>{_cell_html(v)}</td>" for v in row) + "</tr>"
                       for row in self.rows)
        caption = (f'<caption style="text-align:left;font-weight:bold">{html.escape(self.caption)}'
                   "</caption>" if self.caption else "")
        return (f'<table style="border-collapse:collapse">{caption}'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def __str__(self) -> str:
        cells = [list(map(str, self.headers))] + [[str(v).replace("\n", ", ") for v in r]
                                                  for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.headers))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(([self.caption] if self.caption else []) + lines)

    __repr__ = __str__
