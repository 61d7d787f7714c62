"""Notebook 13 (VMs vs containers): a benchmark the learner ran, a VM they booted and weighed,
containers they scaled out.

Every check reads the real state: the kept benchmark result (its rounds, its
date against the code's), the background VMs under /run/labsupport/vms and
QEMU's memory in /proc, the running containers and their processes' PSS. Exercise 4
puts the learner's prediction of containers per VM beside the weighed figure.
"""
from __future__ import annotations

import re
import statistics

from labsupport.bench import instances, latest, suite
from labsupport.bench.result import BenchResult
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, resets
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel.errors import LabError
from labsupport.vm import background

MIN_ROUNDS = 3
RESULT_FILE = "result.json"
PSS_FILE = "vm_pss.txt"
PSS_TOLERANCE = 0.2
SCALE_PREFIX = "ex13-"
SCALE_COUNT = 5


@exercise("13", 1, "A benchmark of your own, with enough rounds to see the spread")
def ran_a_benchmark() -> Verdict:
    path = exercise_dir("13") / RESULT_FILE
    if not path.is_file():
        return hint(f"Run one of the VM-vs-container benchmarks ({', '.join(suite.NAMES)}) from a "
                    f"terminal and save its result as JSON at {path} (`python -m labsupport bench "
                    "--help` lists the options).",
                    ko=f"VM 대 컨테이너 벤치마크({', '.join(suite.NAMES)}) 중 하나를 터미널에서 "
                       f"실행하고, 결과를 {path}에 JSON으로 저장하세요(`python -m labsupport bench "
                       "--help`에 옵션이 나옵니다).")
    try:
        result = BenchResult.load(path)
    except LabError as err:
        return hint(f"{path} is not a benchmark result the lab can read: {err}",
                    ko=f"{path}은(는) 랩이 읽을 수 있는 벤치마크 결과가 아닙니다: {err}")
    if result.name not in suite.NAMES:
        return hint(f"That is the {result.name!r} benchmark; pick one that compares VMs and "
                    f"containers: {', '.join(suite.NAMES)}.",
                    ko=f"그것은 {result.name!r} 벤치마크입니다. VM과 컨테이너를 비교하는 것을 "
                       f"고르세요: {', '.join(suite.NAMES)}.")
    rounds = result.settings.get("rounds", 0)
    if rounds < MIN_ROUNDS:
        return hint(f"Your result has {rounds} round(s): a spread (p25-p75) needs at least "
                    f"{MIN_ROUNDS} - look at the options of `bench`.",
                    ko=f"결과에 라운드가 {rounds}번 있습니다: 분산(p25-p75)을 보려면 적어도 "
                       f"{MIN_ROUNDS}번이 필요합니다 - `bench`의 옵션을 살펴보세요.")
    if not suite.is_fresh(result):
        return hint("Your result is older than the benchmark's code: run it again.",
                    ko="결과가 벤치마크 코드보다 오래되었습니다: 다시 실행하세요.")
    return passed(_summary(result),
                  ko=_summary(result, korean=True))


def _summary(result: BenchResult, korean: bool = False) -> str:
    widest = max(result.peers, key=lambda p: result.summary(p.name).iqr)
    spread = result.summary(widest.name)
    accelerator = str(result.machine.get("accelerator")).upper()
    if korean:
        return (f"{result.name}: {accelerator}에서 {result.settings['rounds']}라운드. 분산이 가장 "
                f"넓은 쪽은 {widest.name}: {spread.median:.3g} 근처에서 "
                f"{spread.p25:.3g}-{spread.p75:.3g} {result.unit}입니다.")
    return (f"{result.name}: {result.settings['rounds']} rounds on {accelerator}; the widest "
            f"spread is {widest.name}: {spread.p25:.3g}-{spread.p75:.3g} {result.unit} around "
            f"{spread.median:.3g}.")


