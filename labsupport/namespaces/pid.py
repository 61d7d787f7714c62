"""The PID namespace: one process, two numbers; PID 1's duties to orphans; signals PID 1 ignores.

A process in a new PID namespace has a number in every namespace from the
host's down to its own: the host calls it 4242, inside it is 1. The kernel
lists them all on the NSpid line of /proc/PID/status - the host's view of
both sides at once.

PID 1 of a namespace has the init's two duties: it adopts every orphan in
the namespace and must collect (wait for) each one that ends, or the
orphan stays a zombie; and the kernel protects it from signals it has no
handler for. Every box here runs in a busybox root with its own /proc
(``box``), as a container would.
"""
from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from labsupport import ownership, process
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.namespaces import command_pid, enter, rootfs, start


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise LabError(f"The process {pid} is gone (or never existed).") from None
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def nspid(pid: int) -> list[int]:
    """The process's PID in each PID namespace it is in, outermost first (the NSpid line)."""
    return [int(n) for n in _status(pid)["NSpid"].split()]


def is_namespace_init(pid: int) -> bool:
    """True for a process that is PID 1 of a PID namespace below ours."""
    try:
        numbers = nspid(pid)
    except LabError:
        return False
    return len(numbers) > len(nspid(os.getpid())) and numbers[-1] == 1


def pid_table(pid: int) -> Table:
    """``pid`` and every process below it: each one's PID on the host and inside."""
    table = hoststate.processes()
    rows = []
    for each in sorted({pid} | hoststate.descendants(pid, table)):
        try:
            numbers = nspid(each)
            args = Path(f"/proc/{each}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (LabError, OSError):
            continue  # ended meanwhile
        rows.append((args or f"[{table[each].name}]", numbers[0], numbers[-1],
                     hoststate.process_state(each), " ".join(map(str, numbers))))
    return Table(["command", "PID on the host", "PID inside", "state", "NSpid (/proc/PID/status)"],
                 rows, "One process, one number per PID namespace")


def box(root: str | os.PathLike, argv: Sequence[str]) -> process.Child:
    """``argv`` as PID 1 of a new PID namespace, in ``root`` with its own /proc."""
    return start(argv, namespaces=["pid", "mnt"], root=root, pivot=True, mount_proc=True)


#: The scratch names of the roots new_root makes (lab-pidroot-<purpose>-...), so a
#: clean-up or a reset finds them all, the learner's too.
ROOT_PURPOSE = "pidroot"


def new_root(purpose: str) -> Path:
    """A fresh busybox root with a /dev/null.

    A shell opens /dev/null as the stdin of every background job (``cmd &``);
    in a root without it the job dies before it starts.
    """
    root = rootfs.new_busybox_root(f"{ROOT_PURPOSE}-{purpose}")
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return root


#: Two PID 1s for the same orphan: ``(sleep 1 &)`` starts a sleep whose parent, a
#: subshell, exits at once, so the sleep is handed to PID 1 - and when it ends,
#: only PID 1 can collect it. ``; true`` keeps sh from exec'ing its last command.
ORPHAN_SCRIPTS = {
    "sh (waits for any child)": "(sleep 1 &); sleep 600; true",
    "sleep (never calls wait)": "(sleep 1 &); exec sleep 600",
}


def _host_ps(pid: int) -> str:
    """What the host's ``ps`` says of one process (procps marks a zombie <defunct>)."""
    return process.run_command(["ps", "-o", "stat=,args=", "-p", str(pid)]).stdout.strip()


def orphan_story(root: str | os.PathLike, pid_one: str, moments: Sequence[float] = (0.3, 1.8)) -> Table:
    """Watch an orphan under one of the ``ORPHAN_SCRIPTS``' PID 1s: alive, then reaped or a zombie."""
    rows: list[tuple[Any, ...]] = []
    begun = time.monotonic()
    with box(root, ["sh", "-c", ORPHAN_SCRIPTS[pid_one]]) as child:
        init = command_pid(child)
        for moment in moments:
            time.sleep(max(0.0, begun + moment - time.monotonic()))
            rows += [(f"{moment:.1f} s", *row, _host_ps(row[1])) for row in pid_table(init).rows]
    return Table(["after", "command", "PID on the host", "PID inside", "state", "NSpid",
                  "ps on the host"], rows, f"PID 1 = {pid_one}")


def handles(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (its bit in /proc/PID/status SigCgt)."""
    return bool(int(_status(pid)["SigCgt"], 16) >> (signum - 1) & 1)


def ends_within(pid: int, wait: float) -> bool:
    """Whether the process ends (or becomes a zombie) within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if hoststate.process_state(pid) in ("", "Z"):
            return True
        time.sleep(0.02)
    return False


#: Who sends which signal to PID 1 in ``signal_trials``.
TRIALS = (("TERM", "inside"), ("INT", "inside"), ("KILL", "inside"), ("TERM", "host"), ("KILL", "host"))


def signal_trials(root: str | os.PathLike, pid_ones: Mapping[str, Sequence[str]],
                  wait: float = 0.5) -> Table:
    """Each signal of ``TRIALS`` sent to a fresh PID 1, from inside (``kill -SIG 1``) or from the host."""
    rows = []
    for label, argv in pid_ones.items():
        for signame, sender in TRIALS:
            signum = getattr(signal, f"SIG{signame}")
            with box(root, argv) as child:
                init = command_pid(child)
                handled = handles(init, signum)
                if sender == "host":
                    os.kill(init, signum)
                    how = f"host: kill -{signame} {init}"
                else:
                    enter(init, ["kill", f"-{signame}", "1"])
                    how = f"inside: kill -{signame} 1"
                ended = ends_within(init, wait)
            rows.append((label, how, "yes" if handled else "no", "ended" if ended else "still running"))
    return Table(["PID 1", "signal sent from", "PID 1 has a handler", "PID 1 afterwards"], rows,
                 "Signals to PID 1")


def remove_roots() -> list[Path]:
    """Every root new_root made (their boxes stopped first): notebook 04's reset."""
    roots = [d / "rootfs" for d in ownership.TEMP_DIR.glob(f"{ownership.PREFIX}-{ROOT_PURPOSE}-*")]
    for root in roots:
        rootfs.remove_root(root)
    return roots
