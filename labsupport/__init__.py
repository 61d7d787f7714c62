"""labsupport: the virtualization lab's Python package.

The notebooks explain and show; this package does the work. Its public face
is small, and the same functions serve the notebooks, the CLI
(``python -m labsupport``) and the tests::

    import labsupport as lab
    lab.doctor()                                   # is this host ready?
    root = lab.new_busybox_root()                  # a fresh busybox root
    lab.run_command(["hostname"], namespaces=["uts"], hostname="box")
    lab.run_function(os.getpid, namespaces=["pid"])   # -> 1
    lab.clean()                                    # leave the host as found
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import LabError

#: The public names and the module each lives in: imported on first use, so that
#: ``python -m labsupport run ...`` does not pay for the doctor's imports.
_PUBLIC = {
    "doctor": "hostcheck", "clean": "ownership",
    "CommandResult": "process", "run_command": "process", "run_function": "process", "start": "process",
    "build_from_programs": "rootfs", "busybox_root": "rootfs", "new_busybox_root": "rootfs",
    "remove_root": "rootfs", "shared_libraries": "rootfs",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'labsupport' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)


__all__ = ["LabError", *_PUBLIC]
