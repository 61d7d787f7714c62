"""Notebook 11 (composing and scaling out): checks that ask the learner's running projects.

The projects are named ex11, ex11-fit and ex11-cpu. Each check reads the containers' state,
memory and cgroups on the host, and asks the servers themselves from inside their
containers (redis, the proxy's log), never only the learner's word. Exercises 1 and 2 show
the learner's prediction beside the measurement.
"""
from __future__ import annotations

import statistics
from typing import Any

from labsupport import compose, container
from labsupport.bench import instances
from labsupport.compose import scaleout, services
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, stopped
from labsupport.kernel.errors import LabError

PROJECT = "ex11"
CPU_PROJECT = "ex11-cpu"
FIT_PROJECT = "ex11-fit"
FIT_REPLICAS = 4
PROXY_PORT = 8411
VISITS = 30


def _running(project: str, service: str | None = None) -> list[dict[str, Any]]:
    return [m for m in compose.members(project, service) if m.get("status") == "running"]


def _available_mib() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise LabError("/proc/meminfo has no MemAvailable line.")


@exercise("11", 1, "Predict what one more web replica costs, and how many would fit")
def replicas_that_fit() -> Verdict:
    guess = predictions.required("11", 1, "for the memory one more lab-web replica costs, and how "
                                 "many would fit into this host's free memory",
                                 ko="lab-web 복제본 하나를 더 띄우는 데 드는 메모리와, 이 호스트의 "
                                    "남은 메모리에 몇 개가 더 들어갈지")
    if isinstance(guess, Verdict):
        return guess
    web = [m for m in _running(FIT_PROJECT, "web") if m.get("image") == "lab-web"]
    if len(web) < FIT_REPLICAS:
        return hint(f"{len(web)} lab-web replica(s) run in a project named {FIT_PROJECT!r}: bring "
                    f"one up with at least {FIT_REPLICAS}, so a spread of costs can be seen.",
                    ko=f"{FIT_PROJECT!r} 프로젝트에서 lab-web 복제본이 {len(web)}개 돌고 있습니다: "
                       f"비용의 분포가 보이도록 {FIT_REPLICAS}개 이상으로 띄우세요.")
    silent = [m["name"] for m in web if not scaleout.listening(m["pid"], 8000)]
    if silent:
        return hint(f"{silent[0]} does not listen on port 8000: is it the lab-web image's own "
                    "command that runs?",
                    ko=f"{silent[0]}이(가) 8000번 포트를 듣고 있지 않습니다: 실행되는 것이 lab-web "
                       "이미지 자신의 명령인가요?")
    costs = []
    for member in web:
        try:
            own, shim = instances.container_memory(member["id"])
        except LabError as err:
            return stopped(err)
        costs.append((own + shim).pss)
    each = statistics.median(costs)
    free = _available_mib()
    return passed(predictions.beside(
        guess, f"{len(web)} replicas cost {min(costs):.1f}-{max(costs):.1f} MiB PSS each, runtime "
        f"shim included (median {each:.1f}); with {free:.0f} MiB available now, about "
        f"{int(free // each)} more would fit") + " Scaling out multiplies this per-copy cost; the "
        "image's files are shared, so a replica costs only what its processes write and allocate.",
                  ko=predictions.beside(
                      guess, f"복제본 {len(web)}개가 런타임 shim을 포함해 각각 PSS "
                             f"{min(costs):.1f}-{max(costs):.1f} MiB를 씁니다(중앙값 {each:.1f}); "
                             f"지금 쓸 수 있는 {free:.0f} MiB라면 약 {int(free // each)}개가 더 "
                             "들어갑니다", "ko")
                     + " 스케일 아웃을 하면 이 복제본당 비용이 그대로 곱해집니다. 이미지의 파일은 "
                       "공유되므로, 복제본 하나의 비용은 그 프로세스들이 쓰고 할당하는 "
                       "만큼뿐입니다.")


