"""Notebook 10's view: each step of the full container as Docker and runc ask for it."""
from __future__ import annotations

from labsupport.kernel.tables import Table

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
    ("user namespace, if asked: root inside = uid 100000", "dockerd --userns-remap",
     "linux.namespaces[user] + uidMappings"),
    ("seccomp: a deny-list filter, installed last", "default; --security-opt seccomp=unconfined",
     "linux.seccomp"),
    ("bridge + address + /etc/hosts", "docker network create; --network", "(not runc: the engine's network)"),
    ("proxy on 127.0.0.1:HOST -> PORT", "-p 127.0.0.1:8080:80", "(not runc: docker-proxy)"),
    ("exec: setns into its namespaces + cgroup", "docker exec", "runc exec"),
    ("stop: SIGTERM, SIGKILL after grace", "docker stop -t 10", "runc kill"),
)


def steps_table() -> Table:
    return Table(["the lab runtime does", "Docker", "runc config.json"], list(STEPS),
                 "Each step of the full container, as Docker and runc ask for it")
