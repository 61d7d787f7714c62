"""The lab's runtime, runc and crun on equal ground: ``bench containers`` with layout "v1".

crun 1.8 refuses a hybrid cgroup layout, so on such a host the three are run
in a private mount namespace where the v2 mount is hidden - the same cgroup
trees for every peer. On a pure v2 or pure v1 host this is ``bench
containers`` again, crun included.
"""
from __future__ import annotations

from labsupport.bench import containers
from labsupport.bench.result import BenchResult


def run(rounds: int | None = None, quick: bool = False, progress: bool | None = None) -> BenchResult:
    return containers.run(rounds, quick, progress, layout="v1")


report = containers.report
