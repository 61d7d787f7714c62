"""Notebook B (build your own container): checks that run the learner's own runtime for real.

The learner writes ``mycontainer.py`` in /var/lib/labsupport/exercises/B, level by level. Each
check starts it as root - ``python mycontainer.py NAME ROOT COMMAND...`` on a fresh busybox root
of the lab's - finds the command's process among the runtime's descendants and reads the host's
view of it: /proc/PID/ns/*, /proc/PID/mountinfo, /proc/PID/status, /proc/PID/cgroup and the
cgroup files, the links in its network namespace. Then it ends the container and looks at what
the runtime left behind. Everything a run makes is the lab's (the runtime carries the lab's
marker, its groups live under the lab's parent group, its names start with ``lab``), and a run
removes whatever the learner's code forgot, so ``reset B`` and ``clean`` find nothing new.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import os
import shutil
import signal
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from labsupport import cgroups, net, ownership, process
from labsupport.container import hardening, spec
from labsupport.course.exercises import Verdict, exercise, hint, passed, workdir
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.namespaces import chroot, rootfs
from labsupport.net import run as netrun

NOTEBOOK = "B"
RUNTIME = "mycontainer.py"
SKELETON = Path(__file__).with_name("skeletons") / "mycontainer.py.txt"
#: The container's name the checks give: its hostname, its group's and its network's stem.
NAME = "mybox"
#: A command that waits, so the host can look at it, and is easy to find by its arguments.
WAIT = ["sleep", "7531"]
BRIDGE = "labbuild0"
SUBNET = ipaddress.ip_network("10.204.0.0/24")
#: The namespaces the checks start the learner's runtime in, so its mistakes stay in copies.
SAFETY_NET = ("mnt", "uts")
#: How long a runtime may take to start its command, and to end after it.
START_TIMEOUT = 30.0
#: Docker's default capabilities: root inside a container may keep these, and no more.
ALLOWED_CAPS = hardening.capability_mask(spec.DEFAULT_CAPABILITIES)
_REPO = Path(__file__).resolve().parents[3]


def runtime_file() -> Path:
    """The learner's runtime (the track is lettered, so its directory is called B)."""
    return workdir.EXERCISES_DIR / NOTEBOOK / RUNTIME


def start_file(overwrite: bool = False) -> Path:
    """Write the skeleton to the learner's file - never over their work unless asked."""
    target = runtime_file()
    if overwrite or not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SKELETON, target)
    return target


def my_changes() -> str:
    """What you added to the skeleton so far, as a diff: each level's lesson is its lines."""
    if not runtime_file().is_file():
        return f"There is no {runtime_file()} yet: run the cell that writes the skeleton."
    diff = difflib.unified_diff(SKELETON.read_text().splitlines(), runtime_file().read_text().splitlines(),
                                "skeleton", RUNTIME, lineterm="", n=1)
    return "\n".join(diff) or "Nothing yet: your file is the skeleton."


def clean_up() -> Table:
    """The notebook's clean-up cell: what a run can leave (normally nothing), and the bridge.
    Your runtime file stays, so a restarted kernel does not lose your work."""
    done = reset()
    return Table(["what", "result"], [("left by runs of your runtime", "\n".join(done) or "nothing"),
                                      ("your runtime", f"kept: {runtime_file()}")])


# -- one run of the learner's runtime --------------------------------------------------

@dataclass
class Run:
    """One start of the learner's runtime, and what the host saw of it."""

    runtime: process.Child
    root: Path
    pid: Optional[int] = None           # the command's process, as the host numbers it
    exit_code: Optional[int] = None     # the runtime's, once it ended
    left_behind: list[str] = field(default_factory=list)
    host_changed: list[str] = field(default_factory=list)

    def said(self) -> str:
        """The last line the runtime wrote to stderr: its own error message, if it failed."""
        lines = [line for line in self.runtime.stderr.splitlines() if line.strip()]
        return lines[-1].strip()[:300] if lines else ""


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def _find_command(runtime: int, argv: list[str]) -> Optional[int]:
    """The process below (or at) the runtime that runs ``argv`` - once it has exec'd."""
    table = hoststate.processes()
    for pid in sorted({runtime} | hoststate.descendants(runtime, table)):
        if _cmdline(pid) == argv:
            return pid
    return None


def _own_netns() -> list[str]:
    """The lab's named network namespaces a run of NAME makes (``net.create_namespace(NAME)``)."""
    return [n for n in ownership.lab_netns() if n.startswith(f"{ownership.PREFIX}{NAME}")]


def _group_dirs() -> list[Path]:
    return [d for d in (m / ownership.PREFIX / NAME for m in hoststate.cgroup_mounts()) if d.is_dir()]


