"""Appendix A (Docker under the hood): checks that run the learner's own OCI bundle under runc.

The learner writes a bundle - a config.json next to a rootfs - in
/var/lib/labsupport/exercises/A/bundle. Each check runs it with runc for real
(a lab-owned id, state directory and cgroup) and reads the answer from inside
the container, so the check trusts the kernel, not the JSON. Exercise 3 times runc
against the lab's own runner and shows the learner's prediction beside.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable

from labsupport.container import runc
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, workdir
from labsupport.process import run_command

HOSTNAME = "labbox"
MEMORY_LIMIT = 32 << 20
#: How many runs exercise 3 times each way.
TIMES = 3


def bundle() -> Path:
    """The learner's bundle (the appendix is not numbered, so its directory is called A)."""
    return workdir.EXERCISES_DIR / "A" / "bundle"


def _bundle_problem() -> Verdict | None:
    where = bundle()
    if not runc.available():
        return hint("runc is not installed on this host: `apt-get install runc`, then check again.",
                    ko="이 호스트에는 runc가 설치되어 있지 않습니다: `apt-get install runc` 후 "
                       "다시 확인하세요.")
    if not (where / "config.json").is_file():
        return hint(f"There is no {where / 'config.json'} yet: `runc spec` writes runc's default one.",
                    ko=f"아직 {where / 'config.json'}이(가) 없습니다: `runc spec`이 runc의 기본 "
                       "설정 파일을 써 줍니다.")
    try:
        spec = runc.config(where)
    except json.JSONDecodeError as err:
        return hint(f"{where / 'config.json'} is not valid JSON: {err}.",
                    ko=f"{where / 'config.json'}은(는) 올바른 JSON이 아닙니다: {err}.")
    root = where / str(runc.lookup(spec, "root.path") or "")
    if not (root / "bin").is_dir():
        return hint(f"The bundle's root ({root}) has no /bin: a container needs programs in its root.",
                    ko=f"번들의 루트({root})에 /bin이 없습니다: 컨테이너의 루트에는 프로그램이 "
                       "있어야 합니다.")
    return None


def _inside(argv: list[str]) -> str | Verdict:
    result = runc.run(bundle(), argv)
    if not result.ok:
        return hint(runc.why_it_failed(result),
                    ko="runc가 컨테이너를 실행하지 못했습니다. 이유는 함께 나온 영어 메시지(runc의 "
                       "출력)에 있습니다.")
    return result.stdout


@exercise("A", 1, f"A bundle whose container is called {HOSTNAME} and has 32 MiB")
def hostname_and_memory() -> Verdict:
    problem = _bundle_problem()
    if problem:
        return problem
    # v1 puts the limit in memory/memory.limit_in_bytes, v2 in memory.max: print whichever exists.
    seen = _inside(["sh", "-c", "hostname; for f in /sys/fs/cgroup/memory/memory.limit_in_bytes "
                                "/sys/fs/cgroup/memory.max; do [ -r $f ] && cat $f; done; true"])
    if isinstance(seen, Verdict):
        return seen
    lines = seen.split()
    if not lines or lines[0] != HOSTNAME:
        return hint(f"Inside, hostname prints {lines[0] if lines else 'nothing'!r}. Which field of "
                    "config.json names the container's UTS namespace?",
                    ko=f"안에서 hostname이 출력한 값: {lines[0] if lines else '없음'!r}. "
                       "config.json의 어느 필드가 컨테이너의 UTS 네임스페이스 이름을 정할까요?")
    if str(MEMORY_LIMIT) not in lines[1:]:
        return hint(f"The hostname is right; the memory limit inside reads {' '.join(lines[1:]) or 'nothing'}. "
                    "Notebook 08's limits live under one key of config.json's linux section, in bytes.",
                    ko="호스트 이름은 맞습니다. 안에서 읽은 메모리 한도는 "
                       f"{' '.join(lines[1:]) or '없음'}입니다. 노트북 08의 한도들은 config.json의 "
                       "linux 절 아래 한 키에 바이트 단위로 들어갑니다.")
    return passed(f"runc ran your bundle: hostname {HOSTNAME}, memory limit {MEMORY_LIMIT} bytes - "
                  "what `docker run --hostname labbox --memory 32m` writes for runc.",
                  ko=f"runc가 번들을 실행했습니다: 호스트 이름 {HOSTNAME}, 메모리 한도 "
                     f"{MEMORY_LIMIT} 바이트 - `docker run --hostname labbox --memory 32m`이 "
                     "runc에게 써 주는 내용입니다.")