@exercise("13", 2, "A background microVM, and what it weighs")
def weighed_a_background_vm() -> Verdict:
    running = [vm for vm in background.ls() if vm.get("status") == "running" and "pss_mib" in vm]
    if not running:
        return hint("No background microVM is running: the lab's command line can boot one that "
                    "keeps running after the command ends (`python -m labsupport --help`).",
                    ko="백그라운드 microVM이 실행 중이 아닙니다: 랩의 명령줄은 명령이 끝난 뒤에도 "
                       "계속 도는 VM을 부팅할 수 있습니다(`python -m labsupport --help`).")
    path = exercise_dir("13") / PSS_FILE
    if not path.is_file():
        return hint(f"A VM runs; now write its PSS in MiB (one number) into {path}.",
                    ko=f"VM이 실행 중입니다. 이제 그 PSS를 MiB 단위(숫자 하나)로 {path}에 적으세요.")
    found = re.search(r"\d+(?:\.\d+)?", path.read_text())
    if found is None:
        return hint(f"{path} holds no number: write the PSS in MiB, e.g. as `vm ls` shows it.",
                    ko=f"{path}에 숫자가 없습니다: PSS를 MiB 단위로 적으세요. 예를 들어 `vm ls`가 "
                       "보여 주는 값입니다.")
    answer = float(found.group())
    for vm in running:
        if abs(answer - vm["pss_mib"]) <= PSS_TOLERANCE * vm["pss_mib"]:
            return passed(f"{vm['name']}: QEMU PID {vm['qemu_pid']} has {vm['pss_mib']:.0f} MiB PSS "
                          f"now ({vm['accelerator'].upper()}) - for a guest that does nothing.",
                          ko=f"{vm['name']}: QEMU PID {vm['qemu_pid']}의 PSS는 지금 "
                             f"{vm['pss_mib']:.0f} MiB입니다({vm['accelerator'].upper()}) - "
                             "아무것도 하지 않는 게스트인데도.")
    return hint(f"{answer:g} MiB is not what any running background VM's QEMU holds now: "
                "measure its PSS (not its guest RAM setting) and write that.",
                ko=f"{answer:g} MiB는 지금 실행 중인 어떤 백그라운드 VM의 QEMU가 가진 값도 "
                   "아닙니다: 게스트 RAM 설정값이 아니라 PSS를 재서 적으세요.")


def scaled_containers() -> list[str]:
    """Ids of running containers named ex13-*."""
    from labsupport import container

    return [c["id"] for c in container.list_containers(all_=False)
            if str(c.get("name", "")).startswith(SCALE_PREFIX)]


@exercise("13", 3, "Scale out: several containers for less than one VM")
def scaled_out() -> Verdict:
    cids = scaled_containers()
    if len(cids) < SCALE_COUNT:
        return hint(f"{len(cids)} running container(s) named {SCALE_PREFIX}*: scale out to at least "
                    f"{SCALE_COUNT} idle busybox containers with that name prefix.",
                    ko=f"{SCALE_PREFIX}*(이)라는 이름의 컨테이너가 {len(cids)}개 실행 중입니다: 그 "
                       f"접두사로 유휴 busybox 컨테이너를 {SCALE_COUNT}개 이상으로 스케일 "
                       "아웃하세요.")
    total = sum(((own + shim).pss for own, shim in map(_memory, cids)), 0.0)
    memory = latest.latest("memory")
    vm_peer = "idle PSS / microVM (idle at its shell)"
    if memory is None or vm_peer not in memory.samples:
        return hint("No microVM memory figure is kept to compare with: run the memory benchmark "
                    "(the notebook's Try it section does).",
                    ko="비교할 microVM 메모리 값이 보관되어 있지 않습니다: 메모리 벤치마크를 "
                       "실행하세요(노트북의 Try it 절에서 합니다).")
    one_vm = memory.summary(vm_peer).median
    if total >= one_vm:
        return hint(f"Your {len(cids)} containers hold {total:.0f} MiB PSS, more than one idle "
                    f"microVM ({one_vm:.0f} MiB): are they idle busybox containers?",
                    ko=f"컨테이너 {len(cids)}개의 PSS가 {total:.0f} MiB로, 유휴 microVM "
                       f"하나({one_vm:.0f} MiB)보다 많습니다: 정말 유휴 busybox 컨테이너인가요?")
    return passed(f"{len(cids)} containers, runtime shims included: {total:.0f} MiB PSS in all; "
                  f"one idle microVM: {one_vm:.0f} MiB ({memory.machine.get('accelerator', '?').upper()}).",
                  ko=f"컨테이너 {len(cids)}개, 런타임 shim 포함: 합쳐서 PSS {total:.0f} MiB. 유휴 "
                     f"microVM 하나: {one_vm:.0f} MiB "
                     f"({memory.machine.get('accelerator', '?').upper()}).")


