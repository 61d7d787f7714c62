"""Notebook 01 (chroot): checks that run the learner's own root for real.

The learner builds ``/var/lib/labsupport/exercises/01/myroot``. Each check
enters it with the same runner the notebook uses and reads what really
happens - a program that starts or not, what ``ls`` prints, a process the
host can see - so a hint can name the idea that is missing. Exercise 4 runs notebook 01's
escape in a scratch root twice, with and without CAP_SYS_CHROOT, beside the learner's
prediction.
"""
from __future__ import annotations

import os
from pathlib import Path

from labsupport import ownership
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, stopped
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.hoststate import processes
from labsupport.namespaces import chroot
from labsupport.process import DEFAULT_PATH, CommandResult, run_command, run_function

ROOT_NAME = "myroot"
TIMEOUT = 10
#: The capability chroot(2) asks for (capability.h).
CAP_SYS_CHROOT = 18


def my_root() -> Path:
    """The root the learner builds for these exercises."""
    return exercise_dir("01", create=False) / ROOT_NAME


def _program_inside(root: Path, name: str) -> Path | None:
    """Where a shell inside ``root`` would find ``name`` on the PATH, seen from the host."""
    for directory in DEFAULT_PATH.split(":"):
        candidate = root / directory.lstrip("/") / name
        if os.path.lexists(candidate):
            return candidate
    return None


def _root_problem(root: Path) -> Verdict | None:
    """A hint when there is no usable root directory yet."""
    if not root.is_dir():
        return hint(f"There is no directory {root} yet: your root starts as an empty directory there.",
                    ko=f"아직 {root} 디렉터리가 없습니다: 나만의 루트는 그 자리의 빈 디렉터리에서 "
                       "시작합니다.")
    if root.resolve() == Path("/"):
        return hint(f"{root} leads to the host's own /: a root of your own is a separate directory tree.",
                    ko=f"{root}은(는) 호스트의 / 자체를 가리킵니다: 나만의 루트는 따로 떨어진 "
                       "디렉터리 트리여야 합니다.")
    return None


def _run_inside(root: Path, argv: list[str]) -> CommandResult | Verdict:
    """Run ``argv`` chrooted into ``root``, or explain in a hint why it could not start."""
    try:
        return run_command(argv, root=root, timeout=TIMEOUT)
    except LabError as err:
        if "Cannot run" not in str(err):
            return stopped(err)
        program = _program_inside(root, argv[0])
        if program is None:
            return hint(f"There is no {argv[0]} where a process inside your root looks for programs "
                        f"(the PATH directories, such as /usr/bin, inside {root}).",
                        ko=f"루트 안의 프로세스가 프로그램을 찾는 곳({root} 안의 PATH 디렉터리, "
                           f"예를 들어 /usr/bin)에 {argv[0]}이(가) 없습니다.")
        return hint(f"Your root has {argv[0]} at /{program.relative_to(root)}, but the kernel cannot "
                    "start it ('No such file or directory' for a file that exists): a dynamically "
                    "linked program names a loader that must be inside the root too. Which files "
                    "does it load? ldd on the host lists them.",
                    ko=f"루트 안 /{program.relative_to(root)}에 {argv[0]}이(가) 있는데도 커널이 "
                       "실행하지 못합니다(파일이 있는데 'No such file or directory'). 동적 링크된 "
                       "프로그램은 로더를 지정하고, 그 로더도 루트 안에 있어야 합니다. 이 "
                       "프로그램은 어떤 파일들을 불러올까요? 호스트에서 ldd로 확인할 수 있습니다.")


def _library_hint(result: CommandResult, program: str) -> Verdict | None:
    if "error while loading shared libraries" in result.stderr:
        missing = result.stderr.split("libraries:", 1)[1].split(":")[0].strip()
        return hint(f"{program} starts but stops at once: it cannot find the shared library "
                    f"{missing} inside your root. ldd on the host lists every library a program "
                    "loads, and where.",
                    ko=f"{program}이(가) 시작하자마자 멈춥니다: 루트 안에서 공유 라이브러리 "
                       f"{missing}을(를) 찾지 못합니다. 호스트에서 ldd를 쓰면 프로그램이 불러오는 "
                       "라이브러리와 그 위치가 모두 나옵니다.")
    return None


