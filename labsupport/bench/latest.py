"""The latest result of each benchmark, kept so that slides can be made without measuring again.

Every run of ``python -m labsupport bench NAME`` saves its result here (with
or without ``--json``), as /var/lib/labsupport/bench/NAME.json; ``bench
--export DIR`` draws each benchmark's latest result at slide size.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from labsupport import ownership
from labsupport.bench import BENCHMARKS, benchmark, charts
from labsupport.bench.result import BenchResult

RESULTS_DIR = ownership.WORK_DIR / "bench"


def path_of(name: str) -> Path:
    return RESULTS_DIR / f"{name}.json"


def keep(result: BenchResult) -> Path:
    """Save ``result`` as its benchmark's latest."""
    return result.save(path_of(result.name))


def latest(name: str) -> BenchResult | None:
    path = path_of(name)
    return BenchResult.load(path) if path.exists() else None


def export_all(directory: str | os.PathLike, names: Sequence[str] = BENCHMARKS) -> list[str]:
    """Each benchmark's latest result as a slide (PNG and SVG); one line per file.

    A benchmark never run on this machine is run with ``quick=True`` first -
    the shape, not figures to quote - and the line says so. The caption
    always names the accelerator, since a slide travels without its notes.
    """
    lines = []
    for name in names:
        result = latest(name)
        if result is None:
            result = benchmark(name).run(quick=True)
            keep(result)
            lines.append(f"{name}: no saved result, so it ran now with --quick (shape only)")
        slide = dataclasses.replace(result, names_accelerator=True)
        lines += [f"{name}: wrote {p}" for p in charts.export(slide, directory)]
    return lines
