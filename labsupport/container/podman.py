"""podman, a real engine, driving the lab's own runtime (``bin/lab-runtime``) instead of runc.

    with Podman() as engine:                  # a private store in a lab scratch directory
        engine.import_busybox()               # the lab's busybox root, as an image: no registry
        print(engine("run", "--rm", *engine.RUN, engine.IMAGE, "echo", "hi").stdout)

Why so many flags: podman keeps its images, containers and locks under
/var/lib/containers and /run/containers, puts its monitor (conmon) in
systemd's cgroups, writes events to the journal and makes a network -
all of the host's. Here each of those is pointed into the lab's own places,
so the engine's whole state goes away with one directory and one cgroup
parent, and the host is left as it was found.
"""
from __future__ import annotations

import os
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

from labsupport import ownership
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.namespaces import rootfs
from labsupport.process import CommandResult, run_command

#: The repository's runtime executable: what an engine is pointed at.
LAB_RUNTIME = Path(__file__).resolve().parents[2] / "bin" / "lab-runtime"


#: Where containers/image (inside podman) keeps its blob cache for root, --root or not.
BLOB_CACHE = Path("/var/lib/containers")


def available() -> bool:
    return shutil.which("podman") is not None and shutil.which("conmon") is not None


class Podman:
    """One private podman: its store, run state, network config and cgroup parent, all the lab's."""

    IMAGE = "localhost/lab/busybox:latest"
    #: What every `podman run` here adds. seccomp: the lab runtime takes deny-lists, and podman's
    #: profile is an allow-list. ulimits: podman's default RLIMIT_NOFILE is above this host's
    #: fs.nr_open cap in a container (runc fails on it too). No network: podman's would be the host's.
    RUN = ("--network", "none", "--security-opt", "seccomp=unconfined",
           "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

    def __init__(self, runtime: str | os.PathLike = LAB_RUNTIME) -> None:
        if not available():
            raise LabError("podman is not installed: `apt-get install podman` (./lab up installs it).")
        self.home = ownership.temp_dir("podman")
        self.cgroup_parent = f"/{ownership.PREFIX}/{ownership.owned_name('pod')}"
        self.runtime = self._runtime_wrapper(Path(runtime))
        # `podman import` keeps a cache of blob facts at this fixed place, whatever --root says.
        self._blob_cache_was_there = BLOB_CACHE.exists()
        for sub in ("root", "run", "tmp", "networks", "volumes"):
            (self.home / sub).mkdir()

    def _runtime_wrapper(self, runtime: Path) -> Path:
        """conmon starts the runtime with an environment of its own: this script names the Python
        (this one) and the checkout the runtime must use, whatever that environment holds - and
        a file where each call is written down (``calls``)."""
        wrapper = self.home / "lab-runtime"
        wrapper.write_text(f"#!/bin/sh\nLAB_PYTHON={sys.executable} LAB_RUNTIME_TRACE={self.home}/calls "
                           f"exec {runtime} \"$@\"\n")
        wrapper.chmod(0o755)
        return wrapper

    @property
    def argv(self) -> list[str]:
        """podman and its global flags: the private store, and the lab's runtime."""
        return ["podman", "--root", str(self.home / "root"), "--runroot", str(self.home / "run"),
                "--tmpdir", str(self.home / "tmp"), "--network-config-dir", str(self.home / "networks"),
                "--volumepath", str(self.home / "volumes"), "--storage-driver", "vfs",
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--runtime", str(self.runtime)]

    def __call__(self, *args: str, timeout: float = 60) -> CommandResult:
        """``podman ARGS``; a failure is a LabError with podman's own last line. ``run`` and
        ``create`` get the lab's cgroup parent."""
        argv = [*self.argv, *args]
        if args[:1] and args[0] in ("run", "create"):
            argv[len(self.argv) + 1:len(self.argv) + 1] = ["--cgroup-parent", self.cgroup_parent]
        result = run_command(argv, timeout=timeout, env={"TMPDIR": str(self.home / "tmp")})
        return result

    def check(self, *args: str, timeout: float = 60) -> CommandResult:
        result = self(*args, timeout=timeout)
        if not result.ok:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise LabError(f"podman {args[0]} failed: {lines[-1] if lines else result.returncode}")
        return result

    def calls(self) -> list[list[str]]:
        """Every command line podman (through conmon) ran the runtime with, in order."""
        trace = self.home / "calls"
        return [line.split() for line in trace.read_text().splitlines()] if trace.exists() else []

    def import_busybox(self) -> str:
        """The lab's busybox root as the image ``IMAGE``, with ``podman import`` of a tarball."""
        tarball = self.home / "busybox.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(rootfs.busybox_root(), arcname=".")
        self.check("import", str(tarball), self.IMAGE)
        tarball.unlink()
        return self.IMAGE

    def close(self) -> None:
        """Every container removed, then the store, and the cgroups podman's monitors made."""
        try:
            self("rm", "--all", "--force", "--time", "0")
        except LabError:
            pass
        for hierarchy in hoststate.cgroup_mounts():
            parent = hierarchy / self.cgroup_parent.lstrip("/")
            # deepest first, then the lab's parent if no other lab group lives there
            for directory, _, _ in sorted(os.walk(parent), key=lambda w: -len(w[0])) if parent.is_dir() else []:
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
            try:
                parent.parent.rmdir()
            except OSError:
                pass
        shutil.rmtree(self.home, ignore_errors=True)
        if not self._blob_cache_was_there:
            shutil.rmtree(BLOB_CACHE, ignore_errors=True)

    def __enter__(self) -> "Podman":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
