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
from typing import TYPE_CHECKING, Any

from labsupport.kernel.errors import LabError

if TYPE_CHECKING:
    from labsupport.ownership import CleanReport

#: The public names and the module each lives in: imported on first use, so that
#: ``python -m labsupport run ...`` does not pay for the doctor's imports.
_PUBLIC = {
    "doctor": "course.doctor",
    "CommandResult": "process", "run_command": "process", "run_function": "process", "start": "process",
    "build_from_programs": "namespaces.rootfs", "busybox_root": "namespaces.rootfs",
    "new_busybox_root": "namespaces.rootfs",
    "remove_root": "namespaces.rootfs", "shared_libraries": "namespaces.rootfs",
}


#: The packages that make a kind of thing of their own register it with ownership's
#: registry when imported; clean() imports them all first, so it misses none.
_OWNERS = ("labsupport.container.runtime", "labsupport.container.oci", "labsupport.namespaces.ipc",
           "labsupport.images.store", "labsupport.vm.background")


def clean() -> "CleanReport":
    """Remove everything the lab left on the host, and nothing else (see ``ownership``)."""
    for owner in _OWNERS:
        importlib.import_module(owner)
    from labsupport import ownership
    return ownership.clean()


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'labsupport' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)


__all__ = ["LabError", "clean", *_PUBLIC]
