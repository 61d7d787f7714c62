"""The supervisor of one container (what containerd-shim is to runc), run as
``python -m labsupport.container.shim STATE_DIR``.

It lives in its own session, so the container survives the notebook or CLI
that started it; it forks the container with labsupport.process, sets up the
host side (cgroup, network, published ports) while the container waits before
exec, records the state, and undoes the host side when the container ends.
"""
from __future__ import annotations

import ipaddress
import os
import select
import sys
import time
from pathlib import Path
from typing import Any

from .. import hoststate, net, portproxy, process
from ..errors import LabError
from . import hardening, runtime
from .spec import Spec

BRIDGE = "labctr0"
SUBNET = ipaddress.ip_network("10.89.0.0/24")


def _cgroup(container_id: str, spec: Spec) -> Any:
    """A group at <hierarchy>/lab/lab<id>, with the spec's limits (labsupport.cgroups maps v1/v2)."""
    from .. import cgroups
    res = spec.resources
    wanted = {"memory": res.memory, "cpu": res.cpu_quota or res.cpu_shares, "pids": res.pids}
    group = cgroups.create(f"lab{container_id}", [c for c, v in wanted.items() if v] or None)
    if res.memory is not None:
        group.limit_memory(res.memory)
    if res.cpu_quota is not None:
        group.limit_cpu(res.cpu_quota / (res.cpu_period or 100_000))
    if res.cpu_shares is not None:
        # shares (2..262144, default 1024) to weight (1..10000): the formula runc and systemd use
        group.weight_cpu(max(1, min(10000, 1 + (res.cpu_shares - 2) * 9999 // 262142)))
    if res.pids is not None:
        group.limit_pids(res.pids)
    return group


def _bind_sources(spec: Spec) -> dict[str, int]:
    """Bind mount sources opened now: after pivot_root the host's paths are out of reach."""
    return {m.destination: os.open(m.source, os.O_PATH | os.O_CLOEXEC)
            for m in spec.mounts if m.type == "bind"}


def _init_pid(child: process.Child, spec: Spec) -> int:
    """The container's PID 1 as the host numbers it: the child's own child in a new PID namespace."""
    if "pid" not in spec.namespaces:
        return child.pid
    kids = Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()
    return int(kids[0])


def _running_peers(me: str) -> list[dict[str, Any]]:
    return [c for c in runtime.list_containers() if c.get("status") == "running"
            and c.get("address") and c.get("id") != me]


def _free_address(me: str) -> str:
    used = {c["address"] for c in _running_peers(me)}
    for host in list(SUBNET.hosts())[1:]:
        if str(host) not in used:
            return str(host)
    raise LabError("The lab's container network is full: stop some containers.")


def _write_hosts(entries: list[tuple[str, str]], root: str) -> None:
    lines = ["127.0.0.1 localhost"] + [f"{address} {name}" for address, name in entries]
    etc = Path(root) / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "hosts").write_text("\n".join(lines) + "\n")


def _update_hosts(me: dict[str, Any]) -> None:
    """Every running container lists every other by name (Docker's embedded DNS, the simple way)."""
    everyone = _running_peers(me["id"]) + [me]
    entries = [(c["address"], c["name"]) for c in everyone]
    for c in everyone:
        _write_hosts(entries, c["root"])


def _network(directory: Path, pid: int) -> dict[str, Any]:
    """Name the container's network namespace, plug it into the lab bridge, publish its ports.

    Each piece is written to state.json as soon as it exists, so a failure
    half-way (a host port in use) can still be undone.
    """
    state = runtime.write_state(directory, netns=net.attach_namespace(pid, f"labc{directory.name[:8]}"))
    if BRIDGE not in hoststate.links():
        net.add_bridge(BRIDGE)
    address = _free_address(state["id"])
    net.plug(state["netns"], BRIDGE, f"{address}/{SUBNET.prefixlen}")
    for host_address, host_port, port in state.get("publish", []):
        portproxy.publish(state["netns"], port, host_port, host_address)
    return runtime.write_state(directory, address=address)


def _undo_network(state: dict[str, Any]) -> None:
    for host_address, host_port, _ in state.get("publish", []):
        try:
            portproxy.unpublish(host_port, host_address)
        except LabError:
            pass
    if state.get("netns"):
        try:
            net.remove_namespace(state["netns"])
        except LabError:
            pass
    if not _running_peers(state.get("id", "")) and BRIDGE in hoststate.links():
        try:
            net.delete_link(BRIDGE)
        except LabError:
            pass


def _start_child(directory: Path, spec: Spec, group: Any) -> tuple[process.Child, int, int]:
    """Fork the container; returns once its mounts are made and it waits for the go-ahead:
    the child, the go pipe and the container's PID 1."""
    log_fd = os.open(directory / "container.log", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    sources = _bind_sources(spec)
    iso = process.Isolation.make(
        namespaces=spec.namespaces, root=spec.root, pivot="mnt" in spec.namespaces,
        hostname=spec.hostname if "uts" in spec.namespaces else None,
        mount_proc="mnt" in spec.namespaces, uid_map=spec.uid_map, gid_map=spec.gid_map,
        propagation="slave" if "mnt" in spec.namespaces else "private",
        cgroup_procs=group.procs_files)
    child = process.Child(lambda: hardening.run_init(spec, log_fd, ready_w, go_r, sources), iso)
    for fd in [log_fd, ready_w, go_r, *sources.values()]:
        os.close(fd)
    if not select.select([ready_r], [], [], 15)[0] or os.read(ready_r, 1) != b"r":
        child.kill()
        child.wait(5)
        outcome = child.outcome()
        os.close(ready_r)
        raise outcome[1] if outcome and outcome[0] == "error" else \
            LabError(f"The container's first process ended before it was ready: {child.stderr.strip()}")
    os.close(ready_r)
    return child, go_w, _init_pid(child, spec)


def _wait_for_exec(pid: int, before: os.stat_result, seconds: float = 10) -> None:
    """Until PID 1 runs its program: /proc/PID/exe turns from this Python into it.

    A pipe closed on exec cannot tell: in a PID namespace the process
    waiting outside it holds a copy of every descriptor.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            now = os.stat(f"/proc/{pid}/exe")
        except OSError:
            return  # it ended (its exec failed): the log says why
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            return
        time.sleep(0.005)


def supervise(directory: Path) -> int:
    state = runtime.write_state(directory, shim_pid=os.getpid())
    container_id = state["id"]
    spec = runtime.load_spec(container_id)
    child = None
    try:
        group = _cgroup(container_id, spec)
        runtime.write_state(directory, cgroup=group.name)
        child, go_w, pid = _start_child(directory, spec, group)
        runtime.write_state(directory, pid=pid, group=child.pid)
        if "net" in spec.namespaces:
            _network(directory, pid)
        if "net" in spec.namespaces:
            _update_hosts(runtime._read_state(directory))
        before = os.stat(f"/proc/{pid}/exe")
        os.write(go_w, b"g")
        os.close(go_w)
        _wait_for_exec(pid, before)
        runtime.write_state(directory, status="running", started=time.time())
        code = child.wait(None)
        undo_host_side(runtime._read_state(directory))
        runtime.write_state(directory, status="exited", exit_code=code)
        return 0
    except BaseException as err:  # noqa: BLE001 - the starter reads the reason from state.json
        if child is not None:
            child.kill()
            child.wait(5)
        # The host side goes first: "exited" tells the starter it may remove the directory.
        undo_host_side(runtime._read_state(directory))
        runtime.write_state(directory, status="exited", error=str(err) if isinstance(err, LabError)
                            else f"The container could not start: {err!r}")
        return 1


def undo_host_side(state: dict[str, Any]) -> None:
    """Published ports, network namespace, the bridge if no one else uses it, the cgroup."""
    _undo_network(state)
    if state.get("cgroup"):
        from .. import cgroups
        try:
            group = cgroups.open_group(state["cgroup"])
            group.kill()
            group.remove()
        except LabError:
            pass


def main(directory: Path) -> int:
    """Fork once more and let the starter collect the first half: the shim then belongs to
    no notebook or CLI (init adopts it), and leaves no zombie behind in the one that started it."""
    if os.fork() > 0:
        return 0
    return supervise(directory)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
