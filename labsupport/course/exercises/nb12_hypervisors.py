"""Notebook 12 (hypervisors): checks that ask the machine itself, not the notebook.

Exercise 1 watches the threads of the learner's idle QEMU (a type-2 hypervisor is a host
process) beside their prediction of its cost; exercise 2 looks for a QEMU the lab started with the
microvm machine type and reads its memory from /proc; exercise 3 puts the learner's
predicted virtio gains beside the devices benchmark they ran afterwards and kept.
"""
from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import psutil

from labsupport import ownership
from labsupport.bench import latest
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.namespaces import chroot

#: How long exercise 1 watches the idle guest's QEMU.
WATCH_SECONDS = 2.0


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of one process, by thread id."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that just ended
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


@exercise("12", 1, "Predict what an idle guest costs the host, then watch its QEMU")
def hypervisor_is_a_process() -> Verdict:
    guess = predictions.required("12", 1, "for how many host threads an idle 2-vCPU guest's QEMU "
                                 "runs, and how much of a host core they use while the guest "
                                 "does nothing",
                                 ko="vCPU 2개짜리 게스트가 놀고 있을 때 그 QEMU가 돌리는 호스트 "
                                    "스레드 수와, 게스트가 아무것도 하지 않는 동안 그 스레드들이 "
                                    "쓰는 호스트 코어의 양")
    if isinstance(guess, Verdict):
        return guess
    held = held_microvms()
    if not held:
        return hint("No microVM of yours is running: start the 2-vCPU microVM exercise 2 asks for, "
                    "let it reach its idle shell, then check.",
                    ko="실행 중인 내 microVM이 없습니다: 연습 2가 요구하는 vCPU 2개짜리 microVM을 "
                       "시작하고, 유휴 셸까지 올라오게 한 다음 확인하세요.")
    before, start = _thread_cpu(held[0]), time.monotonic()
    time.sleep(WATCH_SECONDS)
    after, span = _thread_cpu(held[0]), time.monotonic() - start
    use = sorted(((after[t] - before.get(t, 0.0)) / span for t in after), reverse=True)
    busiest = ", ".join(f"{u:.0%}" for u in use[:3])
    return passed(predictions.beside(
        guess, f"QEMU PID {held[0]} runs {len(after)} threads; over {WATCH_SECONDS:.0f} s they used "
        f"{sum(use):.0%} of a core in all (the busiest: {busiest})") + " To the host kernel a "
        "vCPU is one thread among QEMU's others, scheduled, limited and killed like any thread: "
        "a type-2 hypervisor is a program. A guest that idles still ticks its clock and polls its "
        "devices, and each tick costs the host.",
                  ko=predictions.beside(
                      guess, f"QEMU PID {held[0]}는 스레드 {len(after)}개를 돌리고, "
                             f"{WATCH_SECONDS:.0f}초 동안 합쳐서 코어의 {sum(use):.0%}를 "
                             f"썼습니다(가장 바쁜 것: {busiest})", "ko")
                     + " 호스트 커널에게 vCPU는 QEMU의 여러 스레드 중 하나일 뿐이고, 다른 "
                       "스레드처럼 스케줄되고 제한되고 종료됩니다: type 2 하이퍼바이저는 하나의 "
                       "프로그램입니다. 놀고 있는 게스트도 타이머 틱을 처리하고 장치를 폴링하며, "
                       "그 하나하나가 호스트에게는 비용입니다.")


def _lab_qemus() -> list[psutil.Process]:
    found = []
    for pid in ownership.lab_processes():
        try:
            proc = psutil.Process(pid)
            if proc.name().startswith("qemu-system"):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def held_microvms() -> list[int]:
    """Idle microVMs that a Python session holds, as exercise 2 asks: not a guest running a
    script (``lab.run=``, as the tests' guests do), nor a background VM of ``labsupport vm
    boot``, whose keeper belongs to notebook 13."""
    held = []
    for proc in _lab_qemus():
        try:
            argv, parent = proc.cmdline(), proc.parent()
            append = argv[argv.index("-append") + 1] if "-append" in argv else ""
            keeper = " ".join(parent.cmdline()) if parent else ""
            if ("microvm" in argv and "lab.run=" not in append
                    and "labsupport.vm.background" not in keeper):
                held.append(proc.pid)
        except psutil.Error:
            continue
    return held


