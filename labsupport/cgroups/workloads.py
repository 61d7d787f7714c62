"""Small workloads that lean on one resource each, to run inside a lab group.

Each one is a plain function for ``CGroup.start_function`` / ``run_function``
(a forked copy of this Python runs it, already inside the group), or a
command for ``CGroup.start``. They do one thing hard enough that a limit
shows: allocate memory step by step, spin on one core, stream a disk with
O_DIRECT, fork without end.
"""
from __future__ import annotations

import mmap
import os
import time
from typing import Optional


def grow_memory(step: int = 4 << 20, pause: float = 0.05, total: int = 1 << 30) -> int:
    """Allocate ``step`` bytes at a time, touching every page, up to ``total``; return bytes held.

    ``b"\\x01" * n`` writes each byte, so every page really is charged to the
    group (a calloc'd bytearray would be lazily zero pages, not yet charged).
    """
    held = []
    while sum(map(len, held)) < total:
        held.append(b"\x01" * step)
        time.sleep(pause)
    return sum(map(len, held))


def pin_to_core(core: int) -> None:
    """Run only on ``core``, so two burners must share it (and weights show as shares of it)."""
    os.sched_setaffinity(0, {core})


def burn_cpu(seconds: float, core: Optional[int] = None) -> int:
    """Spin for ``seconds`` of wall time (on one core if given); return the loops done."""
    if core is not None:
        pin_to_core(core)
    end = time.monotonic() + seconds
    loops = 0
    while time.monotonic() < end:
        loops += 1
    return loops


def quiet_core() -> int:
    """The last CPU this process may use: the one the lab pins its burners to."""
    return max(os.sched_getaffinity(0))


def stream_device(device: str, write: bool, seconds: float, block: int = 1 << 20,
                  span: int = 32 << 20) -> list[tuple[float, int]]:
    """Read (or write) ``device`` with O_DIRECT for ``seconds``; return (time, bytes so far) samples.

    O_DIRECT skips the page cache: every request goes to the device, where a
    bandwidth throttle sits. Without it, reading the same blocks twice would
    come from memory and never meet the limit. O_DIRECT wants buffers aligned
    to the block size, which an anonymous mmap is (page-aligned).
    """
    flags = (os.O_WRONLY if write else os.O_RDONLY) | os.O_DIRECT
    fd = os.open(device, flags)
    buffer = mmap.mmap(-1, block)
    samples = [(0.0, 0)]
    done = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            offset = done % span
            done += os.pwritev(fd, [buffer], offset) if write else os.preadv(fd, [buffer], offset)
            samples.append((time.monotonic() - start, done))
    finally:
        os.close(fd)
        buffer.close()
    return samples


def busy_service(seconds: float, step: int = 2 << 20, keep: int = 48 << 20) -> None:
    """A pretend service for the monitor: memory grows and is freed in waves,
    a worker process is forked for each request, and each burns CPU a while."""
    end = time.monotonic() + seconds
    held: list[bytes] = []
    while time.monotonic() < end:
        held.append(b"\x01" * step)
        if len(held) * step > keep:
            del held[:len(held) // 2]  # a cache dropping half its entries
        if os.fork() == 0:
            burn_cpu(0.6)
            os._exit(0)
        burn_cpu(0.15)
        while True:  # reap the workers that are done
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def _bomb(end: float) -> None:
    """Fork, and have both copies fork again, until ``end``; refused forks are retried.

    The shell's classic ``:(){ :|:& };:`` gives up when fork fails (a
    non-interactive sh exits on "Cannot fork"), so under a limit it dies out
    at once. This one keeps knocking - the worst case a limit must hold.
    """
    while time.monotonic() < end:
        try:
            os.fork()
        except BlockingIOError:  # EAGAIN: the pids limit said no
            time.sleep(0.001)
    os._exit(0)


def fork_bomb_as_init(seconds: float) -> int:
    """PID 1 of a new PID namespace: start a fork bomb, reap orphans for ``seconds``.

    An init must reap, or every finished process stays a zombie (notebook 04).
    Returns how many processes it reaped.
    """
    end = time.monotonic() + seconds
    if os.fork() == 0:
        _bomb(end)
    reaped = 0
    while time.monotonic() < end + 0.5:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # every bomb process has ended
        if pid:
            reaped += 1
        else:
            time.sleep(0.005)
    return reaped
