"""Notebook 00 (welcome): two light checks that ask the real host.

Exercise 1 shows the learner's prediction beside what a box made without its own /proc
really sees; exercise 2 compares a one-line answer in /var/lib/labsupport/exercises/00/
with what the kernel says inside a box.
"""
from __future__ import annotations

from pathlib import Path

from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.process import run_command


def _answer(name: str) -> tuple[Path, str | None]:
    """The learner's answer file and its first line (None when the file is missing)."""
    path = exercise_dir("00", create=False) / name
    try:
        lines = path.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError):
        return path, None
    return path, (lines[0].strip() if lines else "")


def _count_processes(listing: str) -> int:
    return sum(1 for name in listing.split() if name.isdigit())


@exercise("00", 1, "Predict what a box without its own /proc sees, then look")
def box_without_its_own_proc() -> Verdict:
    guess = predictions.required("00", 1, "for the PID a box's shell gets and how many processes "
                                 "its `ls /proc` lists, when the box is made without mount_proc",
                                 ko="`mount_proc` 없이 만든 박스에서 셸이 받는 PID와 그 박스의 `ls "
                                    "/proc`에 보이는 프로세스 수")
    if isinstance(guess, Verdict):
        return guess
    box = dict(namespaces=["uts", "pid", "mnt"], hostname="labcheck")
    pid = run_command(["sh", "-c", "echo $$"], **box).stdout.strip()
    seen = _count_processes(run_command(["ls", "/proc"], **box).stdout)
    host = _count_processes(run_command(["ls", "/proc"]).stdout)
    own = _count_processes(run_command(["ls", "/proc"], mount_proc=True, **box).stdout)
    return passed(predictions.beside(
        guess, f"the shell is PID {pid}, yet `ls /proc` lists {seen} processes - the host lists "
        f"{host}, a box with its own /proc {own}") + " /proc shows the processes of the PID "
        "namespace it was mounted from: a box that keeps the host's /proc reads the host's "
        "process table. A runtime mounts a fresh /proc inside every container for that reason.",
                  ko=predictions.beside(
                      guess, f"셸은 PID {pid}인데 `ls /proc`에는 프로세스가 {seen}개 보입니다 - "
                             f"호스트에서는 {host}개, 자기 /proc이 있는 박스에서는 {own}개", "ko")
                     + " /proc은 자기가 마운트된 PID 네임스페이스의 프로세스를 보여 줍니다. "
                       "호스트의 /proc을 그대로 쓰는 박스는 호스트의 프로세스 테이블을 읽게 "
                       "됩니다. 그래서 런타임은 컨테이너마다 새 /proc을 마운트합니다.")


@exercise("00", 2, "Which kernel runs inside a box?")
def kernel_inside_a_box() -> Verdict:
    path, answer = _answer("kernel-inside.txt")
    if answer is None:
        return hint(f"Write what `uname -r` printed inside a box into {path}.",
                    ko=f"박스 안에서 `uname -r`이 출력한 값을 {path}에 적으세요.")
    inside = run_command(["uname", "-r"], namespaces=["uts", "pid", "mnt"],
                         hostname="labcheck").stdout.strip()
    if answer == inside:
        return passed(f"Yes: {inside}, the host's own kernel. A container has no kernel and no "
                      "guest OS (게스트OS) of its own - there is no virtualization layer "
                      "(가상화 계층) between it and the host.",
                      ko=f"맞습니다: {inside}, 호스트의 커널 그대로입니다. 컨테이너에는 자기만의 "
                         "커널도 게스트OS도 없습니다 - 컨테이너와 호스트 사이에는 가상화 계층이 "
                         "없습니다.")
    return hint(f"{answer!r} is not what `uname -r` prints inside a box on this host. Run it in a "
                "box (the keyword arguments of Try it) and copy its answer exactly.",
                ko=f"{answer!r}은(는) 이 호스트의 박스 안에서 `uname -r`이 출력하는 값이 아닙니다. "
                   "박스 안에서 직접 실행해 보고(Try it의 키워드 인자), 나온 값을 그대로 옮겨 "
                   "적으세요.")


def reset() -> list[str]:
    """What notebook 00's exercises leave besides the exercise directory, removed (``reset 00``)."""
    return []
