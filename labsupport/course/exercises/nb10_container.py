"""Notebook 10 (the full container): predictions, then what the kernel does to a container.

The learner names the containers ex10-*; the checks read state.json and the cgroup files on
the host (OOM kills, the CPU quota and the CPU time each process got), ask the containers
themselves, and for the add_key question run the attack with each defense off. Each shows
the learner's prediction beside the measurement.
"""
from __future__ import annotations

import os
import time
from typing import Any

from labsupport import cgroups, container
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, resets
from labsupport.kernel.errors import LabError

#: Exercise 1's container; exercise 2's, its CPU limit (cores) and how long the check measures.
OOM_NAME = "ex10-oom"
CPU_NAME = "ex10-cpu"
CPU_LIMIT = 0.2
CPU_SECONDS = 2.0


def _running(name: str) -> dict[str, Any] | None:
    try:
        current = container.state(name)
    except LabError:
        return None
    return current if current.get("status") == "running" else None


def _group(current: dict[str, Any]) -> cgroups.CGroup:
    return cgroups.open_group(current["cgroup"])


@exercise("10", 1, "Predict what an OOM kill takes with it, then make a container survive one")
def survives_oom() -> Verdict:
    guess = predictions.required("10", 1, "for which process the kernel kills when a program in a "
                                 "container asks for more memory than its limit - and whether the "
                                 "container lives on",
                                 ko="컨테이너 안의 프로그램이 한도보다 많은 메모리를 요청할 때 "
                                    "커널이 어느 프로세스를 죽이는지 - 그리고 컨테이너는 계속 살아 "
                                    "있는지")
    if isinstance(guess, Verdict):
        return guess
    box = _running(OOM_NAME)
    if box is None:
        return hint(f"There is no running container named {OOM_NAME}: run one from busybox with a "
                    "memory limit, in which a program asks for more than that limit.",
                    ko=f"{OOM_NAME}(이)라는 실행 중인 컨테이너가 없습니다: busybox로 메모리 한도가 "
                       "있는 컨테이너를 실행하고, 그 안에서 어떤 프로그램이 한도보다 많이 요청하게 "
                       "하세요.")
    used = _group(box).usage()
    if used.memory_limit_bytes is None:
        return hint(f"{OOM_NAME} has no memory limit: its programs may use the host's whole memory.",
                    ko=f"{OOM_NAME}에는 메모리 한도가 없습니다: 그 안의 프로그램은 호스트의 "
                       "메모리를 전부 쓸 수 있습니다.")
    if not used.oom_kills:
        return hint(f"{OOM_NAME}'s cgroup counts no OOM kill yet. Which busybox program can be made "
                    f"to hold more than {used.memory_limit_bytes >> 20} MiB at once? (Its buffer "
                    "size is an option.)",
                    ko=f"{OOM_NAME}의 cgroup에 아직 OOM kill이 한 번도 기록되지 않았습니다. busybox "
                       f"프로그램 중 한 번에 {used.memory_limit_bytes >> 20} MiB보다 많이 붙잡게 "
                       "만들 수 있는 것은 무엇일까요? (버퍼 크기를 옵션으로 줄 수 있습니다.)")
    first = container.exec_in(OOM_NAME, ["cat", "/proc/1/comm"]).stdout.strip()
    return passed(predictions.beside(
        guess, f"{OOM_NAME}'s cgroup (limit {used.memory_limit_bytes >> 20} MiB) counts "
        f"{used.oom_kills} OOM kill(s), and its PID 1 ({first}) still runs") + " The OOM killer "
        "picks the biggest process inside the group, not the container: only when PID 1 is the "
        "one killed does the container end - `docker ps` would show Exited (137).",
                  ko=predictions.beside(
                      guess, f"{OOM_NAME}의 cgroup(한도 {used.memory_limit_bytes >> 20} MiB)에 OOM "
                             f"kill이 {used.oom_kills}번 기록되었고, PID 1({first})은 아직 실행 "
                             "중입니다", "ko")
                     + " OOM killer는 컨테이너가 아니라 그룹 안에서 가장 큰 프로세스를 고릅니다: "
                       "죽은 것이 PID 1일 때만 컨테이너가 끝납니다 - `docker ps`에는 Exited "
                       "(137)로 나옵니다.")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@exercise("10", 2, "Predict how a CPU limit is shared by two busy processes, then measure")
