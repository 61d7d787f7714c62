"""What does a namespace (네임스페이스) cost? Start ``/bin/true`` in one, and time it.

Two peers do the same thing for each kind: the lab's own runner
(``process.run_command``, a fork of this Python that unshares and execs)
and util-linux's ``unshare(1)`` started from Python. Both map root in a user
namespace (the lab always writes a uid map, so unshare gets
``--map-root-user``; without maps it would skip that work) and both fork
into a new PID namespace. The group "none" adds the floor: the same
launchers with no namespace, and a plain fork+exec of ``/bin/true``
(``subprocess``) with no namespace tool at all.

What a learner reads from it: the extra over "none" is the namespace's own
price, and it is small. On the reference machine (300 rounds) each kind
added 0.0-0.7 ms to unshare's 2.3 ms, net the dearest, all seven 1.3 ms:
isolation is not what makes a container slow to start. The lab's runner
pays instead for forking a whole Python (about 2 ms each time, twice for a
PID namespace), which a small C program like unshare does not.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Sequence

from labsupport import process
from labsupport.bench.result import BenchResult, number
from labsupport.bench.runner import Peer, run_peers
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table

KINDS = ("uts", "ipc", "mnt", "pid", "net", "user", "cgroup")
UNSHARE_FLAGS = {
    "uts": ["--uts"], "ipc": ["--ipc"], "mnt": ["--mount"], "pid": ["--fork", "--pid"],
    "net": ["--net"], "user": ["--user", "--map-root-user"], "cgroup": ["--cgroup"],
}
NONE, ALL = "none", "all 7"
LAB, UNSHARE, FORK_EXEC = "lab runner", "unshare(1)", "fork+exec"
ROUNDS = 300  # about 30 s here: 19 peers x ~4 ms x 300 rounds, plus the warm-up
QUICK_ROUNDS = 5
PROGRAM = "/bin/true"


def unshare_argv(kinds: Sequence[str], command: Sequence[str] = (PROGRAM,)) -> list[str]:
    """``unshare`` with the flags for ``kinds`` (``--fork`` once), running ``command``."""
    flags = [flag for kind in kinds for flag in UNSHARE_FLAGS[kind]]
    return ["unshare", *dict.fromkeys(flags), *command]


def _lab_trial(kinds: Sequence[str]) -> Peer:
    def trial() -> None:
        result = process.run_command([PROGRAM], namespaces=list(kinds))
        if not result.ok:
            raise LabError(f"{PROGRAM} ended with code {result.returncode}: {result.stderr.strip()}")
    return Peer(LAB, trial, _group(kinds))


def _subprocess_trial(series: str, argv: list[str], kinds: Sequence[str]) -> Peer:
    env = process.command_env()  # the same environment, and marker, as the lab's children

    def trial() -> None:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        if done.returncode != 0:
            raise LabError(f"{' '.join(argv)} ended with code {done.returncode}: "
                           f"{done.stderr.decode(errors='replace').strip()}")
    return Peer(series, trial, _group(kinds))


def _group(kinds: Sequence[str]) -> str:
    if not kinds:
        return NONE
    return ALL if len(kinds) == len(KINDS) else "+".join(kinds)


def peers() -> list[Peer]:
    """The no-namespace floor, each kind alone, then all seven together."""
    if shutil.which("unshare") is None:
        raise LabError("unshare(1) is not installed: install util-linux (apt-get install util-linux).")
    chosen: list[Peer] = [_subprocess_trial(FORK_EXEC, [PROGRAM], ())]
    for kinds in [(), *[(k,) for k in KINDS], KINDS]:
        chosen += [_lab_trial(kinds), _subprocess_trial(UNSHARE, unshare_argv(kinds), kinds)]
    return chosen


def run(rounds: int | None = None, quick: bool = False, progress: bool | None = None) -> BenchResult:
    """Measure every kind with both launchers in one interleaved run.

    ``quick`` (or the environment variable LAB_FAST) runs a few rounds:
    enough to see the shape in a notebook or a test, too few to quote.
    """
    quick = quick or bool(os.environ.get("LAB_FAST"))
    if rounds is None:
        rounds = QUICK_ROUNDS if quick else ROUNDS
    return run_peers(peers(), rounds, name="namespaces",
                     title=f"Start {PROGRAM} in a new namespace: the lab's runner vs unshare(1)",
                     unit="ms", baseline=UNSHARE, warmup=1 if quick else 3, progress=progress)


def _median(result: BenchResult, group: str, series: str) -> float:
    peer = result.find(group, series)
    if peer is None:
        raise LabError(f"The result {result.name!r} has no '{group} / {series}' peer: "
                       "is it a namespaces result?")
    return result.summary(peer.name).median


def kind_table(result: BenchResult) -> Table:
    """Per kind: both medians (p25-p75), their ratio, and each one's extra over no namespace."""
    unit = result.unit
    table = Table(["namespace", f"{LAB} ({unit})", f"{UNSHARE} ({unit})",
                   f"{LAB} / {UNSHARE}", f"{LAB}: extra", f"{UNSHARE}: extra"],
                  caption="Medians (p25-p75); 'extra' is the median minus that launcher's "
                          "median with no namespace")
    floor = {series: _median(result, NONE, series) for series in (LAB, UNSHARE)}
    for group in result.groups():
        lab, other = result.find(group, LAB), result.find(group, UNSHARE)
        if lab is None or other is None:
            continue
        cells: list[str] = [group]
        for peer in (lab, other):
            s = result.summary(peer.name)
            cells.append(f"{number(s.median)} ({number(s.p25)}-{number(s.p75)})")
        r = result.ratio(lab.name, other.name)
        cells.append(f"{r.value:.2f} ({r.p25:.2f}-{r.p75:.2f})")
        for peer, series in ((lab, LAB), (other, UNSHARE)):
            extra = result.summary(peer.name).median - floor[series]
            cells.append("" if group == NONE else f"{extra:+.2f}")
        table.rows.append(cells)
    return table


def report(result: BenchResult) -> str:
    """What the command line prints: the per-kind comparison, then every peer."""
    fork = _median(result, NONE, FORK_EXEC)
    return (f"{kind_table(result)}\nplain {FORK_EXEC} of {PROGRAM} from Python (subprocess, "
            f"no namespace): {number(fork)} {result.unit}\n\n{result}")