@exercise("11", 2, "Predict what a scale-down does to the visit count, then scale down")
def count_survives_scale_down() -> Verdict:
    guess = predictions.required("11", 2, "for the visit count after web is scaled from 3 "
                                 "replicas to 1",
                                 ko="web을 복제본 3개에서 1개로 줄인 뒤의 방문 횟수")
    if isinstance(guess, Verdict):
        return guess
    proxy, kv = _running(PROJECT, "proxy"), _running(PROJECT, "kv")
    if not proxy or not kv or not _running(PROJECT, "queue"):
        return hint(f"Project {PROJECT!r} needs its kv, queue and proxy services running (the "
                    f"proxy published on 127.0.0.1:{PROXY_PORT}).",
                    ko=f"{PROJECT!r} 프로젝트에는 kv, queue, proxy 서비스가 실행 중이어야 "
                       f"합니다(proxy는 127.0.0.1:{PROXY_PORT}에 공개).")
    if not any(h == PROXY_PORT for _, h, _ in proxy[0].get("publish", [])):
        return hint(f"The proxy does not publish 127.0.0.1:{PROXY_PORT}.",
                    ko=f"proxy가 127.0.0.1:{PROXY_PORT}를 공개하고 있지 않습니다.")
    backends = {line.split("-> ")[1] for line in container.logs(proxy[0]["name"]).splitlines()
                if line.startswith("connection -> ")}
    if len(backends) < 3:
        return hint(f"The proxy has sent connections to {len(backends)} replica(s) so far: make "
                    f"{VISITS} visits while web runs 3 replicas.",
                    ko=f"지금까지 proxy가 연결을 보낸 복제본은 {len(backends)}개입니다: web이 "
                       f"복제본 3개로 도는 동안 {VISITS}번 방문하세요.")
    web = _running(PROJECT, "web")
    if len(web) != 1:
        return hint(f"web runs {len(web)} replicas now: scale it down to 1.",
                    ko=f"web은 지금 복제본 {len(web)}개로 돌고 있습니다: 1개로 줄이세요.")
    visits = services.redis_get_int(kv[0]["name"], "visits")
    if visits < VISITS:
        return hint(f"redis says visits = {visits}, fewer than {VISITS}.",
                    ko=f"redis의 visits 값은 {visits}(으)로, {VISITS}보다 적습니다.")
    return passed(predictions.beside(
        guess, f"redis in {kv[0]['name']} still counts {visits} visits, served by "
        f"{len(backends)} replicas of which 1 remains ({web[0]['name']})") + " The replicas keep "
        "no state of their own: the count lives in the store's container, so web copies can "
        "come and go - the condition for scaling out.",
                  ko=predictions.beside(
                      guess, f"{kv[0]['name']}의 redis는 여전히 방문 {visits}번을 세고 있습니다. "
                             f"요청을 처리한 복제본은 {len(backends)}개였고 그중 "
                             f"1개({web[0]['name']})가 남았습니다", "ko")
                     + " 복제본은 자기만의 상태를 갖지 않습니다: 횟수는 저장소 컨테이너에 있으므로 "
                       "web 복사본은 생겼다 사라져도 됩니다 - 이것이 스케일 아웃의 조건입니다.")


@exercise("11", 3, "One container gets twice the CPU of another")
def double_weight() -> Verdict:
    running = _running(CPU_PROJECT)
    if len(running) < 2:
        return hint(f"Run a project {CPU_PROJECT!r} with two busy services (a loop that never sleeps).",
                    ko=f"바쁜 서비스 두 개(절대 쉬지 않는 루프)로 {CPU_PROJECT!r} 프로젝트를 "
                       "실행하세요.")
    try:
        split = scaleout.cpu_split(CPU_PROJECT, seconds=2.0)
    except LabError as err:
        return stopped(err)
    names = sorted(split.shares, key=split.got)
    low, high = names[0], names[-1]
    if min(split.cpu_seconds.values()) < 0.03 * split.seconds:  # a shared machine leaves less
        return hint(f"{low} used only {split.cpu_seconds[low]:.2f} s of CPU in {split.seconds:.0f} s on a "
                    "shared core: are both services busy all the time?",
                    ko=f"{low}은(는) 공유 코어에서 {split.seconds:.0f}초 동안 CPU를 "
                       f"{split.cpu_seconds[low]:.2f}초밖에 쓰지 않았습니다: 두 서비스가 항상 "
                       "바쁜가요?")
    ratio = split.cpu_seconds[high] / max(split.cpu_seconds[low], 1e-9)
    if not 1.6 <= ratio <= 2.5:
        return hint(f"On one shared core {high} got {ratio:.2f}x the CPU time of {low} "
                    f"(cpu.shares {split.shares[high]} vs {split.shares[low]}); aim for about 2x.",
                    ko=f"공유 코어 하나에서 {high}이(가) {low}보다 {ratio:.2f}배의 CPU 시간을 "
                       f"받았습니다(cpu.shares {split.shares[high]} 대 {split.shares[low]}). 2배 "
                       "정도를 목표로 하세요.")
    return passed(f"Sharing core {split.core}, {high} got {ratio:.2f}x the CPU time of {low} "
                  f"(cpu.shares {split.shares[high]} vs {split.shares[low]}, from the host's cgroup files).",
                  ko=f"코어 {split.core}를 함께 쓰면서 {high}이(가) {low}보다 {ratio:.2f}배의 CPU "
                     f"시간을 받았습니다(cpu.shares {split.shares[high]} 대 {split.shares[low]}, "
                     "호스트의 cgroup 파일에서 읽음).")


def reset() -> list[str]:
    """What notebook 11's exercises leave besides the exercise directory, removed (``reset 11``)."""
    from labsupport import compose

    return [f"removed container {name}" for project in (PROJECT, CPU_PROJECT, FIT_PROJECT)
            for name in compose.down(project)]
