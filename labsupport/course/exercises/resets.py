"""What the resets of several notebooks share: finding their boxes, kept namespaces and containers.

Each notebook's ``reset()`` sits beside its exercises (``nbNN_*.py``), so what an exercise makes
and how a reset removes it are read together.
"""
from __future__ import annotations

from labsupport import namespaces


def boxes_of(kind: str) -> list[int]:
    """Lab processes with a ``kind`` namespace of their own."""
    return [pid for pids in namespaces.lab_namespaces(kind).values() for pid in pids]


def release(*names: str) -> list[str]:
    released = []
    for kept in namespaces.held():
        if kept.name in names:
            namespaces.release(kept.path)
            released.append(f"{kept.name}/{kept.kind}")
    return released


def remove_containers_named(prefix: str) -> list[str]:
    """Every container whose name starts with ``prefix``, running or exited."""
    from labsupport import container

    done = []
    for box in container.list_containers():
        if str(box.get("name", "")).startswith(prefix):
            container.remove(box["id"], force=True)
            done.append(f"removed container {box['name']}")
    return done
