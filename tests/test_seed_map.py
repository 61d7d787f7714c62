"""Every line of the learner's notes is shown by a cell that runs (notebooks/seed_map.json).

The test walks the seed files line by line: a content line with no entry fails,
an entry whose quote no longer matches its line fails, and so does an entry
that points at a cell which is gone, or whose first cell is not code.
"""
from __future__ import annotations

import dataclasses

from labsupport.course import cells, seedmap


def test_the_seed_notes_are_there() -> None:
    assert seedmap.seed_files(), f"no seed notes in {seedmap.seed_dir()}"
    assert len(seedmap.content_lines()) > 50


def test_every_content_line_of_the_seed_is_mapped() -> None:
    missing = seedmap.unmapped()
    assert not missing, "seed lines with no demonstrating cell in notebooks/seed_map.json:\n" + "\n".join(
        f"  {s.file}:{s.number}: {s.text.strip()}" for s in missing)


def test_every_entry_still_quotes_its_line() -> None:
    old = seedmap.stale()
    assert not old, "entries whose quote is not the seed's line any more:\n" + "\n".join(
        f"  {e.file}:{e.line}: {e.seed}" for e in old)


def test_every_mapped_cell_exists_and_the_first_one_runs() -> None:
    problems = seedmap.broken_cells()
    assert not problems, "\n".join(problems)


def test_the_map_fails_when_a_line_or_a_cell_goes_missing() -> None:
    entries = seedmap.load()
    dropped = entries[1:]
    assert [(s.file, s.number) for s in seedmap.unmapped(dropped)] == [(entries[0].file, entries[0].line)]
    moved = [dataclasses.replace(entries[0], line=entries[0].line + 1)] + entries[1:]
    assert seedmap.stale(moved) == [moved[0]]
    gone = [dataclasses.replace(entries[0], shown=["00#no-such-cell"])]
    assert seedmap.broken_cells(gone) == [f"{entries[0].file}:{entries[0].line} ({entries[0].seed[:30]}): "
                                          "cell 00#no-such-cell does not exist"]
    told = [dataclasses.replace(entries[0], shown=["00#fe970085"])]  # the title: markdown, runs nothing
    assert "not code" in seedmap.broken_cells(told)[0]


def test_where_the_note_is_partly_wrong_a_callout_says_so() -> None:
    by_text = {e.seed: e for e in seedmap.load()}
    for line in ("- Network", "- 1. 전가상화\t\t: 하드웨어를 완전히 가상화함 -> 게스트OS의 요청이 HyperVisor 통해 호스트OS로 감 => VMware",
                 "- 유휴자원을 사용할 수 없다."):
        assert by_text[line].callout, f"{line!r} needs a 노트 vs 커널 callout"
    callouts = {e.callout for e in by_text.values() if e.callout}
    assert len(callouts) >= 6
    for ref in callouts:
        assert "노트 vs 커널" in cells.source(cells.find(ref))


def test_the_map_reads_as_a_table_for_notebook_g() -> None:
    table = seedmap.table()
    assert len(table.rows) == len(seedmap.content_lines())
    assert any("08#" in shown for shown in table.column("shown running in (notebook#cell · section)"))


def test_a_link_goes_to_the_heading_above_the_cell() -> None:
    assert cells.link("04#04-16") == "04_pid.ipynb#Signals-to-PID-1"
    assert cells.heading_above("00#02d2bbe6") == "One box, one interface, any program"
    assert cells.find("04#nothing") is None and cells.find("ZZ#04-16") is None


def test_the_kept_copy_of_the_notes_is_the_notes() -> None:
    """teacher/seed stands in for the student's notes where they are not beside the repository;
    wherever both are here, they must be the same files, byte for byte."""
    kept = sorted(seedmap.KEPT_DIR.glob("*.txt"))
    assert kept, f"no kept copy in {seedmap.KEPT_DIR}"
    source = seedmap.seed_dir()
    if source != seedmap.KEPT_DIR:
        assert [p.name for p in kept] == [p.name for p in seedmap.seed_files()]
        for path in kept:
            assert path.read_bytes() == (source / path.name).read_bytes(), f"{path.name} differs"
