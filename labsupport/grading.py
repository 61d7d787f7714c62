"""The classroom layer: grade every exercise at once, and reset one notebook's lab state.

A teacher grades with the same checks a learner calls in the notebooks, so a
score means exactly what the notebook's "Passed" meant. ``reset`` puts one
notebook back to its start: it finds what that notebook's checks look at -
the boxes, kept namespaces, IPC keys, network namespaces and groups the
exercise modules name - and removes only those, never anything the lab did
not make.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import chroot, hoststate, ipc, mounts, namespaces, net, ownership, pidns, portproxy, userns
from .errors import LabError
from .exercises import all_exercises, check
from .exercises import workdir
from .tables import Table


@dataclass(frozen=True)
class Score:
    """One exercise's line in the score table."""

    notebook: str
    number: int
    title: str
    passed: bool
    message: str


def notebooks() -> list[str]:
    """The notebooks that have exercises, in order (whatever is registered now)."""
    return sorted({e.notebook for e in all_exercises()})


def _require_notebook(notebook: str) -> str:
    nb = str(notebook).zfill(2) if str(notebook).isdigit() else str(notebook).upper()
    if nb not in notebooks():
        raise LabError(f"Notebook {notebook} has no exercises: pick one of {', '.join(notebooks())}.")
    return nb


def grade(notebook: str | None = None) -> list[Score]:
    """Run every exercise's check (or one notebook's) and collect the verdicts."""
    wanted = _require_notebook(notebook) if notebook is not None else None
    return [Score(e.notebook, e.number, e.title, *_verdict(e.notebook, e.number))
            for e in all_exercises() if wanted in (None, e.notebook)]


def _verdict(notebook: str, number: int) -> tuple[bool, str]:
    verdict = check(notebook, number)
    return verdict.passed, verdict.message


def total(scores: Sequence[Score]) -> str:
    done = sum(s.passed for s in scores)
    return f"{done} of {len(scores)} exercises passed"


def render_text(scores: Sequence[Score], width: int = 100) -> str:
    """The score table for a terminal: one line per exercise, the check's message below it."""
    lines = [f"{'nb':3} {'ex':3} {'result':8} title", "-" * width]
    for s in scores:
        lines.append(f"{s.notebook:3} {s.number:<3} {'passed' if s.passed else 'not yet':8} {s.title}")
        lines += textwrap.wrap(s.message, width, initial_indent=" " * 16, subsequent_indent=" " * 16)
    lines += ["-" * width, total(scores)]
    return "\n".join(lines)


def table(scores: Sequence[Score]) -> Table:
    """The score table for a notebook."""
    rows = [(s.notebook, s.number, s.title, "passed" if s.passed else "not yet", s.message)
            for s in scores]
    return Table(["notebook", "exercise", "title", "result", "message"], rows, total(scores))


def save_json(scores: Sequence[Score], path: str | os.PathLike) -> Path:
    target = Path(path)
    target.write_text(json.dumps({"total": total(scores), "passed": sum(s.passed for s in scores),
                                  "exercises": [asdict(s) for s in scores]}, indent=2,
                                 ensure_ascii=False) + "\n")
    return target


def save_csv(scores: Sequence[Score], path: str | os.PathLike) -> Path:
    target = Path(path)
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["notebook", "exercise", "title", "passed", "message"])
        for s in scores:
            writer.writerow([s.notebook, s.number, s.title, s.passed, s.message])
    return target


# -- reset ------------------------------------------------------------------------

def _boxes_of(kind: str) -> list[int]:
    """Lab processes with a ``kind`` namespace of their own."""
    return [pid for pids in namespaces.lab_namespaces(kind).values() for pid in pids]


def _release(*names: str) -> list[str]:
    released = []
    for kept in namespaces.held():
        if kept.name in names:
            namespaces.release(kept.path)
            released.append(f"{kept.name}/{kept.kind}")
    return released


def _remove_work(notebook: str) -> list[str]:
    """Unmount everything in the notebook's exercise directory, then remove it."""
    work = workdir.EXERCISES_DIR / notebook  # not exercise_dir: appendix A has no number to pad
    if not work.exists():
        return []
    done = [f"unmounted {m}" for m in mounts.unmount_below(work)]
    # rmtree would descend into a mount that is still there - into the host's own files.
    left = [m.mountpoint for m in hoststate.mounts()
            if Path(m.mountpoint) == work or work in Path(m.mountpoint).parents]
    if left:
        raise LabError(f"{left[0]} is still mounted inside {work}: unmount it, then reset again.")
    shutil.rmtree(work)
    return done + [f"removed {work}"]


def _reset_00() -> list[str]:
    return []


def _reset_01() -> list[str]:
    from .exercises.nb01_chroot import my_root

    return [f"stopped PID {p}" for p in chroot.stop_processes_rooted_in(my_root())]


def _reset_02() -> list[str]:
    from .exercises.nb02_uts import KEPT_NAME

    return [f"stopped PID {p}" for p in ownership.kill_processes(_boxes_of("uts"))] + _release(KEPT_NAME)