def _sweep() -> list[str]:
    """Remove what a run of NAME may leave: its group, its network namespaces (with their veths)."""
    done = []
    try:
        if _group_dirs():
            cgroups.open_group(NAME).remove()
            done.append(f"removed cgroup lab/{NAME}")
        mounted = {m.mountpoint for m in hoststate.mounts()}
        for name in _own_netns():
            path = ownership.NETNS_DIR / name
            if str(path) in mounted:
                netrun.remove_namespace(name)
            else:  # pinned in the safety net's mount namespace: gone with it, but for its file
                path.unlink(missing_ok=True)
                ownership.forget_made("netns", name)
            done.append(f"removed network namespace {name}")
    except LabError as err:  # gone meanwhile (a `clean` in another terminal): nothing left to do
        done.append(f"could not remove all: {err}")
    return done


def _bridge() -> bool:
    """The track's bridge, made if missing; True if this call made it."""
    if BRIDGE in hoststate.links():
        return False
    net.add_bridge(BRIDGE)
    return True


def _remove_bridge() -> None:
    if BRIDGE in hoststate.links():
        try:
            net.delete_link(BRIDGE)
        except LabError:
            pass  # a parallel run removed it first


def _undo_host_changes(hostname: str, mounts_before: set[int], root: Path) -> list[str]:
    """What the learner's code changed on the host itself, put back: its name, leaked mounts."""
    changed = []
    if socket.gethostname() != hostname:
        changed.append(f"the host's own hostname became {socket.gethostname()!r}")
        syscalls.sethostname(hostname)
    leaked = [m for m in hoststate.mounts() if m.mount_id not in mounts_before
              and ((m.mountpoint == "/proc" and m.fstype == "proc")
                   or m.mountpoint == str(root) or str(root) + "/" in m.mountpoint + "/")]
    for mount in sorted(leaked, key=lambda m: m.mount_id, reverse=True):
        changed.append(f"{mount.fstype} appeared on the host's {mount.mountpoint}")
        try:
            syscalls.umount(mount.mountpoint, syscalls.MNT_DETACH)
        except LabError:
            pass  # gone with the mount above it
    return changed


