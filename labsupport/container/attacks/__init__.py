"""Attacks on the lab's own container, run for real by root inside it.

Each defense of the container (seccomp, the device cgroup, masked paths, the
closed state directory ...) is proven by the attack it stops: the attack runs
once with the defense on and fails, and once with only that defense off and
succeeds - safely, since the lab made the target too. System calls that
busybox cannot make (clone with namespace flags, clone3, io_uring, add_key) are
made by ``probe.c``, a small static program built once at set-up and copied
into the container's root.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from labsupport import ownership
from labsupport.container import runtime, store
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError

SOURCE = Path(__file__).with_name("probe.c")
#: Where a container finds the probe.
INSIDE = "/lab-probe"


def probe() -> Path:
    """The probe, built from probe.c with ``gcc -static`` into the lab's cache (once per version)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    built = ownership.CACHE_DIR / "probes" / digest / "probe"
    if built.exists():
        return built
    if shutil.which("gcc") is None:
        raise LabError("Building the attack probe needs gcc and a static libc: "
                       "apt-get install gcc libc6-dev (./lab installs them).")
    built.parent.mkdir(parents=True, exist_ok=True)
    scratch = built.with_suffix(".new")
    done = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(scratch), str(SOURCE)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise LabError(f"gcc could not build the attack probe: {done.stderr.strip().splitlines()[-1:]}")
    scratch.replace(built)
    return built


def install(ref: str) -> None:
    """Put the probe into a running container's root, without following the root's links."""
    root = store.state(ref)["root"]
    syscalls.write_in_root(root, INSIDE, probe().read_bytes(), mode=0o755)


def attempt(ref: str, attack: str) -> str:
    """Run one attack as the container's root; "allowed" or "refused ERRNO"."""
    result = runtime.exec_in(ref, [INSIDE, attack])
    line = result.stdout.strip()
    if not line.startswith(f"{attack}: "):
        raise LabError(f"The probe said nothing of {attack!r}: {result.stdout}{result.stderr}")
    return line.split(": ", 1)[1]
