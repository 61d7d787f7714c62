"""Notebook 08 (cgroups): checks that read the learner's groups from the kernel and test their effect.

The learner makes lab groups by name (``ex1``, ``ex1b``, ``ex2``, ``ex3``). Each check
finds the group in the real cgroup trees, reads its files, and proves what they do by
their effect: two burners share one core by the learner's weights, a parent moved into a
group leaves its older child behind, a device-limited group cannot open /dev/null. The
same checks hold on cgroup v1, v2 and hybrid hosts. Exercises 1 and 2 show the learner's
prediction beside the measurement.
"""
from __future__ import annotations

from labsupport.cgroups import api, workloads
from labsupport.cgroups.experiments import try_open
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.kernel.errors import LabError
from labsupport.kernel.hoststate import processes

#: The group each exercise looks for (tests point these at scratch names); "1b" is exercise 1's
#: second group.
GROUPS: dict[int | str, str] = {1: "ex1", "1b": "ex1b", 2: "ex2", 3: "ex3"}

#: How long exercise 1's check burns the shared core.
SPLIT_SECONDS = 2.0


def _group(number: int | str) -> api.CGroup | Verdict:
    name = GROUPS[number]
    try:
        return api.open_group(name)
    except LabError:
        return hint(f"There is no lab group named {name!r} yet: a lab group lives at "
                    f"<cgroup tree>/lab/{name}, and the lab's cgroups module makes one by name.",
                    ko=f"아직 {name!r}(이)라는 랩 그룹이 없습니다: 랩 그룹은 <cgroup "
                       f"트리>/lab/{name}에 있고, 랩의 cgroups 모듈이 이름으로 만들어 줍니다.")


@exercise("08", 1, "Predict the split of one core between weights 1:4, then measure it")
def weighted_split() -> Verdict:
    guess = predictions.required("08", 1, "for the share of one busy core each group gets",
                                 ko="두 그룹이 바쁜 코어 하나를 각각 얼마만큼 나눠 받는지")
    if isinstance(guess, Verdict):
        return guess
    light, heavy = _group(1), _group("1b")
    for group in (light, heavy):
        if isinstance(group, Verdict):
            return group
        if "cpu" not in group.homes:
            return hint(f"The group {group.name!r} has no directory in the cpu controller's tree: "
                        "a weight lives there.",
                        ko=f"그룹 {group.name!r}에는 cpu 컨트롤러 트리 안에 디렉터리가 없습니다: "
                           "weight는 그곳에 있습니다.")
    weights = {g.name: _cpu_weight(g) for g in (light, heavy)}
    ratio = weights[heavy.name] / max(weights[light.name], 1)
    if abs(ratio - 4) > 0.2:
        return hint(f"The kernel's files give {heavy.name!r} {ratio:.2f} times the weight of "
                    f"{light.name!r} ({weights[heavy.name]} vs {weights[light.name]}): the "
                    "exercise asks for 4 times.",
                    ko=f"커널 파일을 보면 {heavy.name!r}의 weight가 {light.name!r}의 "
                       f"{ratio:.2f}배입니다({weights[heavy.name]} 대 {weights[light.name]}): "
                       "연습은 4배를 요구합니다.")
    got = _burn_side_by_side(light, heavy, SPLIT_SECONDS)
    total = sum(got.values()) or 1e-9
    share = got[heavy.name] / total
    if min(got.values()) <= 0:
        return hint(f"A burner got no CPU time at all in {SPLIT_SECONDS:.0f} s: does a group have a "
                    "quota of (almost) nothing? Check again.",
                    ko=f"{SPLIT_SECONDS:.0f}초 동안 CPU 시간을 전혀 받지 못한 버너가 있습니다: 어떤 "
                       "그룹의 할당량(quota)이 (거의) 0인가요? 다시 확인하세요.")
    return passed(predictions.beside(
        guess, f"{heavy.name!r} got {share:.0%} and {light.name!r} {1 - share:.0%} of what the two "
        f"got of core {workloads.quiet_core()} ({got[heavy.name] / max(got[light.name], 1e-9):.2f}x,"
        f" {total / SPLIT_SECONDS:.0%} of the core in all), each burning flat out") + " A weight "
        "only divides a core that is busy; alone, either group would get all of it.",
                  ko=predictions.beside(
                      guess, f"두 그룹이 쉬지 않고 CPU를 태우는 동안 코어 {workloads.quiet_core()}에서 "
                      f"받은 시간 중 {heavy.name!r}이(가) {share:.0%}, {light.name!r}이(가) "
                      f"{1 - share:.0%} ({got[heavy.name] / max(got[light.name], 1e-9):.2f}배, "
                      f"합쳐서 코어의 {total / SPLIT_SECONDS:.0%})", "ko")
                     + " weight는 바쁜 코어를 나눌 때만 의미가 있습니다. 혼자라면 어느 그룹이든 "
                       "코어 전부를 받습니다.")


def _cpu_weight(group: api.CGroup) -> int:
    """The group's weight as the kernel holds it: v1's cpu.shares or v2's cpu.weight."""
    for directory in group.directories:
        for name in ("cpu.shares", "cpu.weight"):
            if (directory / name).is_file():
                return int((directory / name).read_text())
    raise LabError(f"The group {group.name!r} has no weight file.")


