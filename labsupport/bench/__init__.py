"""Benchmarks: peers run side by side in one run, reported as medians, spreads and ratios.

The developers' rule: a speed or memory claim comes from a benchmark, never
from a timed test. Each benchmark module builds its peers and hands them to
``runner.run_peers``; the ``BenchResult`` it gets back carries every sample
and the machine's facts, prints as a table, shows in a notebook, saves as
JSON and draws with ``charts``::

    from labsupport.bench import namespaces, charts
    result = namespaces.run(quick=True)
    result                       # a table in a notebook
    charts.bar_chart(result)     # a slide-sized figure
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from labsupport.kernel.errors import LabError

#: Benchmarks the command line offers: name -> module with run() and report().
BENCHMARKS = ("namespaces", "vms", "containers", "runtimes", "startpath", "memory", "overhead", "density",
              "devices")


def benchmark(name: str) -> ModuleType:
    """The module of benchmark ``name``, imported only when asked for."""
    if name not in BENCHMARKS:
        raise LabError(f"There is no benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}.")
    return importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str) -> Any:
    """BenchResult, Peer and run_peers on first use: the CLI reads BENCHMARKS for its
    help, and should not import the machine probe (and matplotlib's kin) for that."""
    homes = {"BenchResult": "result", "Peer": "runner", "run_peers": "runner"}
    if name not in homes:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{homes[name]}"), name)


__all__ = ["BENCHMARKS", "BenchResult", "Peer", "benchmark", "run_peers"]