@exercise("12", 2, "A microVM left running, and what it costs")
def microvm_is_running() -> Verdict:
    held = set(held_microvms())  # not notebook 13's background VMs, nor a test's guest
    qemus = [proc for proc in _lab_qemus() if proc.pid in held]
    if not qemus:
        return hint("No QEMU started by the lab is running right now: start one that stays up "
                    "(a VM outside a with-block), then check.",
                    ko="지금 랩이 시작한 QEMU가 하나도 실행 중이 아닙니다: 계속 떠 있는 것(with "
                       "블록 밖의 VM)을 하나 시작한 다음 확인하세요.")
    for proc in qemus:
        argv = proc.cmdline()
        if "microvm" in argv and "-smp" in argv and int(argv[argv.index("-smp") + 1]) >= 2:
            pss = proc.memory_full_info().pss / 2 ** 20
            return passed(f"QEMU PID {proc.pid} runs a 2-vCPU microVM; PSS {pss:.0f} MiB "
                          "(guest RAM it touched + the translation cache + QEMU itself).",
                          ko=f"QEMU PID {proc.pid}가 vCPU 2개짜리 microVM을 돌립니다. PSS {pss:.0f} "
                             "MiB(게스트가 건드린 RAM + 변환 캐시 + QEMU 자체).")
    return hint("A lab QEMU runs, but not a microvm machine with at least two vCPUs: "
                "look at the VMConfig fields.",
                ko="랩의 QEMU가 실행 중이지만, vCPU가 2개 이상인 microvm 머신이 아닙니다: "
                   "VMConfig의 필드를 살펴보세요.")


@exercise("12", 3, "Predict virtio's gains for the next run, then measure and keep it")
def predicted_virtio_gains() -> Verdict:
    from labsupport.bench.devices import gains  # the VM code only when this check runs

    guess = predictions.required("12", 3, "- two numbers, the disk's gain then the NIC's (xN of "
                                 "virtio over the emulated device) - for your next devices run",
                                 ko="다음 장치 벤치마크 실행에 대한 숫자 두 개 - 디스크의 이득, "
                                    "그다음 NIC의 이득(에뮬레이션 장치 대비 virtio가 몇 배인지)")
    if isinstance(guess, Verdict):
        return guess
    numbers = guess.numbers()
    if len(numbers) < 2:
        return hint(f"Your prediction {guess.first!r} holds {len(numbers)} number(s): give two, the "
                    "disk's gain first, then the NIC's (predict again).",
                    ko=f"예측 {guess.first!r}에는 숫자가 {len(numbers)}개 있습니다: 두 개를 주세요. "
                       "디스크의 이득이 먼저, 그다음 NIC의 이득입니다(다시 예측하세요).")
    result = latest.latest("devices")
    if result is None:
        return hint("This machine keeps no devices benchmark yet: run it now and keep the result "
                    "with latest.keep(...) from labsupport.bench.",
                    ko="이 머신에는 아직 보관된 장치 벤치마크가 없습니다: 지금 실행하고, "
                       "labsupport.bench의 latest.keep(...)로 결과를 보관하세요.")
    started = datetime.fromisoformat(result.started).timestamp() if result.started else 0.0
    late = predictions.made_before(guess, started, "The kept devices result",
                                   ko="보관된 장치 벤치마크 결과")
    if late:
        return late
    measured = gains(result)
    if set(measured) != {"disk", "nic"}:
        return hint("The kept devices result lacks the disk or the NIC: run the benchmark again.",
                    ko="보관된 장치 벤치마크 결과에 디스크나 NIC가 빠져 있습니다: 벤치마크를 다시 "
                       "실행하세요.")
    accelerator = str(result.machine.get("accelerator", "?")).upper()
    rows = [f"{kind} x{measured[kind]:.2f} (you: x{said:g})"
            for kind, said in zip(("disk", "nic"), numbers)]
    return passed(predictions.beside(guess, f"virtio's gain on {accelerator}: {'; '.join(rows)}")
                  + " Each gap follows how many register accesses one unit of work costs the "
                  "emulated device - and, from run to run, how noisy a shared machine is.",
                  ko=predictions.beside(
                      guess, f"{accelerator}에서 virtio의 이득: {'; '.join(rows)}", "ko")
                     + " 각 차이는 에뮬레이션 장치가 작업 한 단위마다 레지스터 접근을 몇 번 "
                       "하는지를 따라갑니다 - 그리고 실행할 때마다, 공유 머신이 얼마나 "
                       "시끄러운지도 따라갑니다.")


def reset() -> list[str]:
    """What notebook 12's exercises leave besides the exercise directory, removed (``reset 12``)."""
    from labsupport.vm import qemu

    pids = held_microvms()
    scratch = [qemu.scratch_of(pid) for pid in pids]  # read while QEMU still runs
    done = [f"stopped QEMU PID {p}" for p in ownership.kill_processes(pids)]
    return done + [f"removed {s}" for s in chroot.remove_scratch(*[s for s in scratch if s])]
