"""Notebook 10's views: each step as Docker and runc ask for it, and the same bundle under runc."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .. import ownership, rootfs
from ..errors import LabError
from ..process import CommandResult, run_command
from ..tables import Table

#: (what the lab runtime does, the docker command or flag, the config.json field).
STEPS = (
    ("root from image layers (overlay)", "docker run IMAGE", "root.path"),
    ("pid, net, ipc, uts, mnt namespaces", "default (--pid=host etc. share the host's)", "linux.namespaces"),
    ("propagation slave, then pivot_root", "always", "linux.rootfsPropagation + root.path"),
    ("/proc fresh, /sys read-only", "always", "mounts[/proc], mounts[/sys] (ro)"),
    ("minimal /dev: null zero full random urandom tty, pts, shm", "--device adds more", "mounts[/dev] + linux.devices"),
    ("/dev/null over files, ro tmpfs over dirs", "--security-opt systempaths=unconfined lifts it", "linux.maskedPaths"),
    ("/proc/sys, /proc/irq ... read-only", "the same flag", "linux.readonlyPaths"),
    ("hostname", "--hostname web", "hostname"),
    ("cgroup with memory / cpu / pids limits", "--memory 64m --cpus 0.5 --pids-limit 50", "linux.resources"),
    ("capabilities: Docker's default 14", "--cap-drop / --cap-add", "process.capabilities"),
    ("no_new_privs", "--security-opt no-new-privileges", "process.noNewPrivileges"),
    ("bridge + address + /etc/hosts", "docker network create; --network", "(not runc: the engine's network)"),
    ("proxy on 127.0.0.1:HOST -> PORT", "-p 127.0.0.1:8080:80", "(not runc: docker-proxy)"),
    ("exec: setns into its namespaces + cgroup", "docker exec", "runc exec"),
    ("stop: SIGTERM, SIGKILL after grace", "docker stop -t 10", "runc kill"),
)


def steps_table() -> Table:
    return Table(["the lab runtime does", "Docker", "runc config.json"], list(STEPS),
                 "Each step of the full container, as Docker and runc ask for it")


def runc_bundle(args: list[str]) -> Path:
    """runc's default bundle (``runc spec``) with a busybox root, terminal off and ``args`` to run.

    Its cgroup sits at an absolute path under the lab's parent: a relative one
    would land inside the caller's own group, which belongs to the machine.
    """
    if shutil.which("runc") is None:
        raise LabError("runc is not installed: `apt-get install runc` to compare with it.")
    bundle = ownership.temp_dir("runc")
    result = run_command(["runc", "spec", "--bundle", str(bundle)])
    if not result.ok:
        raise LabError(f"`runc spec` failed: {result.stderr.strip()}")
    shutil.copytree(rootfs.busybox_root(), bundle / "rootfs", symlinks=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=args)
    config["linux"]["cgroupsPath"] = f"/lab/{bundle.name}"
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle


def run_under_runc(bundle: str | os.PathLike) -> CommandResult:
    """``runc run`` the bundle to its end; runc's own state goes to a lab scratch directory."""
    from .. import hoststate, runc

    state = ownership.temp_dir("runcstate")
    parents = [root / ownership.PREFIX for root in hoststate.cgroup_mounts()
               if not (root / ownership.PREFIX).exists()]
    try:
        return run_command(["runc", "--root", str(state), "run", "--bundle", str(bundle),
                            Path(bundle).name], timeout=30)
    finally:
        shutil.rmtree(state, ignore_errors=True)
        runc._remove_empty(parents)  # runc leaves the parents of its group behind