def _end(box: Run) -> None:
    """End the container, give the runtime time to clean up after it, then clean up ourselves."""
    if box.pid is not None:
        try:
            os.kill(box.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        box.exit_code = box.runtime.wait(timeout=START_TIMEOUT)
    except LabError:
        box.exit_code = None  # killed: it did not end when its container did
    box.left_behind = [f"cgroup lab/{NAME}"] * bool(_group_dirs()) + \
        [f"network namespace {n}" for n in _own_netns()]
    box.runtime.stop()


@contextmanager
def running(argv: list[str] | None = None, wait: bool = True) -> Iterator[Run]:
    """Start the learner's runtime on a fresh root; the command's process is found while it runs.

    ``wait=False`` lets the runtime run its command to the end instead (the exit code is then
    ``exit_code``). Afterwards the runtime's leftovers are noted and removed, and so is the root.
    """
    argv = list(argv or WAIT)
    _sweep()
    hostname = socket.gethostname()
    mounts_before = {m.mount_id for m in hoststate.mounts()}
    made_bridge = _bridge()
    root = rootfs.new_busybox_root("build")
    env = {"PYTHONPATH": str(_REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    # A safety net: a mount or hostname the learner's code makes in the runtime's own namespaces
    # (before the container has its own) lands in these copies, not in the machine's. Propagation
    # stays as the host has it, so what a shared mount would carry to the host still does.
    child = process.start([sys.executable, str(runtime_file()), NAME, str(root), *argv], env=env,
                          namespaces=SAFETY_NET, propagation="unchanged")
    box = Run(child, root)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while wait and time.monotonic() < deadline:
            box.pid = _find_command(child.pid, argv)
            if box.pid is not None or netrun.has_exited(child.pid):
                break
            time.sleep(0.02)
        if not wait:
            try:
                box.exit_code = child.wait(timeout=START_TIMEOUT)
            except LabError:
                box.exit_code = None
        yield box
    finally:
        _end(box)
        _sweep()
        chroot.stop_processes_rooted_in(root)
        box.host_changed = _undo_host_changes(hostname, mounts_before, root)
        if made_bridge:
            _remove_bridge()
        chroot.remove_scratch(root)


def try_it(argv: list[str]) -> process.CommandResult:
    """Run ``argv`` in a container of your runtime, to its end, on a fresh root: what it printed.

    The same run a check makes (the same name, root and clean-up), for trying a level out.
    """
    if not runtime_file().is_file():
        raise LabError(f"There is no {runtime_file()} yet: run the cell that writes the skeleton.")
    with running(list(argv), wait=False) as box:
        pass
    result = process.CommandResult(box.exit_code if box.exit_code is not None else -1,
                                   box.runtime.stdout, box.runtime.stderr, box.runtime.pid)
    if box.host_changed:
        result.stderr += f"(the check put back what your container changed on the host: " \
                         f"{'; '.join(box.host_changed)})\n"
    return result


def _cap_names(mask: str) -> str:
    names = hardening.capability_names(int(mask, 16))
    return f"{mask} ({len(names)} capabilities)" if len(names) > 3 else f"{mask} ({', '.join(names) or 'none'})"


def host_view(argv: list[str] | None = None) -> Table:
    """What the host reads about a container of your runtime while it runs, next to the host's
    own values - everything the checks look at, in one table."""
    argv = list(argv or WAIT)
    rows: list[tuple[str, str, str]] = []
    with running(argv) as box:
        pid = box.pid
        if pid is not None:
            parent = box.runtime.pid
            me = _status(parent)
            for kind in ("uts", "pid", "mnt", "net"):
                rows.append((f"/proc/PID/ns/{kind}", str(_ns(parent, kind)), str(_ns(pid, kind))))
            rows.append(("NSpid in /proc/PID/status", me.get("NSpid", ""), _status(pid).get("NSpid", "")))
            rows.append(("mounts in /proc/PID/mountinfo",
                         f"{len(hoststate.mounts(f'/proc/{parent}/mountinfo'))} mounts",
                         "\n".join(f"{m}" + (f" (the host's {m.root})" if m.root != "/" else "")
                                   for m in _mountinfo(pid))))
            rows.append(("lab cgroups in /proc/PID/cgroup", "-", "\n".join(_limits(pid)[0]) or "none"))
            rows.append(("CapEff", _cap_names(me["CapEff"]), _cap_names(_status(pid)["CapEff"])))
            rows.append(("CapBnd", _cap_names(me["CapBnd"]), _cap_names(_status(pid)["CapBnd"])))
            rows.append(("NoNewPrivs", me.get("NoNewPrivs", ""), _status(pid).get("NoNewPrivs", "")))
            if not _shares(box, "net"):
                rows.append(("IPv4 on links that are up", "-",
                             "\n".join(f"{link} {address}" for link, address in _addresses_inside(pid))
                             or "none"))
    if pid is None:
        rows.append(("(nothing ran)", "", _not_started(box, 1).message))
    return Table(["what the host reads", "your runtime (the parent)", f"your container ({' '.join(argv)})"],
                 rows, f"A container of {runtime_file().name}, seen from the host (the runtime runs "
                       "in copies of the host's mount and UTS namespaces: the checks' safety net)")


def _not_started(box: Run, level: int) -> Verdict:
    said = f" It said: {box.said()}" if box.said() else ""
    said_ko = f" 런타임의 출력: {box.said()}" if box.said() else ""
    first = "" if level == 1 else f"Level {level} looks at a running container, so level 1 comes first. "
    first_ko = "" if level == 1 else f"레벨 {level}은(는) 실행 중인 컨테이너를 살펴보므로 레벨 1이 먼저입니다. "
    if box.exit_code is None:
        return hint(f"{first}After {START_TIMEOUT:.0f} s no process of your runtime was running "
                    f"{' '.join(WAIT)}.{said}",
                    ko=f"{first_ko}{START_TIMEOUT:.0f}초가 지나도록 런타임의 어떤 프로세스도 "
                       f"{' '.join(WAIT)}을(를) 실행하고 있지 않았습니다.{said_ko}")
    return hint(f"{first}Your runtime ended (exit code {box.exit_code}) and {' '.join(WAIT)} never "
                f"ran in a process of its own.{said}",
                ko=f"{first_ko}런타임이 끝났는데(종료 코드 {box.exit_code}) {' '.join(WAIT)}은(는) "
                   f"한 번도 자기만의 프로세스에서 실행되지 않았습니다.{said_ko}")


def _outside_the_container(box: Run) -> Verdict | None:
    """What the learner's code did to its runtime's own namespaces - the host's, but for the
    safety net - instead of the container's."""
    runtime = box.runtime.pid
    if box.pid == runtime:
        return None  # no container apart from the runtime: level 1 says so
    mounted = [m for m in hoststate.mounts(f"/proc/{runtime}/mountinfo")
               if m.mountpoint == "/proc" and m.fstype == "proc"][1:] + \
        [m for m in hoststate.mounts(f"/proc/{runtime}/mountinfo")
         if m.mountpoint == str(box.root) or m.mountpoint.startswith(f"{box.root}/")]
    if mounted:
        return hint(f"Your code mounted {mounted[0].fstype} on {mounted[0].mountpoint} in the mount "
                    "namespace of the runtime - the host's, where the check did not put a copy "
                    "in between. What must the container have before it mounts anything?",
                    ko="내 코드가 런타임의 마운트 네임스페이스 - 검사가 중간에 복사본을 끼워 두지 "
                       f"않았다면 호스트의 것 - 에서 {mounted[0].mountpoint}에 "
                       f"{mounted[0].fstype}을(를) 마운트했습니다. 컨테이너가 무언가를 마운트하기 "
                       "전에 먼저 가져야 할 것은 무엇일까요?")
    named = process.run_function(socket.gethostname, enter=runtime, enter_namespaces=["uts"])
    if named != socket.gethostname():
        return hint(f"Your code renamed its runtime's UTS namespace to {named!r} - the host's, "
                    "where the check did not put a copy in between. What must the container have "
                    "before it sets a hostname?",
                    ko="내 코드가 런타임의 UTS 네임스페이스 - 검사가 중간에 복사본을 끼워 두지 "
                       f"않았다면 호스트의 것 - 의 이름을 {named!r}(으)로 바꿨습니다. 컨테이너가 "
                       "호스트 이름을 정하기 전에 먼저 가져야 할 것은 무엇일까요?")
    return None


def _observe(level: int, inspect: Callable[[Run], Verdict],
             after: Callable[[Run], Optional[Verdict]] | None = None) -> Verdict:
    """Run the learner's container, let ``inspect`` read the host's view while it runs, and then
    report what the run did to the host (always) and what it left (``after``)."""
    if not runtime_file().is_file():
        return hint(f"There is no {runtime_file()} yet: run the notebook's cell that writes the "
                    "skeleton, then fill in level 1.",
                    ko=f"아직 {runtime_file()}이(가) 없습니다: 노트북에서 뼈대를 써 주는 셀을 "
                       "실행한 다음, 레벨 1을 채우세요.")
    with running() as box:
        try:
            verdict = None if box.pid is None else _outside_the_container(box) or inspect(box)
        except OSError as err:  # it ended while the check read its /proc files
            verdict = hint(f"Your container ended while the check looked at it ({err}).",
                           ko=f"검사가 살펴보는 동안 컨테이너가 끝났습니다({err}).")
    if verdict is None:
        return _not_started(box, level)
    if box.host_changed:
        return hint(f"Your container changed the host itself: {'; '.join(box.host_changed)}. "
                    "The check put it back. What should have kept that change inside the container?",
                    ko=f"컨테이너가 호스트 자체를 바꿨습니다: {'; '.join(box.host_changed)}. 검사가 "
                       "원래대로 돌려놓았습니다. 무엇이 그 변경을 컨테이너 안에 가둬 뒀어야 "
                       "할까요?")
    if verdict.passed and after is not None:
        return after(box) or verdict
    return verdict


def _ns(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def _shares(box: Run, kind: str) -> bool:
    """Does the container share its runtime's namespace (the runtime's are the host's, but for
    the safety net's copies)?"""
    assert box.pid is not None
    return _ns(box.pid, kind) == _ns(box.runtime.pid, kind)


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _mountinfo(pid: int) -> list[hoststate.Mount]:
    return hoststate.mounts(f"/proc/{pid}/mountinfo")


# -- level 1: fork, exec, wait -----------------------------------------------------------

def _forked(box: Run) -> Verdict:
    if box.pid == box.runtime.pid:
        return hint("The command runs - but in the runtime's own process: it exec'd without forking, "
                    "so no parent is left to wait for the container and clean up after it.",
                    ko="명령은 실행됩니다 - 하지만 런타임 자신의 프로세스에서입니다: fork 없이 "
                       "exec했기 때문에, 컨테이너를 기다렸다가 뒷정리를 해 줄 부모가 남아 있지 "
                       "않습니다.")
    return passed()


def _exit_code_passed_on() -> Verdict | None:
    with running(["sh", "-c", "exit 7"], wait=False) as box:
        pass
    if box.exit_code != 7:
        said = f" It said: {box.said()}" if box.said() else ""
        said_ko = f" 런타임의 출력: {box.said()}" if box.said() else ""
        return hint(f"The command `sh -c 'exit 7'` ended with 7, yet your runtime ended with "
                    f"{box.exit_code}. A parent learns how its child ended from waitpid.{said}",
                    ko=f"명령 `sh -c 'exit 7'`은 7로 끝났는데, 런타임은 {box.exit_code}(으)로 "
                       "끝났습니다. 부모는 자식이 어떻게 끝났는지를 waitpid로 알게 "
                       f"됩니다.{said_ko}")
    return None


@exercise(NOTEBOOK, 1, "Level 1: fork, exec the command, wait for it")
def level_1() -> Verdict:
    verdict = _observe(1, _forked)
    if not verdict.passed:
        return verdict
    return _exit_code_passed_on() or passed(
        f"The host saw {' '.join(WAIT)} running in a child of your runtime, and `exit 7` inside "
        "came out as your runtime's exit code 7: fork, exec, wait.",
        ko=f"호스트는 런타임의 자식 프로세스에서 {' '.join(WAIT)}이(가) 실행되는 것을 보았고, 안의 "
           "`exit 7`은 런타임의 종료 코드 7로 나왔습니다: fork, exec, wait.")


# -- level 2: a hostname of its own -------------------------------------------------------

def _hostname_inside(pid: int) -> str:
    return process.run_function(socket.gethostname, enter=pid, enter_namespaces=["uts"])


def _own_hostname(box: Run) -> Verdict:
    assert box.pid is not None
    if _shares(box, "uts"):
        return hint("Your container shares the host's UTS namespace (the same /proc/PID/ns/uts "
                    "inode as the host): any hostname it sets would rename the host.",
                    ko="컨테이너가 호스트의 UTS 네임스페이스를 함께 씁니다(/proc/PID/ns/uts의 "
                       "inode가 호스트와 같습니다): 컨테이너가 호스트 이름을 정하면 호스트의 "
                       "이름이 바뀝니다.")
    inside = _hostname_inside(box.pid)
    if inside != NAME:
        return hint(f"Your container has a UTS namespace of its own, but its hostname is {inside!r}, "
                    f"not its name {NAME!r}: a new namespace starts as a copy of the old one.",
                    ko="컨테이너에 자기만의 UTS 네임스페이스가 있지만, 호스트 이름이 자기 이름 "
                       f"{NAME!r}이(가) 아니라 {inside!r}입니다: 새 네임스페이스는 원래 것의 "
                       "복사본으로 시작합니다.")
    return passed(f"/proc/{box.pid}/ns/uts differs from the host's, and inside it the hostname is "
                  f"{NAME!r} while the host kept {socket.gethostname()!r}.",
                  ko=f"/proc/{box.pid}/ns/uts가 호스트의 것과 다르고, 그 안의 호스트 이름은 "
                     f"{NAME!r}, 호스트는 {socket.gethostname()!r} 그대로입니다.")


@exercise(NOTEBOOK, 2, "Level 2: a hostname of its own (UTS namespace)")
def level_2() -> Verdict:
    return _observe(2, _own_hostname)


# -- level 3: PID 1, with its own /proc ---------------------------------------------------

def _pid_one(box: Run) -> Verdict:
    pid = box.pid
    assert pid is not None
    if _shares(box, "pid"):
        return hint("Your command is in the host's PID namespace. unshare(CLONE_NEWPID) does not "
                    "move its caller: which processes does it put into the new namespace?",
                    ko="명령이 호스트의 PID 네임스페이스에 있습니다. unshare(CLONE_NEWPID)는 "
                       "호출한 프로세스를 옮기지 않습니다: 그러면 어떤 프로세스가 새 "
                       "네임스페이스에 들어갈까요?")
    numbers = _status(pid).get("NSpid", "").split()
    if numbers[-1:] != ["1"]:
        return hint(f"Your command has a PID namespace of its own, but is PID {numbers[-1:]} in it, "
                    "not 1: the first process that enters a new PID namespace becomes its PID 1.",
                    ko="명령에 자기만의 PID 네임스페이스가 있지만, 그 안에서 PID가 1이 아니라 "
                       f"{numbers[-1:]}입니다: 새 PID 네임스페이스에 처음 들어가는 프로세스가 그 "
                       "네임스페이스의 PID 1이 됩니다.")
    if _shares(box, "mnt"):
        return hint("PID 1 is right. A /proc of its own needs a mount namespace of its own: mounted "
                    "in the host's, a new /proc would cover the host's.",
                    ko="PID 1은 맞습니다. 자기만의 /proc에는 자기만의 마운트 네임스페이스가 "
                       "필요합니다: 호스트의 마운트 네임스페이스에 마운트하면 새 /proc이 호스트의 "
                       "/proc을 덮어 버립니다.")
    procs = [m for m in _mountinfo(pid) if m.mountpoint == "/proc" and m.fstype == "proc"]
    if not procs:
        return hint("Your container has a mount namespace, but nothing of type proc mounted at "
                    "/proc: ps inside would read a /proc that is not its PID namespace's.",
                    ko="컨테이너에 마운트 네임스페이스는 있지만, /proc에 proc 타입으로 마운트된 "
                       "것이 없습니다: 안에서 ps를 실행하면 자기 PID 네임스페이스의 것이 아닌 "
                       "/proc을 읽게 됩니다.")
    if _ns(f"{pid}/root/proc/1", "pid") != _ns(pid, "pid"):
        return hint("A proc is mounted at /proc inside, but its process 1 is not your container's "
                    "PID 1: a proc filesystem shows the PID namespace of the process that mounts it.",
                    ko="안의 /proc에 proc이 마운트되어 있지만, 그 proc의 프로세스 1은 컨테이너의 "
                       "PID 1이 아닙니다: proc 파일 시스템은 그것을 마운트한 프로세스의 PID "
                       "네임스페이스를 보여 줍니다.")
    shared = [m.mountpoint for m in _mountinfo(pid) if "shared:" in m.propagation]
    if shared:
        return hint(f"{shared[0]} is still shared with the host's mount namespace (mountinfo says "
                    f"{next(m.propagation for m in _mountinfo(pid) if 'shared:' in m.propagation)}): "
                    "a mount made there would appear on the host too.",
                    ko=f"{shared[0]}은(는) 아직 호스트의 마운트 네임스페이스와 공유되어 "
                       "있습니다(mountinfo: "
                       f"{next(m.propagation for m in _mountinfo(pid) if 'shared:' in m.propagation)}): "
                       "그곳에 마운트한 것은 호스트에도 나타납니다.")
    inside = sorted(int(e) for e in os.listdir(f"/proc/{pid}/root/proc") if e.isdigit())
    return passed(f"The host knows your command as PID {pid}; inside it is PID 1, and its own /proc "
                  f"lists only {inside}. Its mounts are private: nothing mounted inside reaches the host.",
                  ko=f"호스트는 명령을 PID {pid}로 알고 있습니다. 안에서는 PID 1이고, 자기 "
                     f"/proc에는 {inside}만 나옵니다. 마운트는 private입니다: 안에서 마운트한 것은 "
                     "호스트에 닿지 않습니다.")


@exercise(NOTEBOOK, 3, "Level 3: PID 1 of its own PID namespace, with its own /proc")
def level_3() -> Verdict:
    return _observe(3, _pid_one)


# -- level 4: pivot_root -------------------------------------------------------------------

def _pivoted(box: Run) -> Verdict:
    pid = box.pid
    assert pid is not None
    if _shares(box, "mnt"):
        return hint("Your container shares the host's mount namespace: a new root needs a mount "
                    "namespace of its own (level 3).",
                    ko="컨테이너가 호스트의 마운트 네임스페이스를 함께 씁니다: 새 루트에는 "
                       "자기만의 마운트 네임스페이스가 필요합니다(레벨 3).")
    if not os.path.samestat(os.stat(f"/proc/{pid}/root"), os.stat(box.root)):
        return hint(f"Your container's / is not the root it was given ({box.root}): /proc/{pid}/root "
                    "leads elsewhere. The runtime's second argument is the new root.",
                    ko=f"컨테이너의 /가 받은 루트({box.root})가 아닙니다: /proc/{pid}/root가 다른 "
                       "곳을 가리킵니다. 런타임의 두 번째 인자가 새 루트입니다.")
    table = _mountinfo(pid)
    if not any(m.mountpoint == "/" for m in table):
        return hint("Your container sees the new root as / - but the root of its mount namespace "
                    "is still the host's (its mountinfo has no mount at /): chroot moves one "
                    "process's root, and a chroot can be climbed out of. Which call moves the "
                    "namespace's root?",
                    ko="컨테이너는 새 루트를 /로 보지만, 마운트 네임스페이스의 루트는 여전히 "
                       "호스트의 것입니다(mountinfo에 /의 마운트가 없습니다): chroot는 프로세스 "
                       "하나의 루트만 옮기고, chroot로 바꾼 루트는 빠져나올 수 있습니다. "
                       "네임스페이스의 루트를 옮기는 호출은 무엇일까요?")
    host_root = next(m for m in hoststate.mounts() if m.mountpoint == "/")
    old = [m for m in table if (m.source, m.fstype, m.root) == (host_root.source, host_root.fstype, "/")]
    if old:
        return hint(f"The host's whole / is still mounted inside your container, at {old[0].mountpoint}: "
                    "the old root has to leave the namespace after the pivot.",
                    ko=f"호스트의 / 전체가 아직 컨테이너 안 {old[0].mountpoint}에 마운트되어 "
                       "있습니다: pivot 뒤에는 옛 루트가 네임스페이스를 떠나야 합니다.")
    return passed(f"Your container's mount namespace has {len(table)} mounts: the new root (the "
                  f"host's {box.root}) and what you mounted in it. The host's / is not among them.",
                  ko=f"컨테이너의 마운트 네임스페이스에는 마운트가 {len(table)}개 있습니다: 새 "
                     f"루트(호스트의 {box.root})와 그 안에 마운트한 것들입니다. 호스트의 /는 그중에 "
                     "없습니다.")


@exercise(NOTEBOOK, 4, "Level 4: a new root by pivot_root, the old one detached")
def level_4() -> Verdict:
    return _observe(4, _pivoted)


# -- level 5: a cgroup limit -----------------------------------------------------------------

#: A limit file, and what it reads when there is no limit.
_UNLIMITED = {"pids.max": ("max",), "memory.max": ("max",),
              "memory.limit_in_bytes": tuple(str(n) for n in (2**63 - 1, 9223372036854771712))}


def _limits(pid: int) -> tuple[list[str], list[str]]:
    """The lab groups the process is in, and the limits they set ("pids.max = 20")."""
    groups, found = [], []
    for path in sorted(set(cgroups.groups_of(pid).values())):
        if not path.startswith(f"/{ownership.PREFIX}/"):
            continue
        groups.append(path)
        for mount in hoststate.cgroup_mounts():
            directory = mount / path.lstrip("/")
            for name, unlimited in _UNLIMITED.items():
                if (directory / name).is_file():
                    value = (directory / name).read_text().strip()
                    if value not in unlimited:
                        found.append(f"{directory / name} = {value}")
    return groups, found


def _limited(box: Run) -> Verdict:
    assert box.pid is not None
    groups, found = _limits(box.pid)
    if not groups:
        where = sorted(set(cgroups.groups_of(box.pid).values()))
        return hint(f"Your container's first process sits in {', '.join(where)} - the groups its "
                    "runtime was started in, limited by nothing of yours. The lab's groups live "
                    f"under /{ownership.PREFIX}/ in each hierarchy.",
                    ko=f"컨테이너의 첫 프로세스는 {', '.join(where)}에 있습니다 - 런타임이 시작된 "
                       "그룹들로, 내가 건 제한은 아무것도 없습니다. 랩의 그룹은 각 계층의 "
                       f"/{ownership.PREFIX}/ 아래에 있습니다.")
    if not found:
        return hint(f"Your container is in {', '.join(groups)}, but that group sets no limit on "
                    "processes or memory: a new group starts unlimited.",
                    ko=f"컨테이너는 {', '.join(groups)}에 있지만, 그 그룹은 프로세스 수나 메모리에 "
                       "아무 제한도 걸지 않습니다: 새 그룹은 제한 없이 시작합니다.")
    return passed(f"The host's cgroup files hold your container: {'; '.join(found)}.",
                  ko=f"호스트의 cgroup 파일에 컨테이너가 들어 있습니다: {'; '.join(found)}.")


def _group_gone(box: Run) -> Verdict | None:
    if any("cgroup" in item for item in box.left_behind):
        return hint(f"The limit works. But after the container ended, lab/{NAME} was still there "
                    "(the check removed it): a runtime removes what it made for its container.",
                    ko=f"제한은 동작합니다. 하지만 컨테이너가 끝난 뒤에도 lab/{NAME}이(가) 남아 "
                       "있었습니다(검사가 지웠습니다): 런타임은 컨테이너를 위해 만든 것을 스스로 "
                       "치웁니다.")
    return None


@exercise(NOTEBOOK, 5, "Level 5: a cgroup limit (memory or processes)")
def level_5() -> Verdict:
    return _observe(5, _limited, _group_gone)


# -- level 6: capabilities and no_new_privs --------------------------------------------------

def _unprivileged(box: Run) -> Verdict:
    assert box.pid is not None
    status = _status(box.pid)
    effective, bounding = int(status["CapEff"], 16), int(status["CapBnd"], 16)
    extra = hardening.capability_names(effective & ~ALLOWED_CAPS)
    if extra:
        refilled = " If you dropped them before exec: for root, exec fills the sets anew from the " \
                   "bounding set." if bounding & ~ALLOWED_CAPS else ""
        refilled_ko = " exec 전에 뺐다면: root에게는 exec가 bounding 집합에서 집합들을 새로 " \
                      "채워 줍니다." if bounding & ~ALLOWED_CAPS else ""
        return hint(f"Root inside still holds {len(extra)} capabilities Docker takes away (CapEff "
                    f"{status['CapEff']}, among them {', '.join(extra[:3])}).{refilled}",
                    ko=f"안의 root가 아직 Docker가 빼앗는 capability를 {len(extra)}개 가지고 "
                       f"있습니다(CapEff {status['CapEff']}, 그중 "
                       f"{', '.join(extra[:3])}).{refilled_ko}")
    if bounding & ~ALLOWED_CAPS:
        return hint(f"CapEff is small, but the bounding set (CapBnd {status['CapBnd']}) still holds "
                    "every capability: it is the ceiling of what this process and its children can "
                    "ever be given again, and Docker lowers it too.",
                    ko=f"CapEff는 작지만, bounding 집합(CapBnd {status['CapBnd']})에는 아직 모든 "
                       "capability가 있습니다: 이 프로세스와 그 자식들이 앞으로 다시 받을 수 있는 "
                       "것의 상한이고, Docker는 이것도 낮춥니다.")
    if status.get("NoNewPrivs") != "1":
        return hint("The capabilities are gone, but NoNewPrivs is 0: a setuid program run inside "
                    "could still raise its privileges at exec.",
                    ko="capability는 없어졌지만 NoNewPrivs가 0입니다: 안에서 실행한 setuid "
                       "프로그램이 exec할 때 여전히 권한을 올릴 수 있습니다.")
    kept = ", ".join(hardening.capability_names(effective)) or "none"
    return passed(f"/proc/{box.pid}/status: CapEff {status['CapEff']} ({kept}), CapBnd "
                  f"{status['CapBnd']}, NoNewPrivs 1.",
                  ko=f"/proc/{box.pid}/status에 CapEff {status['CapEff']} ({kept}), CapBnd "
                     f"{status['CapBnd']}, NoNewPrivs 1이 기록되어 있습니다.")


@exercise(NOTEBOOK, 6, "Level 6: dropped capabilities and no_new_privs")
def level_6() -> Verdict:
    return _observe(6, _unprivileged)


# -- level 7: a veth into the lab bridge ---------------------------------------------------

def _addresses_inside(pid: int) -> list[tuple[str, str]]:
    """(link, address/prefix) of every IPv4 address on a link that is up, other than lo."""
    result = process.run_command(["ip", "-j", "-4", "addr", "show", "up"], enter=pid,
                                 enter_namespaces=["net"])
    return [(link["ifname"], f"{a['local']}/{a['prefixlen']}") for link in json.loads(result.stdout or "[]")
            for a in link.get("addr_info", []) if link["ifname"] != "lo"]


def _ping_from_the_bridge(address: str) -> bool:
    """Ping ``address`` from a namespace of the check's own, plugged into the same bridge."""
    iface = ipaddress.ip_interface(address)
    mine = next(str(h) for h in reversed(list(iface.network.hosts())) if h != iface.ip)
    probe = net.create_namespace("bprobe")
    try:
        net.plug(probe, BRIDGE, f"{mine}/{iface.network.prefixlen}")
        return netrun.ping(str(iface.ip), probe, count=1).ok
    finally:
        netrun.remove_namespace(probe)


def _plugged(box: Run) -> Verdict:
    assert box.pid is not None
    if _shares(box, "net"):
        return hint("Your container shares the host's network namespace: every link and port of "
                    "the host is its own.",
                    ko="컨테이너가 호스트의 네트워크 네임스페이스를 함께 씁니다: 호스트의 모든 "
                       "링크와 포트가 곧 컨테이너의 것입니다.")
    found = _addresses_inside(box.pid)
    if not found:
        return hint("Your container has a network namespace with nothing in it but lo: a veth pair "
                    "is a cable - one end inside, with an address and up, the other on the bridge.",
                    ko="컨테이너의 네트워크 네임스페이스에는 lo 말고 아무것도 없습니다: veth 쌍은 "
                       "케이블입니다 - 한쪽 끝은 안에서 주소를 받고 켜져 있어야 하고, 다른 쪽 끝은 "
                       "브리지에 있어야 합니다.")
    link, address = found[0]
    if not _ping_from_the_bridge(address):
        return hint(f"Inside, {link} has {address} and is up, but nothing on {BRIDGE} reaches it: "
                    f"is the other end of the pair a port of {BRIDGE}, and up?",
                    ko=f"안에서 {link}은(는) {address}를 가지고 켜져 있지만, {BRIDGE}에서는 "
                       f"아무것도 닿지 않습니다: 쌍의 다른 쪽 끝이 {BRIDGE}의 포트이고, 켜져 "
                       "있나요?")
    return passed(f"Inside, {link} has {address}; a namespace of the check's own on {BRIDGE} pinged it.",
                  ko=f"안에서 {link}은(는) {address}를 가지고 있고, 검사가 {BRIDGE}에 붙인 자기 "
                     "네임스페이스에서 ping을 보내 응답을 받았습니다.")


def _network_gone(box: Run) -> Verdict | None:
    left = [item for item in box.left_behind if "network" in item]
    if left:
        return hint(f"The network works. But after the container ended, {left[0]} was still there "
                    "(the check removed it): a runtime removes what it made for its container.",
                    ko=f"네트워크는 동작합니다. 하지만 컨테이너가 끝난 뒤에도 {left[0]}이(가) 남아 "
                       "있었습니다(검사가 지웠습니다): 런타임은 컨테이너를 위해 만든 것을 스스로 "
                       "치웁니다.")
    return None


@exercise(NOTEBOOK, 7, "Level 7 (optional): a veth into the lab bridge")
def level_7() -> Verdict:
    return _observe(7, _plugged, _network_gone)


# -- the end: notebook 01's escape, against your container ----------------------------------

def _escape_from(pid: int, marker: str) -> tuple[list[str], str | None]:
    """In a lab child, as root with every capability: enter the container's mount namespace and
    its root (as nsenter --mount --root does), then climb as in notebook 01."""
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    syscalls.setns(mnt, syscalls.CLONE_NEWNS)
    os.fchdir(root)
    os.chroot(".")
    return chroot.classic_escape(marker)


def _judge_escape(box: Run, marker: Path) -> Verdict:
    try:
        seen, text = process.run_function(_escape_from, box.pid, str(marker))
    finally:
        chroot.remove_scratch(marker.parent)
    if text is not None:
        return hint(f"Root inside your container climbed out: after chroot into a subdirectory and "
                    f"64 times `..` it read the host's {marker.name} ({', '.join(seen[:6])} ...). "
                    "What is above your container's / in its mount namespace?",
                    ko="컨테이너 안의 root가 밖으로 빠져나왔습니다: 하위 디렉터리로 chroot한 뒤 "
                       f"`..`을 64번 올라가서 호스트의 {marker.name}을(를) "
                       f"읽었습니다({', '.join(seen[:6])} ...). 컨테이너의 마운트 네임스페이스에서 "
                       "/ 위에는 무엇이 있을까요?")
    return passed(f"Root inside your container, with every capability, climbed as far as it could "
                  f"and saw {', '.join(seen[:8])}: your own root. The host's marker was out of reach.",
                  ko="모든 capability를 가진 컨테이너 안의 root가 갈 수 있는 데까지 올라갔지만 "
                     f"{', '.join(seen[:8])}만 보였습니다: 내가 만든 루트입니다. 호스트의 표식 "
                     "파일에는 닿지 못했습니다.")


@exercise(NOTEBOOK, 8, "The end: notebook 01's chroot escape fails against your container")
def escape_fails() -> Verdict:
    return _observe(8, lambda box: _judge_escape(box, chroot.write_host_marker()))


def reset() -> list[str]:
    """What this track's runs can leave besides the exercise directory, removed (``reset B``)."""
    done = _sweep()
    if BRIDGE in hoststate.links():
        _remove_bridge()
        done.append(f"removed bridge {BRIDGE}")
    return done