def _reset_03() -> list[str]:
    from .exercises.nb03_ipc import HIDDEN_QUEUE_KEY, KEPT_NAME, KEPT_SEGMENT_KEY, SHARED_QUEUE

    done = [f"stopped PID {p}" for p in ownership.kill_processes(_boxes_of("ipc"))] + _release(KEPT_NAME)
    names = {f"{HIDDEN_QUEUE_KEY:#010x}", f"{KEPT_SEGMENT_KEY:#010x}", SHARED_QUEUE}
    for obj in ipc.objects():
        if obj.name in names:
            ipc.remove(obj)
            done.append(f"removed {obj}")
    return done


def _reset_04() -> list[str]:
    grouped = ownership.processes_in_lab_cgroups()  # containers are PID 1s too: not 04's
    inits = [pid for pid in ownership.lab_processes() if pidns.is_namespace_init(pid) and pid not in grouped]
    stopped = [f"stopped PID {p} (and its namespace)" for p in ownership.kill_processes(inits)]
    return stopped + [f"removed {root}" for root in pidns.remove_roots()]


def _reset_05() -> list[str]:
    return [f"stopped PID {p}" for p in ownership.kill_processes(list(mounts.lab_boxes()))]


def _reset_06() -> list[str]:
    from . import netrun
    from .exercises.nb06_network import EXERCISE_NAMESPACES, HOST_PORT

    done = []
    if any(p.host_port == HOST_PORT for p in portproxy.published()):
        portproxy.unpublish(HOST_PORT)
        done.append(f"unpublished 127.0.0.1:{HOST_PORT}")
    present = [ns for ns in EXERCISE_NAMESPACES if ns in net.lab_namespaces()]
    if present:
        rows = netrun.clean_up(namespaces=present).rows
        done += [f"{what}: {removed}" for what, removed in rows if removed != "none"]
    return done


def _reset_07() -> list[str]:
    return [f"stopped PID {p}" for p in ownership.kill_processes(userns.lab_user_boxes())]


def _reset_08() -> list[str]:
    from .cgroups import experiments
    from .exercises.nb08_cgroups import GROUPS

    rows = experiments.clean_up(names=list(GROUPS.values())).rows
    return [f"{what}: {removed}" for what, removed in rows if removed != "none"]


def _reset_09() -> list[str]:
    from . import images

    done = []
    box = workdir.EXERCISES_DIR / "09" / "box"
    if (box / "rootfs").exists() and any(m.mountpoint == str(box / "rootfs") for m in hoststate.mounts()):
        images.release_rootfs(box)
        done.append(f"unmounted {box / 'rootfs'}")
    for image in images.list_images():
        if image.name.startswith("ex09-"):
            done += [f"removed image {ref}" for ref in images.remove(image.ref)]
    return done


def _remove_containers_named(prefix: str) -> list[str]:
    """Every container whose name starts with ``prefix``, running or exited."""
    from . import container

    done = []
    for box in container.list_containers():
        if str(box.get("name", "")).startswith(prefix):
            container.remove(box["id"], force=True)
            done.append(f"removed container {box['name']}")
    return done


def _reset_10() -> list[str]:
    return _remove_containers_named("ex10-")


def _reset_11() -> list[str]:
    from . import compose
    from .exercises.nb11_compose import CPU_PROJECT, PROJECT

    return [f"removed container {name}" for project in (PROJECT, CPU_PROJECT)
            for name in compose.down(project)]


def _reset_12() -> list[str]:
    from .exercises.nb12_hypervisors import held_microvms
    from .vm import qemu

    pids = held_microvms()
    scratch = [qemu.scratch_of(pid) for pid in pids]  # read while QEMU still runs
    done = [f"stopped QEMU PID {p}" for p in ownership.kill_processes(pids)]
    return done + [f"removed {s}" for s in chroot.remove_scratch(*[s for s in scratch if s])]


def _reset_13() -> list[str]:
    from .exercises.nb13_vms_vs_containers import SCALE_PREFIX
    from .vm import background

    done = []
    for vm in background.ls():
        background.stop(vm["name"])
        done.append(f"stopped VM {vm['name']}")
    return done + _remove_containers_named(SCALE_PREFIX)


#: What each notebook's exercises leave on the host, besides its exercise directory.
RESETS: dict[str, Callable[[], list[str]]] = {
    "00": _reset_00, "01": _reset_01, "02": _reset_02, "03": _reset_03, "04": _reset_04,
    "05": _reset_05, "06": _reset_06, "07": _reset_07, "08": _reset_08, "09": _reset_09,
    "10": _reset_10, "11": _reset_11, "12": _reset_12, "13": _reset_13,
}


def reset(notebook: str) -> list[str]:
    """Return ``notebook``'s lab state to its start; says what it removed, line by line.

    A notebook added later with no entry in RESETS still gets its exercise
    directory removed (with every mount in it), and its boxes are the ones
    its clean-up cell stops.
    """
    nb = _require_notebook(notebook)
    done = RESETS.get(nb, _reset_00)()
    return done + _remove_work(nb)
