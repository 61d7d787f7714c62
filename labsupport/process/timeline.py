"""Where a start goes: named marks written by every process that takes part, into one file.

A container's start is spread over four processes - the caller, the shim,
the first child and the container's PID 1 - and some of their steps overlap.
Each writes one line per step as the step begins: the monotonic clock (one
clock for the whole machine), its PID and the step's name. Sorted by time,
the gap from one mark to the next is what that step cost; the file lives in
the container's directory and goes with it.

A write of a short line to a file opened with O_APPEND is one ``write``: lines
from different processes never interleave. The descriptor is close-on-exec, so
the container's program never holds it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_fd = -1


def begin(path: str | os.PathLike) -> None:
    """From now on, this process (and every child it forks) writes its marks to ``path``."""
    global _fd
    end()
    _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def end() -> None:
    """Stop writing marks (the file stays)."""
    global _fd
    if _fd >= 0:
        try:
            os.close(_fd)
        except OSError:
            pass
    _fd = -1


def mark(step: str) -> None:
    """Say that ``step`` begins now; nothing happens unless ``begin`` was called."""
    if _fd >= 0:
        try:
            os.write(_fd, f"{time.monotonic_ns()} {os.getpid()} {step}\n".encode())
        except OSError:
            pass  # a full disk must not stop a container


def note(path: str | os.PathLike, step: str) -> None:
    """One mark from a process that does not follow the whole start (the caller)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, f"{time.monotonic_ns()} {os.getpid()} {step}\n".encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Phase:
    """One step: who took it and how long until the next mark, in milliseconds."""

    step: str
    pid: int
    ms: float


def phases(path: str | os.PathLike) -> list[Phase]:
    """The marks in ``path`` in time order, each with the time until the next one.

    The last mark has no next one and is left out: it ends the timeline.
    """
    marks = []
    for line in Path(path).read_text().splitlines():
        stamp, pid, step = line.split(" ", 2)
        marks.append((int(stamp), int(pid), step))
    marks.sort()
    return [Phase(step, pid, (following[0] - stamp) / 1e6)
            for (stamp, pid, step), following in zip(marks, marks[1:])]