@exercise("01", 1, "A root of your own where ls / runs")
def ls_runs_in_my_root() -> Verdict:
    root = my_root()
    problem = _root_problem(root)
    if problem:
        return problem
    result = _run_inside(root, ["ls", "/"])
    if isinstance(result, Verdict):
        return result
    if not result.ok:
        return _library_hint(result, "ls") or hint(
            f"ls / ran inside your root but failed (exit {result.returncode}): "
            f"{result.stderr.strip()[:200]}",
            ko=f"ls /는 루트 안에서 실행됐지만 실패했습니다(종료 코드 {result.returncode}): "
               f"{result.stderr.strip()[:200]}")
    listed = sorted(result.stdout.split())
    expected = sorted(n for n in os.listdir(root) if not n.startswith("."))
    if listed != expected:
        return hint(f"ls / printed {listed}, not what your root holds ({expected}).",
                    ko=f"ls /가 {listed}을(를) 출력했습니다. 루트에 들어 있는 것({expected})과 "
                       "다릅니다.")
    return passed(f"ls / inside your root lists {', '.join(listed)}: your tree, not the host's /. "
                  "The same program file now finds its libraries at the same paths inside.",
                  ko=f"루트 안의 ls /가 {', '.join(listed)}을(를) 보여 줍니다: 호스트의 /가 아니라 "
                     "내가 만든 트리입니다. 같은 프로그램 파일이 이제 루트 안의 같은 경로에서 "
                     "라이브러리를 찾습니다.")


def _owner_columns(listing: str) -> list[tuple[str, str]]:
    """(owner, group) of each entry of an ``ls -l`` listing."""
    columns = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not line.startswith("total"):
            columns.append((fields[2], fields[3]))
    return columns


@exercise("01", 2, "Names for the numbers: who owns the files inside")
def owners_have_names() -> Verdict:
    root = my_root()
    problem = _root_problem(root)
    if problem:
        return problem
    result = _run_inside(root, ["ls", "-l", "/"])
    if isinstance(result, Verdict):
        return result
    if not result.ok:
        return _library_hint(result, "ls") or hint("Do exercise 1 first: ls has to run in your root.",
                                                   ko="연습 1부터 하세요: ls가 루트 안에서 "
                                                      "실행되어야 합니다.")
    columns = _owner_columns(result.stdout)
    if not columns:
        return hint("ls -l / shows no entries: put something into your root first (exercise 1).",
                    ko="ls -l /에 아무 항목도 없습니다: 먼저 루트에 무언가를 넣으세요(연습 1).")
    if any(owner.isdigit() for owner, _ in columns):
        return hint("ls -l / inside your root prints a number where it could print a user name. "
                    "ls asks the C library to turn a uid into a name, and it reads a plain text "
                    "file inside the root the process sees. Which file maps user names to uids?",
                    ko="루트 안의 ls -l /가 사용자 이름 대신 숫자를 출력합니다. ls는 C "
                       "라이브러리에게 uid를 이름으로 바꿔 달라고 하고, C 라이브러리는 프로세스가 "
                       "보는 루트 안의 평범한 텍스트 파일을 읽습니다. 사용자 이름과 uid를 짝지어 "
                       "주는 파일은 무엇일까요?")
    if any(group.isdigit() for _, group in columns):
        return hint("The owners have names now; the group column still shows numbers: groups "
                    "have a table of their own.",
                    ko="이제 소유자에는 이름이 나오는데, 그룹 칸은 아직 숫자입니다: 그룹에는 "
                       "그룹만의 표가 따로 있습니다.")
    owners = sorted({owner for owner, _ in columns})
    return passed(f"ls -l / shows {', '.join(owners)} as owner. The name came from your root's "
                  "files, but the number behind it is the host's uid 0 - the same all-powerful "
                  "root: chroot does not isolate users (사용자).",
                  ko=f"ls -l /가 소유자로 {', '.join(owners)}을(를) 보여 줍니다. 이름은 루트 안의 "
                     "파일에서 왔지만, 그 뒤의 숫자는 호스트의 uid 0, 즉 모든 권한을 가진 바로 그 "
                     "root입니다: chroot는 사용자를 격리하지 않습니다.")


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


