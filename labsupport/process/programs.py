"""Small C programs the lab builds once, into its cache, from sources in the package.

Some jobs want no interpreter: a probe that makes system calls busybox cannot,
a reaper that waits for a container at a few hundred KiB. Each is one C file
beside the Python that uses it, built with ``gcc -static`` on first use (``./lab``
builds them at set-up) into /var/cache/labsupport/programs/<hash of the source>/,
so a changed source is a new build and nothing binary lives in the repository.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from labsupport import ownership
from labsupport.kernel.errors import LabError

PROGRAMS_DIR = ownership.CACHE_DIR / "programs"
_known: dict[Path, Path] = {}


def path_of(source: Path) -> Path:
    """Where the program built from ``source`` lives (built or not): one directory per version."""
    if source not in _known:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        _known[source] = PROGRAMS_DIR / digest / source.stem
    return _known[source]


def built(source: Path) -> Path | None:
    """The program, if it has been built; never builds (cheap enough for every container start)."""
    path = path_of(source)
    return path if path.exists() else None


def build(source: Path) -> Path:
    """The program built from ``source``, building it now if this version never was."""
    target = path_of(source)
    if target.exists():
        return target
    if shutil.which("gcc") is None:
        raise LabError(f"Building {source.name} needs gcc and a static libc: "
                       "apt-get install gcc libc6-dev (./lab installs them).")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_suffix(".new")
    done = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(scratch), str(source)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise LabError(f"gcc could not build {source.name}: {last[0]}")
    scratch.replace(target)  # whole or not at all: a start never runs half a program
    return target
