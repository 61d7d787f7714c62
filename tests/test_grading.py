"""The classroom layer, for real: grade a fresh lab, solve every exercise, grade again, reset.

The teacher's solutions (teacher/solutions/nbNN.py) do what a learner does
through labsupport; every check inspects the real kernel. Exercise work goes
to a scratch directory and the cgroup exercises to scratch group names, so a
learner's own work on this machine is never graded or removed by the test.
Whatever notebooks are registered are graded: a notebook without a teacher's
solution fails the test by name rather than being skipped.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from labsupport import namespaces, ownership
from labsupport.course import grading
from labsupport.course.exercises import nb08_cgroups, workdir
from labsupport.kernel import hoststate

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "teacher" / "solutions"

#: Exercises a script cannot solve, with the reason (none so far: the list is checked, not skipped).
NOT_SCRIPTABLE: dict[tuple[str, int], str] = {}


def _solution(notebook: str) -> ModuleType:
    path = SOLUTIONS / f"nb{notebook}.py"
    assert path.exists(), f"notebook {notebook} has exercises but no teacher's solution at {path}"
    spec = importlib.util.spec_from_file_location(f"teacher_solution_{notebook}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture
def scratch_exercises(monkeypatch: pytest.MonkeyPatch):
    """Exercise directories and cgroup names of the test's own, removed afterwards."""
    base = ownership.temp_dir("grading")
    base.chmod(0o755)  # as /var/lib/labsupport: a remapped root inside must pass through it
    monkeypatch.setattr(workdir, "EXERCISES_DIR", base / "exercises")
    for number in list(nb08_cgroups.GROUPS):
        monkeypatch.setitem(nb08_cgroups.GROUPS, number, f"tg{number}{base.name[-4:]}")
    yield base
    for notebook in grading.notebooks():
        grading.reset(notebook)
    namespaces.stop_children()
    shutil.rmtree(base, ignore_errors=True)


def _solved_notebooks() -> list[str]:
    """The registered notebooks that have a teacher's solution (others are reported below)."""
    return [nb for nb in grading.notebooks() if (SOLUTIONS / f"nb{nb}.py").exists()]


def _reset_all() -> None:
    for notebook in grading.notebooks():
        grading.reset(notebook)


@pytest.mark.parametrize("notebook", grading.notebooks())
def test_every_notebook_has_a_solution(notebook: str) -> None:
    solution = _solution(notebook)
    assert callable(solution.solve)


def test_fresh_lab_solved_then_reset(scratch_exercises: Path) -> None:
    _reset_all()
    fresh = [s for s in grading.grade() if s.notebook in _solved_notebooks()]
    assert len(fresh) >= 27
    assert not [s for s in fresh if s.passed], "a fresh lab should have nothing done"
    assert all(len(s.message) > 20 for s in fresh), "every 'not yet' carries a reason"

    for notebook in _solved_notebooks():
        solution = _solution(notebook)
        for score in [s for s in fresh if s.notebook == notebook]:
            if (notebook, score.number) not in NOT_SCRIPTABLE:
                solution.solve(score.number)
    solved = [s for s in grading.grade() if s.notebook in _solved_notebooks()]
    failed = [f"{s.notebook}.{s.number}: {s.message}" for s in solved
              if not s.passed and (s.notebook, s.number) not in NOT_SCRIPTABLE]
    assert not failed, "\n".join(failed)
    assert all(s.message_ko for s in fresh + solved), "every verdict carries its Korean too"

    # The host's side: the solutions really left boxes, mounts and namespaces behind.
    assert ownership.lab_processes() and namespaces.held()
    _reset_all()
    assert not list((scratch_exercises / "exercises").glob("*")), "exercise directories remain"
    left = [d.name for d in ownership.TEMP_DIR.glob("*") if d != scratch_exercises]
    assert not left, f"scratch of the solutions remains (roots, VM consoles): {left}"
    assert not [p for p in ownership.lab_processes() if hoststate.read_process(p)
                and hoststate.read_process(p).ppid == os.getpid()], "boxes of the solutions remain"
    after = [s for s in grading.grade() if s.notebook in _solved_notebooks()]
    assert not [s for s in after if s.passed], [s for s in after if s.passed]
    assert not [h for h in namespaces.held() if h.name in ("ex02", "ex03")]


def test_reset_refuses_unknown_notebook() -> None:
    with pytest.raises(grading.LabError, match="no exercises"):
        grading.reset("99")


def test_reset_leaves_the_hosts_own_mounts_alone(scratch_exercises: Path) -> None:
    """A mount that is still there after the lab's unmount stops the removal: nothing under it is deleted."""
    from labsupport.namespaces import mount as mounts

    work = workdir.exercise_dir("05")
    (work / "notes").mkdir()
    (work / "notes" / "keep.txt").write_text("mine\n")
    mounts.bind(work / "notes", work / "window", read_only=True)
    done = grading.reset("05")
    assert any("unmounted" in line for line in done)
    assert not work.exists()
    assert not [m for m in hoststate.mounts() if str(work) in m.mountpoint]


