"""The one exception the lab raises on purpose.

A learner should read one plain sentence that says what went wrong and what
to do next - never a ctypes traceback. Every module turns kernel errors and
bad input into a ``LabError``; the CLI and the notebooks print ``str(err)``.
"""
from __future__ import annotations

import errno
import os


class LabError(Exception):
    """A problem the learner can fix, described in one sentence."""


class KernelError(LabError):
    """A system call the kernel refused: the sentence, plus the call and its errno for code
    that explains it further (the BPF verifier's log, a probe's stage)."""

    def __init__(self, sentence: str, call: str = "", errno: int = 0) -> None:
        super().__init__(sentence)
        self.call = call
        self.errno = errno


def describe_errno(err: int) -> str:
    """``EPERM`` -> ``'Operation not permitted (EPERM)'``."""
    name = errno.errorcode.get(err, f"errno {err}")
    return f"{os.strerror(err)} ({name})"


def require_root(action: str) -> None:
    """Refuse early, in plain words, when the lab is not run as root."""
    if os.geteuid() != 0:
        raise LabError(
            f"{action} needs root: run the lab as root "
            "(sudo), or use the Vagrant VM in vagrant/ on a non-Linux host."
        )
