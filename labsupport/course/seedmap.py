"""The learner's notes, line by line, each with the notebook cell that shows it running.

The course grew out of one student's Korean study notes (the *seed*). Every line
of them that says something must be shown by a cell that runs on the real kernel,
not merely mentioned. ``notebooks/seed_map.json`` is that promise written down:
each content line of each seed file, quoted, with the cells that demonstrate it
(``"NB#cell-id"``, the first one a code cell) and, where the note is incomplete
or partly wrong, the "your note vs the kernel" (노트 vs 커널) cell that says so.

A quote and a line number together keep the table honest: if the notes change,
the quote no longer matches and the table must be looked at again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from labsupport.course import cells
from labsupport.kernel.tables import Table

REPO = Path(__file__).resolve().parents[2]
MAP_FILE = REPO / "notebooks" / "seed_map.json"


#: The notes as the course was built from them, kept with it: a fresh clone on a machine
#: without the student's files still checks every line (test_seed_map compares the two).
KEPT_DIR = REPO / "teacher" / "seed"


def seed_dir() -> Path:
    """Where the notes are: $LAB_SEED_DIR, else ``shared/seed`` beside the repository, else
    the copy kept in teacher/seed."""
    if os.environ.get("LAB_SEED_DIR"):
        return Path(os.environ["LAB_SEED_DIR"])
    for place in (REPO.parent / "shared" / "seed", Path("/work/shared/seed")):
        if place.is_dir():
            return place
    return KEPT_DIR


@dataclass(frozen=True)
class SeedLine:
    file: str
    number: int   # 1-based, as an editor counts
    text: str     # the line without its line break


def seed_files() -> list[Path]:
    return sorted(seed_dir().glob("*.txt"))


def content_lines() -> list[SeedLine]:
    """Every line of every seed file that has something on it (blank lines say nothing)."""
    lines = []
    for path in seed_files():
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if text.strip():
                lines.append(SeedLine(path.name, number, text))
    return lines


@dataclass
class Entry:
    """One row of the map: a seed line and where it is shown."""

    file: str
    line: int
    seed: str                       # the line, stripped of leading and trailing blanks
    shown: list[str]                # "NB#cell-id", first a code cell that runs it
    callout: str | None = None      # "NB#cell-id" of a 노트 vs 커널 cell, where the note needs one
    note: str = ""                  # how the cell shows it, in a few words
    refs: list[cells.CellRef] = field(init=False)

    def __post_init__(self) -> None:
        self.refs = [cells.CellRef.parse(r) for r in self.shown]


def load(path: Path = MAP_FILE) -> list[Entry]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [Entry(file, **row) for file, rows in data["files"].items() for row in rows]


def unmapped(entries: list[Entry] | None = None) -> list[SeedLine]:
    """Content lines of the seed that no entry maps (by file, number and quote)."""
    entries = load() if entries is None else entries
    mapped = {(e.file, e.line, e.seed) for e in entries}
    return [s for s in content_lines() if (s.file, s.number, s.text.strip()) not in mapped]


def stale(entries: list[Entry] | None = None) -> list[Entry]:
    """Entries whose quote is no longer what the seed has at that line."""
    entries = load() if entries is None else entries
    present = {(s.file, s.number, s.text.strip()) for s in content_lines()}
    return [e for e in entries if (e.file, e.line, e.seed) not in present]


def broken_cells(entries: list[Entry] | None = None) -> list[str]:
    """Plain sentences for every reference to a cell that is gone, or that cannot show anything.

    The first cell of each entry must be a code cell: a line is *shown* only by a
    cell that runs. A callout must be a markdown cell that says 노트 vs 커널.
    """
    entries = load() if entries is None else entries
    problems = []
    for e in entries:
        where = f"{e.file}:{e.line} ({e.seed[:30]})"
        if not e.refs:
            problems.append(f"{where} names no cell")
        for ref in e.refs:
            if cells.find(ref) is None:
                problems.append(f"{where}: cell {ref} does not exist")
        if e.refs and (first := cells.find(e.refs[0])) is not None and first["cell_type"] != "code":
            problems.append(f"{where}: its first cell {e.refs[0]} is {first['cell_type']}, not code")
        if e.callout:
            cell = cells.find(e.callout)
            if cell is None:
                problems.append(f"{where}: callout {e.callout} does not exist")
            elif cell["cell_type"] != "markdown" or "노트 vs 커널" not in cells.source(cell):
                problems.append(f"{where}: callout {e.callout} is not a 노트 vs 커널 cell")
    return problems


def table() -> Table:
    """The notes, line by line, with where each is shown - for notebook G and the terminal."""
    rows = []
    for e in load():
        shown = "\n".join(f"{ref} · {cells.heading_above(ref) or ''}" for ref in e.refs)
        if e.callout:
            shown += f"\n노트 vs 커널: {e.callout}"
        rows.append((e.line, e.seed, shown))
    return Table(["line", "your note (seed)", "shown running in (notebook#cell · section)"], rows,
                 f"The seed notes: {len(rows)} lines, each shown by a cell")


def linked() -> cells.LinkedTable:
    """The same table with each cell a link, for notebook G."""
    rows = [(e.line, e.seed, e.refs + ([cells.CellRef.parse(e.callout)] if e.callout else []))
            for e in load()]
    return cells.LinkedTable(("line", "your note (seed)", "shown running in · 노트 vs 커널"), rows, table())