def test_grade_cli_writes_json_and_csv(tmp_path: Path) -> None:
    out_json, out_csv = tmp_path / "scores.json", tmp_path / "scores.csv"
    result = subprocess.run([sys.executable, "-m", "labsupport", "grade", "00",
                             "--json", str(out_json), "--csv", str(out_csv)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out_json.read_text())
    assert [e["number"] for e in saved["exercises"]] == [1, 2]
    assert "exercises passed" in result.stdout and saved["total"] in result.stdout
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["notebook"] for r in rows] == ["00", "00"]
    assert all(r["message"] for r in rows)


def test_grade_cli_refuses_unknown_notebook() -> None:
    result = subprocess.run([sys.executable, "-m", "labsupport", "grade", "99"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert "no exercises" in result.stderr and "Traceback" not in result.stderr


# -- Appendix G: the glossary is held to the seed and to the notebooks ------------------------

from labsupport.course import glossary  # noqa: E402


def _notebook_text(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells)


def test_every_korean_word_is_the_seeds_own() -> None:
    seed = glossary.seed_text()
    assert seed.strip(), "the seed notes are missing"
    wrong = [t.korean for t in glossary.TERMS if t.korean not in seed]
    assert not wrong, f"not written so in the seed: {wrong}"
    assert len({t.english for t in glossary.TERMS}) == len(glossary.TERMS)


@pytest.mark.parametrize("notebook", sorted({nb for t in glossary.TERMS for nb in t.notebooks}))
def test_every_notebook_named_exists_and_shows_its_words(notebook: str) -> None:
    path = glossary.notebook_file(notebook)
    assert path is not None, f"the glossary names notebook {notebook}, which does not exist"
    text = _notebook_text(path)
    missing = [t.korean for t in glossary.TERMS if notebook in t.notebooks and t.korean not in text]
    assert not missing, f"{path.name} does not show {missing}"


def test_every_term_is_shown_in_a_written_notebook() -> None:
    for term in glossary.TERMS:
        assert term.notebooks, term
        assert all(glossary.notebook_file(nb) for nb in term.notebooks), term


def test_glossary_table_lists_every_term() -> None:
    table = glossary.table()
    assert len(table.rows) == len(glossary.TERMS) >= 40
    assert "전가상화" in table.column("한국어 (as in the notes)")
    assert any("A_docker_under_the_hood" in shown for shown in table.column("shown in"))


# -- slides: `bench --export DIR` ------------------------------------------------------------

def _export(work: Path, slides: Path, name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_WORK_DIR": str(work)}  # the saved results of this test only
    return subprocess.run([sys.executable, "-m", "labsupport", "bench", name, "--export", str(slides)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


#: The benchmarks cheap enough to run --quick here; the VM ones draw through the same
#: charts.export, and tests/test_bench_vms.py and test_bench_suite.py draw their slides.
CHEAP = ("namespaces", "containers")


def test_bench_export_draws_a_benchmark_as_a_slide(tmp_path: Path) -> None:
    from labsupport.bench.result import BenchResult

    work, slides = tmp_path / "work", tmp_path / "slides"
    for name in CHEAP:
        first = _export(work, slides, name)
        assert first.returncode == 0, first.stderr
        assert f"{name}: no saved result, so it ran now with --quick" in first.stdout
        saved = BenchResult.load(work / "bench" / f"{name}.json")
        png, svg = slides / f"{name}.png", slides / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png.read_bytes()[16:20], "big"), int.from_bytes(png.read_bytes()[20:24], "big")
        assert (width, height) == (1800, 1012), "slide size: 12 x 6.75 in at 150 dpi"
        text = svg.read_text()
        assert saved.machine["kernel"] in text and "accelerator" in text
    # The second export draws the saved result: nothing is measured again.
    stamp = {name: (work / "bench" / f"{name}.json").stat().st_mtime_ns for name in CHEAP}
    for name in CHEAP:
        second = _export(work, slides, name)
        assert second.returncode == 0 and "no saved result" not in second.stdout
    assert stamp == {name: (work / "bench" / f"{name}.json").stat().st_mtime_ns for name in CHEAP}


def test_bench_without_a_name_or_export_says_what_to_do() -> None:
    result = subprocess.run([sys.executable, "-m", "labsupport", "bench"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2 and "--export" in result.stderr and "Traceback" not in result.stderr


def test_reset_05_stops_its_boxes_but_not_a_running_container() -> None:
    """A container has a mount namespace of its own too, yet it belongs to notebook 10."""
    from labsupport import container
    from labsupport.namespaces import mount as mounts

    box = mounts.start_box()
    web = container.run("busybox", ["sleep", "600"], name="grading-keep", network="none")
    try:
        pid = container.state(web)["pid"]
        boxes = mounts.lab_boxes()
        assert box.pid in boxes and pid not in boxes
        grading.reset("05")
        assert box.wait(5) is not None
        assert container.state(web)["status"] == "running" and hoststate.read_process(pid) is not None
    finally:
        box.stop()
        container.remove(web, force=True)