@exercise("A", 2, "A container with no capabilities at all")
def no_capabilities() -> Verdict:
    problem = _bundle_problem()
    if problem:
        return problem
    seen = _inside(["grep", "CapEff", "/proc/self/status"])
    if isinstance(seen, Verdict):
        return seen
    mask = seen.split()[-1] if seen.split() else ""
    if mask.strip("0"):
        return hint(f"Root inside still has capabilities (CapEff {mask}). Notebook 07 showed the five "
                    "sets; config.json lists each one.",
                    ko=f"안의 root에게 아직 capability가 있습니다(CapEff {mask}). 노트북 07에서 "
                       "다섯 가지 집합을 보았습니다. config.json에는 각각이 나열되어 있습니다.")
    return passed("CapEff inside is 0: root in this container may do nothing a capability guards - "
                  "`docker run --cap-drop ALL`.",
                  ko="안의 CapEff는 0입니다: 이 컨테이너의 root는 capability로 보호되는 일을 "
                     "하나도 할 수 없습니다 - `docker run --cap-drop ALL`.")


def _seconds(start: Callable[[], object], times: int) -> float:
    """Median wall time of ``start()`` over ``times`` runs."""
    taken = []
    for _ in range(times):
        began = time.perf_counter()
        start()
        taken.append(time.perf_counter() - began)
    return statistics.median(taken)


@exercise("A", 3, "Predict what runc costs per container, then time it against the lab's runner")
def runc_start_cost() -> Verdict:
    guess = predictions.required("A", 3, "for how long runc takes to run `true` in your bundle's "
                                 "container, start to removal, against the lab's own runner "
                                 "making the same namespaces",
                                 ko="runc가 번들의 컨테이너에서 `true`를 실행하는 데(시작부터 "
                                    "삭제까지) 걸리는 시간과, 같은 네임스페이스를 만드는 랩 자체 "
                                    "러너의 시간")
    if isinstance(guess, Verdict):
        return guess
    problem = _bundle_problem()
    if problem:
        return problem
    first = runc.run(bundle(), ["true"])
    if not first.ok:
        return hint(runc.why_it_failed(first),
                    ko="runc가 컨테이너를 실행하지 못했습니다. 이유는 함께 나온 영어 메시지(runc의 "
                       "출력)에 있습니다.")
    root = bundle() / str(runc.lookup(runc.config(bundle()), "root.path"))
    with_runc = _seconds(lambda: runc.run(bundle(), ["true"]), TIMES)
    with_lab = _seconds(lambda: run_command(["true"], root=root, namespaces=["pid", "uts", "mnt", "ipc"],
                                            pivot=True, mount_proc=True), TIMES)
    return passed(predictions.beside(
        guess, f"runc: {with_runc * 1e3:.0f} ms from `runc run` to `runc delete`; the lab's runner: "
        f"{with_lab * 1e3:.0f} ms (median of {TIMES} each)") + " runc is a separate program that "
        "parses config.json, re-executes itself to set up the container, writes every cgroup file "
        "and keeps state on disk; the lab's runner forks a copy of a Python that is already running.",
                  ko=predictions.beside(
                      guess, f"runc: `runc run`부터 `runc delete`까지 {with_runc * 1e3:.0f} ms; "
                             f"랩의 러너: {with_lab * 1e3:.0f} ms (각각 {TIMES}번의 중앙값)", "ko")
                     + " runc는 별도의 프로그램으로, config.json을 파싱하고, 컨테이너를 준비하려고 "
                       "자기 자신을 다시 실행하고, cgroup 파일을 하나하나 쓰고, 상태를 디스크에 "
                       "보관합니다. 랩의 러너는 이미 실행 중인 Python의 복사본을 fork할 뿐입니다.")
