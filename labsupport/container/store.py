"""Where the lab keeps what it knows of each container: ``/run/labsupport/containers/<id>/``.

Its ``state.json`` (a record, as ``ownership.records`` writes them), the
``config.json`` the shim runs, and the shim's log. The runtime and the shim
both read and write here; neither calls the other for it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from labsupport import ownership
from labsupport.container import spec as specs
from labsupport.container.spec import Spec
from labsupport.kernel.errors import LabError
from labsupport.ownership import records

CONTAINERS_DIR = ownership.STATE_DIR / "containers"
#: In each container's directory: where its start went (labsupport.process.timeline).
TIMELINE = "timeline"
#: ... and, once its reaper saw the end, the exit code.
EXIT_CODE = "exit_code"


def make_container_dir(container_id: str, owner: int | None = None) -> Path:
    """A new container's directory, closed to every host user but ``owner``.

    Its rootfs holds the image's files - setuid-root programs among them - mounted
    where a host user could run them. So the parent may be passed through but not
    listed (0711), and the directory itself is its owner's alone (0700): root's, or
    under a user namespace the remapped root's, which must reach its rootfs to
    pivot into it (Docker keeps /var/lib/docker the same way).
    """
    CONTAINERS_DIR.mkdir(parents=True, exist_ok=True)
    CONTAINERS_DIR.chmod(0o711)
    directory = container_dir(container_id)
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)  # mkdir's mode passes through the umask
    if owner is not None:
        os.chown(directory, owner, owner)
    return directory


def container_dir(container_id: str) -> Path:
    return CONTAINERS_DIR / container_id


write_state = records.write


def read_state(directory: Path) -> dict[str, Any]:
    """The container's state, with its end as the reaper recorded it (labsupport.container.shim):
    a C program writes no JSON, so the exit code it keeps is a file of its own."""
    current = records.read(directory)
    if current.get("status") == "running":
        try:
            code = int((directory / EXIT_CODE).read_text())
        except (FileNotFoundError, ValueError):
            return current
        current.update(status="exited", exit_code=code)
    return current


alive = records.alive


def holds(current: dict[str, Any], key: str) -> bool:
    """Is the process recorded under ``key`` (pid, group, shim_pid) still the one that started?

    A PID is only a number: once its process has ended the kernel hands it to the next
    one. Every PID the shim records comes with its start time (``<key>_started``), and
    nothing is signalled unless both still match - never a stranger that got the number.
    """
    return alive(current.get(key), current.get(f"{key}_started"))


def record_processes(directory: Path, **pids: int) -> dict[str, Any]:
    """Write PIDs into the state with their start times, for ``holds`` to check them later."""
    return write_state(directory, **pids, **{f"{key}_started": records.started(pid) for key, pid in pids.items()})


def state(ref: str) -> dict[str, Any]:
    """The state of a container by id, id prefix or name; a dead shim reads as 'exited'."""
    return state_of(find(ref))


def state_of(directory: Path) -> dict[str, Any]:
    current = read_state(directory)
    if current.get("status") == "running" and not holds(current, "shim_pid"):
        # Read again: a shim records its end just before it goes, maybe since the first read.
        current = read_state(directory)
        if current.get("status") == "running":
            current = write_state(directory, status="exited", exit_code=current.get("exit_code"))
    return current


def all_dirs() -> list[Path]:
    return records.directories(CONTAINERS_DIR)


def find(ref: str) -> Path:
    if ref and "/" not in ref and (CONTAINERS_DIR / ref / "state.json").exists():
        return CONTAINERS_DIR / ref  # a full id: no need to read every container's state
    for directory in all_dirs():
        st = read_state(directory)
        if st.get("name") == ref or st.get("id") == ref:
            return directory
    matches = [d for d in all_dirs() if d.name.startswith(ref)] if len(ref) >= 4 else []
    if len(matches) == 1:
        return matches[0]
    raise LabError(f"There is no container {ref!r}: `python -m labsupport ps -a` lists them.")


def names_in_use() -> set[str]:
    return {read_state(d).get("name", "") for d in all_dirs()}


def list_containers(all_: bool = True) -> list[dict[str, Any]]:
    found = [state_of(d) for d in all_dirs()]
    return [c for c in found if all_ or c.get("status") == "running"]


def load_spec(ref: str) -> Spec:
    return specs.parse(json.loads((find(ref) / "config.json").read_text()))