def _burn_side_by_side(first: api.CGroup, second: api.CGroup, seconds: float) -> dict[str, float]:
    """A burner in each group, both pinned to one core; the CPU seconds each group got."""
    core = workloads.quiet_core()
    before = {g.name: g.usage().cpu_seconds or 0.0 for g in (first, second)}
    burners = [g.start_function(workloads.burn_cpu, seconds, core) for g in (first, second)]
    for child in burners:
        child.wait(timeout=seconds + 10)
    return {g.name: (g.usage().cpu_seconds or 0.0) - before[g.name] for g in (first, second)}


@exercise("08", 2, "A parent in the group, its older child outside: predict, then show it")
def old_child_stays() -> Verdict:
    guess = predictions.required("08", 2, "for where a process's existing child is after the "
                                 "process is moved into a group",
                                 ko="프로세스를 그룹으로 옮긴 뒤, 그 프로세스에게 이미 있던 자식은 "
                                    "어디에 있는지")
    if isinstance(guess, Verdict):
        return guess
    group = _group(2)
    if isinstance(group, Verdict):
        return group
    inside = set(group.running())
    if not inside:
        return hint(f"{group.name!r} holds no running process: move one in that already has a "
                    "child of its own (a shell that started something in the background).",
                    ko=f"{group.name!r}에 실행 중인 프로세스가 없습니다: 이미 자기 자식이 있는 "
                       "프로세스(백그라운드로 무언가를 시작한 셸)를 옮겨 넣으세요.")
    table = processes()
    for pid in sorted(inside):
        children = [c for c, proc in table.items() if proc.ppid == pid]
        outside = [c for c in children if c not in inside]
        if outside:
            return passed(predictions.beside(
                guess, f"PID {pid} is in {group.name!r}, its child PID {outside[0]} is not - the "
                f"child was forked before the move and stayed where it was") + " Writing a PID to "
                "cgroup.procs moves one process; only what it forks afterwards starts in the group.",
                          ko=predictions.beside(
                              guess, f"PID {pid}는 {group.name!r}에 있고, 그 자식 PID "
                                     f"{outside[0]}는 없습니다 - 자식은 옮기기 전에 fork되었고 원래 "
                                     "자리에 그대로 있습니다", "ko")
                             + " cgroup.procs에 PID를 쓰면 프로세스 하나만 옮겨집니다. 그 뒤에 "
                               "fork하는 것만 그룹 안에서 시작합니다.")
    return hint(f"Every process in {group.name!r} either has no child or has all its children in "
                "the group. Start the parent and its child first, then move only the parent.",
                ko=f"{group.name!r}의 모든 프로세스가 자식이 없거나, 자식이 모두 그룹 안에 "
                   "있습니다. 부모와 자식을 먼저 시작하고, 그다음에 부모만 옮기세요.")


@exercise("08", 3, "A group that may not open /dev/null, but may open /dev/zero")
def device_denied_group() -> Verdict:
    group = _group(3)
    if isinstance(group, Verdict):
        return group
    if "devices" not in group.homes:
        return hint(f"{group.name!r} has no device control: on v1 that is the devices tree; on "
                    "v2 an eBPF program attached to the group's directory.",
                    ko=f"{group.name!r}에는 장치 제어가 없습니다: v1에서는 devices 트리, v2에서는 "
                       "그룹 디렉터리에 붙인 eBPF 프로그램입니다.")
    seen = group.run_function(try_open, ["/dev/null", "/dev/zero"], timeout=15)
    if seen["/dev/null"] == "ok":
        return hint(f"A process inside {group.name!r} opened /dev/null. The kernel checks a device's "
                    "type and numbers (ls -l shows them, e.g. 'c 1, 3'), not its path.",
                    ko=f"{group.name!r} 안의 프로세스가 /dev/null을 열었습니다. 커널은 장치의 "
                       "경로가 아니라 종류와 번호(ls -l에 'c 1, 3'처럼 나옵니다)를 확인합니다.")
    if seen["/dev/zero"] != "ok":
        return hint(f"/dev/null is refused ({seen['/dev/null']}), but so is /dev/zero "
                    f"({seen['/dev/zero']}): the rule is wider than one device.",
                    ko=f"/dev/null은 거부되지만({seen['/dev/null']}), /dev/zero도 "
                       f"거부됩니다({seen['/dev/zero']}): 규칙이 장치 하나보다 넓습니다.")
    how = ("the devices files" if group.homes["devices"] == "v1"
           else "the eBPF program attached to it")
    return passed(f"Inside {group.name!r}, open('/dev/null') fails with {seen['/dev/null']} while "
                  f"/dev/zero opens: {how} decided, by device numbers. Docker's default device "
                  "list works the same way, as an allow-list.",
                  ko=f"{group.name!r} 안에서 open('/dev/null')은 {seen['/dev/null']}(으)로 실패하고 "
                     f"/dev/zero는 열립니다: {how}이(가) 장치 번호로 결정했습니다. Docker의 기본 "
                     "장치 목록도 같은 방식, 즉 허용 목록(allow-list)으로 동작합니다.")


def _children_left_outside() -> list[int]:
    """Exercise 2's older children: lab processes whose parent is in the group, they not."""
    try:
        group = api.open_group(GROUPS[2])
    except LabError:
        return []
    inside = set(group.processes())
    return [pid for pid, proc in processes().items() if proc.ppid in inside and pid not in inside]


def reset() -> list[str]:
    """What notebook 08's exercises leave besides the exercise directory, removed (``reset 08``)."""
    from labsupport import ownership
    from labsupport.cgroups import experiments

    done = [f"stopped PID {p}" for p in ownership.kill_processes(_children_left_outside())]
    rows = experiments.clean_up(names=list(GROUPS.values())).rows
    return done + [f"{what}: {removed}" for what, removed in rows if removed != "none"]