@exercise("01", 3, "Find your chrooted program from the host")
def chrooted_program_seen_from_host() -> Verdict:
    root = my_root()
    problem = _root_problem(root)
    if problem:
        return problem
    target = str(root.resolve())
    forked_only = None
    for pid, proc in sorted(processes().items()):
        if _link(f"/proc/{pid}/root") != target:
            continue
        exe = _link(f"/proc/{pid}/exe") or ""
        if exe.startswith(target + "/"):
            return passed(f"The host lists PID {pid} ({proc.name}) like any other process; "
                          f"/proc/{pid}/root -> {target} and /proc/{pid}/exe -> {exe}. "
                          "A chrooted process is an ordinary host process: the host sees it, "
                          "and could signal it. Stop it now that you have seen it.",
                          ko=f"호스트는 PID {pid}({proc.name})를 다른 프로세스와 똑같이 보여 "
                             f"줍니다. /proc/{pid}/root -> {target}, /proc/{pid}/exe -> {exe}. "
                             "chroot된 프로세스도 평범한 호스트 프로세스입니다: 호스트가 볼 수 "
                             "있고, 시그널도 보낼 수 있습니다. 확인했으니 이제 멈추세요.")
        forked_only = (pid, exe)
    if forked_only:
        pid, exe = forked_only
        return hint(f"PID {pid} has its root in your root, but runs {exe}, a program from outside "
                    "it (a forked copy of Python). Start a program that lives inside your root.",
                    ko=f"PID {pid}의 루트는 내 루트 안에 있지만, 실행 중인 프로그램은 루트 바깥의 "
                       f"{exe}입니다(fork된 Python 복사본). 루트 안에 있는 프로그램을 실행하세요.")
    return hint(f"No process on this host has its root in {target} right now. Start a program "
                "from your root that keeps running, in the background, and check while it runs: "
                "the host finds it through /proc/PID/root.",
                ko=f"지금 이 호스트에는 루트가 {target}인 프로세스가 하나도 없습니다. 루트 안의 "
                   "프로그램을 백그라운드에서 계속 돌게 실행하고, 도는 동안 확인하세요: 호스트는 "
                   "/proc/PID/root로 그 프로세스를 찾습니다.")


#: Who tried the escape, in Korean, for the check's Korean message.
_WHO_KO = {"root with its capabilities": "capability를 모두 가진 root",
           "root without CAP_SYS_CHROOT": "CAP_SYS_CHROOT가 없는 root"}


def _outcome_ko(outcome: str) -> str:
    """One of ``_escape_with``'s answers, in Korean."""
    if outcome.startswith("stopped: "):
        return f"chroot()에서 멈춤({outcome.removeprefix('stopped: ').removesuffix(' at chroot()')})"
    return "탈출: 호스트의 표식 파일을 읽음" if outcome.startswith("escaped") else "안에 머묾"


def _escape_with(capabilities: int | None, marker: str) -> str:
    """Inside a chroot: keep only ``capabilities`` (None: leave them alone), then the classic
    escape."""
    if capabilities is not None:
        syscalls.capset(capabilities, capabilities, 0)
    try:
        _, text = chroot.classic_escape(marker)
    except PermissionError as err:
        return f"stopped: {err.strerror} at chroot()"
    return "escaped: it read the host's marker file" if text else "stayed inside"


@exercise("01", 4, "Predict whether the escape works without one capability, then try both")
def escape_needs_a_capability() -> Verdict:
    guess = predictions.required("01", 4, "for whether the classic chroot escape still works for "
                                 "a root that lacks CAP_SYS_CHROOT",
                                 ko="CAP_SYS_CHROOT가 없는 root에서도 고전적인 chroot 탈출이 "
                                    "통하는지")
    if isinstance(guess, Verdict):
        return guess
    own = int(next(line for line in open("/proc/self/status")
                    if line.startswith("CapEff")).split()[1], 16)  # inside there is no /proc
    marker = chroot.write_host_marker()
    jail = ownership.temp_dir("ex01jail")
    try:
        (jail / chroot.HATCH).mkdir()
        seen = {label: run_function(_escape_with, capabilities, str(marker), root=jail, timeout=10)
                for label, capabilities in (("root with its capabilities", None),
                                            ("root without CAP_SYS_CHROOT",
                                             own & ~(1 << CAP_SYS_CHROOT)))}
    finally:
        chroot.remove_scratch(marker.parent, jail)
    story = "; ".join(f"{who}: {what}" for who, what in seen.items())
    story_ko = "; ".join(f"{_WHO_KO[who]}: {_outcome_ko(what)}" for who, what in seen.items())
    return passed(predictions.beside(guess, story) + " The escape is built of chroot() calls, and "
                  "chroot() asks for CAP_SYS_CHROOT: take that one bit away and the climb never "
                  "starts. Docker keeps the capability by default - pivot_root is what makes it "
                  "harmless there.",
                  ko=predictions.beside(
                      guess, story_ko, "ko")
                     + " 탈출은 chroot() 호출로 이루어지고, chroot()는 CAP_SYS_CHROOT를 "
                       "요구합니다: 그 비트 하나만 빼면 탈출은 시작조차 못 합니다. Docker는 "
                       "기본으로 이 capability를 남겨 두는데, 거기서 이 탈출을 무력하게 만드는 "
                       "것은 pivot_root입니다.")


def reset() -> list[str]:
    """What notebook 01's exercises leave besides the exercise directory, removed (``reset 01``)."""
    return [f"stopped PID {p}" for p in chroot.stop_processes_rooted_in(my_root())]
