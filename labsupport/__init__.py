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

from .errors import LabError
from .hostcheck import doctor
from .ownership import clean
from .process import CommandResult, run_command, run_function, start
from .rootfs import (build_from_programs, busybox_root, new_busybox_root, remove_root,
                     shared_libraries)

__all__ = [
    "LabError", "clean", "doctor", "CommandResult", "run_command", "run_function", "start",
    "build_from_programs", "busybox_root", "new_busybox_root", "remove_root", "shared_libraries",
]