def quota_is_per_container() -> Verdict:
    guess = predictions.required("10", 2, "for the CPU each of two busy loops gets in a container "
                                 f"limited to {CPU_LIMIT} of a core, and what they get together",
                                 ko=f"코어의 {CPU_LIMIT}(으)로 제한된 컨테이너에서 바쁜 루프 두 "
                                    "개가 각각 받는 CPU와, 둘이 합쳐 받는 CPU")
    if isinstance(guess, Verdict):
        return guess
    box = _running(CPU_NAME)
    if box is None:
        return hint(f"There is no running container named {CPU_NAME}.",
                    ko=f"{CPU_NAME}(이)라는 실행 중인 컨테이너가 없습니다.")
    group = _group(box)
    quota = _cpu_quota(group)
    if quota is None or abs(quota - CPU_LIMIT) > 0.01:
        return hint(f"The host's cgroup files give {CPU_NAME} "
                    f"{'no CPU quota' if quota is None else f'{quota:g} of a core'}, not {CPU_LIMIT}.",
                    ko=f"호스트의 cgroup 파일에 적힌 {CPU_NAME}의 CPU 할당량: "
                       f"{'없음' if quota is None else f'코어의 {quota:g}'} - {CPU_LIMIT}이(가) "
                       "아닙니다.")
    pids = group.running()
    before = {pid: _cpu_seconds(pid) for pid in pids}
    total0, start = group.usage().cpu_seconds or 0.0, time.monotonic()
    time.sleep(CPU_SECONDS)
    span = time.monotonic() - start
    total = ((group.usage().cpu_seconds or 0.0) - total0) / span
    each = sorted(((_cpu_seconds(pid) - before[pid]) / span for pid in pids
                   if os.path.exists(f"/proc/{pid}")), reverse=True)
    busy = [share for share in each if share > 0.02]
    if len(busy) < 2:
        return hint(f"{len(busy)} process(es) in {CPU_NAME} used the CPU over {CPU_SECONDS:.0f} s: "
                    "run two loops that never sleep, side by side, inside it.",
                    ko=f"{CPU_SECONDS:.0f}초 동안 {CPU_NAME}에서 CPU를 쓴 프로세스는 "
                       f"{len(busy)}개입니다: 그 안에서 절대 쉬지 않는 루프 두 개를 나란히 "
                       "실행하세요.")
    return passed(predictions.beside(
        guess, f"the container got {total:.0%} of a core in all; its busiest two processes "
        f"{busy[0]:.0%} and {busy[1]:.0%}") + " A limit belongs to the cgroup, so it covers "
        "every process of the container together - as `docker run --cpus` does.",
                  ko=predictions.beside(
                      guess, f"컨테이너는 합쳐서 코어의 {total:.0%}를 받았고, 가장 바쁜 두 "
                             f"프로세스는 {busy[0]:.0%}와 {busy[1]:.0%}", "ko")
                     + " 한도는 cgroup에 걸리므로 컨테이너의 모든 프로세스를 합쳐서 적용됩니다 - "
                       "`docker run --cpus`와 같습니다.")


def _cpu_quota(group: cgroups.CGroup) -> float | None:
    """The group's CPU quota in cores, read from v1's cfs files or v2's cpu.max (None: none)."""
    for directory in group.directories:
        if (directory / "cpu.cfs_quota_us").is_file():
            quota = int((directory / "cpu.cfs_quota_us").read_text())
            period = int((directory / "cpu.cfs_period_us").read_text())
            return None if quota < 0 else quota / period
        if (directory / "cpu.max").is_file():
            quota_text, period_text = (directory / "cpu.max").read_text().split()
            return None if quota_text == "max" else int(quota_text) / int(period_text)
    return None


#: The defenses a learner may name for exercise 4, and the run options that turn each one off.
SUSPECTS = {"seccomp": {"seccomp": False}, "capabilities": {"cap_add": ["ALL"]},
            "no_new_privs": {"no_new_privileges": False}, "devices": {"device_rules": ["a *:* rwm"]},
            "masks": {"mask_paths": False}}
@exercise("10", 3, "Predict which defense stops add_key, then let the kernel decide")
def predicted_defense() -> Verdict:
    guess = predictions.required("10", 3, f"- one word of {', '.join(SUSPECTS)} - for the one "
                                 "defense that stops add_key",
                                 ko=f"add_key를 막는 단 하나의 방어({', '.join(SUSPECTS)} 중 한 "
                                    "단어)")
    if isinstance(guess, Verdict):
        return guess
    named = [word for word in SUSPECTS if word in guess.latest.lower()]
    if len(named) != 1:
        return hint(f"Your prediction {guess.latest!r} should name exactly one of "
                    f"{', '.join(SUSPECTS)}.",
                    ko=f"예측 {guess.latest!r}에는 {', '.join(SUSPECTS)} 중 정확히 하나가 들어 "
                       "있어야 합니다.")
    from labsupport.container import attacks  # builds the probe on first use

    stoppers = attacks.stopped_by("add_key", SUSPECTS)
    if named[0] in stoppers:
        first = "" if len(guess.answers) == 1 else f" (your first prediction was {guess.first!r})"
        return passed(f"You predicted {named[0]}{first}. The kernel agrees: add_key was refused in "
                      f"a default container and got through once only {named[0]} was off.",
                      ko="예측: "
                         f"{named[0]}{'' if len(guess.answers) == 1 else f' (처음 예측은 {guess.first!r})'}. "
                         "커널도 같은 답입니다: 기본 컨테이너에서는 add_key가 거부되었고, "
                         f"{named[0]}만 껐을 때 통과했습니다.")
    return hint(f"You predicted {named[0]}, but with only {named[0]} off add_key was still refused. "
                "Does adding a key need a capability, a device or a path - or is it a whole system "
                "call that something must have taken away? Predict again.",
                ko=f"{named[0]}(으)로 예측했지만, {named[0]}만 꺼도 add_key는 여전히 "
                   "거부되었습니다. 키를 추가하는 데 필요한 것이 capability일까요, 장치일까요, "
                   "경로일까요 - 아니면 무언가가 시스템 콜 자체를 막아 버린 것일까요? 다시 예측해 "
                   "보세요.")


def reset() -> list[str]:
    """What notebook 10's exercises leave besides the exercise directory, removed (``reset 10``)."""
    return resets.remove_containers_named("ex10-")