@exercise("13", 4, "Predict how many containers weigh as much as one VM, then weigh them")
def containers_per_vm() -> Verdict:
    guess = predictions.required("13", 4, "for how many idle busybox containers, runtime shims "
                                 "included, weigh as much (PSS) as one idle microVM",
                                 ko="런타임 shim을 포함해서, 유휴 busybox 컨테이너 몇 개가 유휴 "
                                    "microVM 하나와 같은 무게(PSS)인지")
    if isinstance(guess, Verdict):
        return guess
    cids = scaled_containers()
    if len(cids) < SCALE_COUNT:
        return hint(f"Weigh the containers of exercise 3: at least {SCALE_COUNT} running containers "
                    f"named {SCALE_PREFIX}* are needed, {len(cids)} run now.",
                    ko=f"연습 3의 컨테이너를 재 보세요: {SCALE_PREFIX}*(이)라는 이름의 실행 중인 "
                       f"컨테이너가 {SCALE_COUNT}개 이상 필요한데, 지금은 {len(cids)}개입니다.")
    memory = latest.latest("memory")
    vm_peer = "idle PSS / microVM (idle at its shell)"
    if memory is None or vm_peer not in memory.samples:
        return hint("No microVM memory figure is kept to compare with: run the memory benchmark "
                    "(the notebook's Try it section does).",
                    ko="비교할 microVM 메모리 값이 보관되어 있지 않습니다: 메모리 벤치마크를 "
                       "실행하세요(노트북의 Try it 절에서 합니다).")
    each = statistics.median((own + shim).pss for own, shim in map(_memory, cids))
    if each <= 0:
        return hint(f"The {SCALE_PREFIX}* containers stopped while they were weighed: run them again.",
                    ko=f"재는 동안 {SCALE_PREFIX}* 컨테이너들이 멈췄습니다: 다시 실행하세요.")
    one_vm = memory.summary(vm_peer).median
    return passed(predictions.beside(
        guess, f"one idle container weighs {each:.1f} MiB PSS with its shim, one idle microVM "
        f"{one_vm:.0f} MiB ({memory.machine.get('accelerator', '?').upper()}): about "
        f"{one_vm / each:.0f} containers per VM") + " A VM carries a kernel, its page cache and "
        "QEMU itself; a container carries only its own processes.",
                  ko=predictions.beside(
                      guess, f"유휴 컨테이너 하나는 shim을 포함해 PSS {each:.1f} MiB, 유휴 microVM "
                             f"하나는 {one_vm:.0f} "
                             f"MiB({memory.machine.get('accelerator', '?').upper()}): VM 하나에 "
                             f"컨테이너 약 {one_vm / each:.0f}개", "ko")
                     + " VM은 커널과 그 페이지 캐시, 그리고 QEMU 자체를 짊어집니다. 컨테이너는 "
                       "자기 프로세스만 짊어집니다.")


def _memory(cid: str) -> tuple[instances.Memory, instances.Memory]:
    try:
        return instances.container_memory(cid)
    except LabError:
        return instances.Memory(0, 0), instances.Memory(0, 0)  # it stopped meanwhile


def reset() -> list[str]:
    """What notebook 13's exercises leave besides the exercise directory, removed (``reset 13``)."""
    from labsupport.vm import background

    done = []
    for vm in background.ls():
        background.stop(vm["name"])
        done.append(f"stopped VM {vm['name']}")
    return done + resets.remove_containers_named(SCALE_PREFIX)
