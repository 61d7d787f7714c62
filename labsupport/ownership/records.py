"""The lab's records of what it runs: one directory per thing, holding a ``state.json``.

A container and a background microVM outlive the notebook cell that started
them, so what the lab knows of each is written down: its PIDs, its name, its
status. Every kind keeps the same shape of record, written the same way (a
whole new file renamed over the old, so a reader never sees half of one), and
asks the same question of the PIDs in it: is that still the process we
started, or has the PID been handed to a stranger?
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from labsupport.kernel import hoststate

STATE_FILE = "state.json"


def read(directory: Path) -> dict[str, Any]:
    """The record in ``directory``; an empty one when there is none (yet, or any more)."""
    try:
        return json.loads((directory / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write(directory: Path, **changes: Any) -> dict[str, Any]:
    """Update the record atomically (rename), so a reader never sees half a file."""
    state = read(directory)
    state.update(changes)
    scratch = directory / f"{STATE_FILE}.new"
    scratch.write_text(json.dumps(state, indent=1))
    scratch.replace(directory / STATE_FILE)
    return state


def directories(parent: Path) -> list[Path]:
    """Every record under ``parent``, in name order."""
    return sorted(d for d in parent.glob("*") if (d / STATE_FILE).exists()) if parent.is_dir() else []


def started(pid: int) -> Optional[int]:
    """When ``pid`` started, in clock ticks since boot (what ``alive`` compares, to know the
    number was not handed to another process since)."""
    proc = hoststate.read_process(pid)
    return proc.start_ticks if proc else None


def alive(pid: Optional[int], start_ticks: Optional[int] = None) -> bool:
    """True if ``pid`` runs and is no zombie - and, given its start time, is the same process."""
    if not pid:
        return False
    proc = hoststate.read_process(pid)
    if proc is None or hoststate.process_state(pid) in ("", "Z", "X"):
        return False
    return start_ticks is None or proc.start_ticks == start_ticks
