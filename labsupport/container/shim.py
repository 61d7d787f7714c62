"""The supervisor of one container (what containerd-shim is to runc).

``launch`` forks it from the Python that starts the container - a fork, not a
new interpreter, because importing the lab and pyroute2 afresh cost a quarter
of a second per container. It lives in its own session, adopted by init, so
the container survives the notebook or CLI that started it; it forks the
container with labsupport.process, sets up the host side (cgroup, network,
published ports) while the container waits before exec, and records the state.

Once the container runs there is nothing left to do but wait, so the shim
execs the reaper (reaper.c, built once into the lab's cache): the same PID,
still the parent of the container's PID 1, a few hundred KiB where a Python
holds megabytes for the container's whole life. The reaper removes the
cgroups and records the exit code; a container on the bridge needs Python
for its network: the first lab process to see the container ended unplugs it. Where
gcc is missing, the Python shim waits and undoes the host side itself.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import select
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from labsupport import cgroups, ownership, process
from labsupport.container import hardening, store
from labsupport.container import plan as plans
from labsupport.container.plan import Plan
from labsupport.container.spec import Spec
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.process import programs, timeline

BRIDGE = "labctr0"
SUBNET = ipaddress.ip_network("10.89.0.0/22")  # 1021 containers: room to measure 500 at once


def cgroup_name(container_id: str) -> str:
    """lab<id>, cut to the 64 characters a lab group's name may have (an engine's ids are 64 long)."""
    return f"lab{container_id}"[:64]


def _cgroup(container_id: str, spec: Spec, every_controller: bool = False) -> Any:
    """A group at <hierarchy>/lab/lab<id>, with the spec's limits (labsupport.cgroups maps v1/v2):
    in the hierarchies of the controllers it limits, or - as runc does - of every one the lab knows."""
    res = spec.resources
    wanted = {"memory": res.memory, "cpu": res.cpu_quota or res.cpu_shares, "pids": res.pids,
              "io": res.io, "devices": True}
    controllers = None if every_controller else [c for c, v in wanted.items() if v]
    group = cgroups.create(cgroup_name(container_id), controllers)
    group.set_device_policy(res.devices)
    if res.memory is not None:
        group.limit_memory(res.memory)
    if res.cpu_quota is not None:
        group.limit_cpu(res.cpu_quota / (res.cpu_period or 100_000))
    if res.cpu_shares is not None:
        group.share_cpu(res.cpu_shares)
    if res.pids is not None:
        group.limit_pids(res.pids)
    for device, (read, write) in res.io.items():
        group.limit_io(device, read, write)
    return group


def _running_peers(me: str, everyone: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every other running container on the bridge; ``everyone`` is a listing taken already
    (a listing reads every container's state: at hundreds of containers, once is enough)."""
    return [c for c in (store.list_containers() if everyone is None else everyone)
            if c.get("status") == "running" and c.get("address") and c.get("id") != me]


def _on_the_bridge(me: str, everyone: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every other container holding an address: starting, running, or ended and not yet
    unplugged (its veth may still answer for that address)."""
    return [c for c in (store.list_containers() if everyone is None else everyone)
            if c.get("address") and c.get("id") != me]


@contextmanager
def _bridge_lock() -> Iterator[None]:
    """One shim at a time plugs into the bridge or unplugs: two starting at once would take
    the same address, and two ending at once would each leave the bridge to the other."""
    ownership.STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(ownership.STATE_DIR / f"{BRIDGE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _free_address(me: str, everyone: list[dict[str, Any]]) -> str:
    used = {c["address"] for c in _on_the_bridge(me, everyone)}
    hosts = SUBNET.hosts()
    next(hosts)  # the first address stays free for a gateway
    for host in hosts:
        if str(host) not in used:
            return str(host)
    raise LabError("The lab's container network is full: stop some containers.")


def _write_hosts(entries: list[tuple[str, str]], root: str) -> None:
    """The container's /etc/hosts, written from the host without following the root's links out."""
    lines = ["127.0.0.1 localhost"] + [f"{address} {name}" for address, name in entries]
    try:
        syscalls.write_in_root(root, "/etc/hosts", ("\n".join(lines) + "\n").encode())
    except (LabError, OSError) as err:
        # One container's odd root (its /etc a file, its disk full) must not stop another's start.
        print(f"could not write {root}/etc/hosts: {err}", file=sys.stderr)


def _names(peer: dict[str, Any], reader: dict[str, Any]) -> str:
    """A peer's names as ``reader`` sees them: its own, plus its service's name when both belong
    to one compose project (state keys ``project`` and ``service``, written by labsupport.compose)."""
    if peer.get("project") and peer.get("project") == reader.get("project") and peer.get("service"):
        return f"{peer['name']} {peer['service']}"
    return peer["name"]


def _update_hosts(me: dict[str, Any], listing: list[dict[str, Any]] | None = None) -> None:
    """Every running container lists every other by name (Docker's embedded DNS, the simple way)."""
    everyone = _running_peers(me["id"], listing) + [me]
    for c in everyone:
        _write_hosts([(peer["address"], _names(peer, c)) for peer in everyone], c["root"])


def refresh_hosts() -> None:
    """Rewrite every running container's /etc/hosts: after a removal no peer keeps its address."""
    running = _running_peers("")
    if running:
        _update_hosts(running[0])


def _network(directory: Path, pid: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Name the container's network namespace and plug it into the lab bridge; returns its
    state and the listing of every container taken under the bridge lock.

    Each piece is written to state.json as soon as it exists, so a failure
    half-way can still be undone. Containers that ended since the last start
    are unplugged first: their reapers leave the network to the lab's Python.
    """
    from labsupport import net  # pyroute2's kin: only containers on the bridge pay for it
    state = store.write_state(directory, netns=net.attach_namespace(pid, f"labc{directory.name[:8]}"))
    with _bridge_lock():
        everyone = store.list_containers()
        for ended in everyone:
            if ended.get("status") == "exited" and ended.get("address") and ended.get("id") != state["id"]:
                _unplug(ended)
        if BRIDGE not in hoststate.links():
            net.add_bridge(BRIDGE)
        address = _free_address(state["id"], everyone)
        net.plug(state["netns"], BRIDGE, f"{address}/{SUBNET.prefixlen}")
        state = store.write_state(directory, address=address)
    return state, everyone


def _publish(state: dict[str, Any]) -> None:
    from labsupport.net import (
        publish as portproxy,  # asyncio: imported only by containers that publish
    )

    for host_address, host_port, port in state.get("publish", []):
        portproxy.publish(state["netns"], port, host_port, host_address)


def _unplug(state: dict[str, Any]) -> None:
    """Published ports, then the network namespace (its veth goes with it); the caller holds
    the bridge lock. Safe to repeat: what is gone already is skipped."""
    from labsupport.net import run as netrun
    for host_address, host_port, _ in state.get("publish", []):
        from labsupport.net import publish as portproxy
        try:
            portproxy.unpublish(host_port, host_address)
        except LabError:
            pass
    if state.get("netns"):
        try:
            netrun.remove_namespace(state["netns"])
        except LabError:
            pass
    directory = store.container_dir(state.get("id", ""))
    if (directory / "state.json").exists():
        store.write_state(directory, address=None, unplugged=True)
    state.update(address=None, unplugged=True)  # a listing in hand says so too


def _undo_network(state: dict[str, Any]) -> None:
    if state.get("unplugged") or not (state.get("publish") or state.get("netns") or state.get("address")):
        return  # never plugged in (network none or host), or unplugged already: no lock to take
    from labsupport import net
    with _bridge_lock():
        _unplug(state)
        if not _on_the_bridge(state.get("id", "")) and BRIDGE in hoststate.links():
            try:
                net.delete_link(BRIDGE)
            except LabError:
                pass


@dataclass
class _Run:
    """One container on its way up: what the host steps share."""

    directory: Path
    spec: Spec
    plan: Plan
    group: Any = None
    own_pid_ns: int = -1      # the shim's PID namespace, while it makes one for its next child
    child: process.Child | None = None
    pid: int = 0
    ready_r: int = -1
    go_w: int = -1
    exec_r: int = -1
    stdio: tuple[int, int, int] | None = None  # labsupport oci: the caller's; None: /dev/null, the log
    start_fifo: int = -1   # labsupport oci: the go-ahead comes through this fifo, from `start`
    more_groups: tuple[Path, ...] = ()  # labsupport oci: cgroup.procs of groups it owns (the freezer)


def _create_cgroup(run: _Run) -> None:
    run.group = _cgroup(run.directory.name, run.spec, every_controller=run.plan.detached)
    store.write_state(run.directory, cgroup=run.group.name)


def _make_pid_namespace(run: _Run) -> None:
    """unshare(CLONE_NEWPID) moves only the caller's future children: the next child forked
    here is PID 1 of a new PID namespace, with no process between. The kernel then refuses
    the shim any new *thread* - and the network code needs one - so the fork goes back."""
    run.own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    syscalls.unshare(syscalls.CLONE_NEWPID)


def _fork_first_process(run: _Run) -> None:
    """Fork the container; it takes the plan's steps up to "ready", then waits for the go-ahead."""
    spec, plan = run.spec, run.plan
    log_fd = -1 if run.stdio else \
        os.open(run.directory / "container.log", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    run.ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    if run.start_fifo >= 0:
        go_r = run.start_fifo
    else:
        go_r, run.go_w = os.pipe2(os.O_CLOEXEC)
    run.exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
    iso = plans.isolation(spec, [*run.group.procs_files, *run.more_groups], plan.detached, run.stdio,
                          [fd for fd in (log_fd, ready_w, go_r, exec_w) if fd >= 0])
    if process.steps_for(iso) != plan.names(plans.BEFORE_PIVOT):
        raise LabError("The container's plan and the child runner disagree on the steps before "
                       "pivot_root: this is a bug in the lab.")
    inside = plan.names(plans.AFTER_PIVOT)
    try:
        run.child = process.Child(lambda: hardening.run_init(inside, spec, log_fd, ready_w, go_r), iso)
    finally:
        if run.own_pid_ns >= 0:
            syscalls.setns(run.own_pid_ns, syscalls.CLONE_NEWPID, "/proc/self/ns/pid")
            os.close(run.own_pid_ns)
            run.own_pid_ns = -1
        for fd in [log_fd, ready_w, go_r, exec_w]:
            if fd >= 0:
                os.close(fd)


def _move_into_cgroup(run: _Run) -> None:
    # While the child mounts: joining a cgroup waits for an RCU grace period (about 10 ms),
    # and the two overlap. It cannot exec before "go", which comes after.
    try:
        run.group.add(run.child.pid)  # type: ignore[union-attr]
        for procs in run.more_groups:
            procs.write_text(str(run.child.pid))  # type: ignore[union-attr]
    except (LabError, OSError):
        pass  # it ended already: its own error is read when it is not ready


def _wait_until_ready(run: _Run) -> None:
    child = run.child
    assert child is not None
    ready = select.select([run.ready_r], [], [], 15)[0] and os.read(run.ready_r, 1) == b"r"
    os.close(run.ready_r)
    if not ready:
        child.kill()
        child.wait(5)
        outcome = child.outcome()
        raise outcome[1] if outcome and outcome[0] == "error" else \
            LabError(f"The container's first process ended before it was ready: {child.stderr.strip()}")
    run.pid = _init_pid(child)
    store.record_processes(run.directory, pid=run.pid, group=child.pid)


def _plug_in(run: _Run) -> None:
    state, everyone = _network(run.directory, run.pid)
    _update_hosts(state, everyone)


def _give_go_ahead(run: _Run) -> None:
    """Then wait until PID 1 runs its program: the only other copy of the exec pipe's write
    end is closed by exec (or by the process ending, when its exec failed: the log says why)."""
    os.write(run.go_w, b"g")
    os.close(run.go_w)
    select.select([run.exec_r], [], [], 10)
    os.close(run.exec_r)
    store.write_state(run.directory, status="running", started=time.time())


#: What each of the plan's host steps does (labsupport.container.plan orders them).
HOST_ACTIONS: dict[str, Callable[[_Run], None]] = {
    "create the cgroup and set its limits": _create_cgroup,
    "make a PID namespace for the next child": _make_pid_namespace,
    "fork the container's first process": _fork_first_process,
    "move the first process into the cgroup": _move_into_cgroup,
    "wait until it is ready": _wait_until_ready,
    "plug into the lab bridge, with an address and /etc/hosts": _plug_in,
    "publish ports on the host": lambda run: _publish(store.read_state(run.directory)),
    "give the go-ahead": _give_go_ahead,
}


def _init_pid(child: process.Child) -> int:
    """The container's PID 1 as the host numbers it: the child itself, or - where the child
    made the PID namespace - the child's only child."""
    if "pid" not in child.iso.namespaces:
        return child.pid
    return int(Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()[0])


def container_plan(state: dict[str, Any], spec: Spec) -> Plan:
    """The plan of the container a state.json describes."""
    return plans.plan(spec, state.get("network", "bridge"), publish=bool(state.get("publish")))


def create_waiting(directory: Path, spec: Spec, stdio: tuple[int, int, int], start_fifo: int,
                   more_groups: tuple[Path, ...] = ()) -> Plan:
    """``labsupport oci create``: the plan's host steps up to the go-ahead, and no shim.

    The first process is left waiting, its namespaces and mounts made, on
    ``start_fifo`` (a FIFO's read end): ``start`` writes the go-ahead into it. It
    keeps the caller's ``stdio`` and outlives the caller, whose orphan it becomes
    for the engine's subreaper (conmon) or init to reap - as runc's is.
    """
    run = _Run(directory, spec, plans.plan(spec, "none", detached=True), stdio=stdio,
               start_fifo=start_fifo, more_groups=more_groups)
    try:
        for name in run.plan.names(plans.HOST):
            if name == "give the go-ahead":
                break
            HOST_ACTIONS[name](run)
    except BaseException:
        if run.child is not None:
            run.child.kill()
            run.child.wait(5)
        undo_host_side(store.read_state(directory))
        raise
    finally:
        if run.exec_r >= 0:
            os.close(run.exec_r)
    return run.plan


def supervise(directory: Path, report_w: int) -> int:
    """Run the container's plan, then the container to its end; one byte on ``report_w``
    once it runs (or failed to)."""
    state = store.record_processes(directory, shim_pid=os.getpid())
    spec = store.load_spec(state["id"])
    run = _Run(directory, spec, container_plan(state, spec))
    try:
        for name in run.plan.names(plans.HOST):
            timeline.mark(name)
            HOST_ACTIONS[name](run)
        _report(report_w)
        _hand_over_to_the_reaper(run)  # returns only where the reaper is not built
        code = run.child.wait(None)  # type: ignore[union-attr]
        timeline.mark("undo the host side")
        undo_host_side(store.read_state(directory))
        store.write_state(directory, status="exited", exit_code=code)
        timeline.mark("the shim ends")
        return 0
    except BaseException as err:  # noqa: BLE001 - the starter reads the reason from state.json
        if run.child is not None:
            run.child.kill()
            run.child.wait(5)
        # The host side goes first: "exited" tells the starter it may remove the directory.
        undo_host_side(store.read_state(directory))
        store.write_state(directory, status="exited", error=str(err) if isinstance(err, LabError)
                          else f"The container could not start: {err!r}")
        _report(report_w)
        return 1


#: The C program this shim becomes once the container runs (labsupport.process.programs).
REAPER = Path(__file__).with_name("reaper.c")


def reaper() -> Path | None:
    """The reaper, built into the lab's cache (once per version); None where gcc is missing
    - the shim then stays in Python for the container's life, as it did before the reaper."""
    try:
        return programs.build(REAPER)
    except LabError:
        return None


def _hand_over_to_the_reaper(run: _Run) -> None:
    """exec the reaper: the same PID, still the parent of the container's PID 1, a few hundred
    KiB instead of this Python's megabytes for as long as the container lives.

    It removes the cgroups itself; a container's network needs Python, so the
    first lab process to see the container ended unplugs it: ``wait``, ``remove``,
    ``clean``, or the next container's shim before it takes an address.
    """
    program = programs.built(REAPER)
    if program is None or run.child is None:
        return
    argv = [str(program), str(run.child.pid), str(run.directory)]
    for directory in run.group.directories:
        argv += ["--cgroup", str(directory)]
    for pid in (os.getpid(), run.child.pid):
        argv += ["--forget", str(ownership.PROCS_DIR / str(pid))]
    timeline.mark("hand over to the reaper")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, {**os.environ, ownership.MARKER_ENV: "1"})


def unplug_if_ended(state: dict[str, Any]) -> None:
    """Take an ended container off the bridge (its reaper cannot); nothing if it never was on."""
    if state.get("status") == "exited":
        _undo_network(state)


def _report(report_w: int) -> None:
    try:
        os.write(report_w, b"s")
        os.close(report_w)
    except OSError:
        pass  # reported already, or the starter is gone: state.json says it all


def undo_host_side(state: dict[str, Any]) -> None:
    """Published ports, network namespace, the bridge if no one else uses it, the cgroup."""
    _undo_network(state)
    if state.get("cgroup"):
        try:
            group = cgroups.open_group(state["cgroup"])
            group.kill()
            group.remove()
        except LabError:
            pass


#: Shims this process forked and has not collected yet: each is reaped once it has ended.
_LAUNCHED: list[int] = []


def launch(directory: Path) -> int:
    """Fork the shim for the container in ``directory``; returns a pipe that gets one byte
    once the container runs (or failed to start) - EOF alone means the shim died.

    Forked once, into a session of its own: it outlives the notebook or CLI that
    started it (init adopts it then). Until then it is that process's child, and
    the lab's next call collects it once it has ended (``collect_shims``) - the
    second fork of a daemon, which spares that, cost more than a tenth of a whole
    start (bench containers, measured side by side).
    """
    collect_shims()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            _become_shim(directory, report_w)
        finally:
            os._exit(0)
    os.close(report_w)
    _LAUNCHED.append(pid)
    return report_r


def collect_shims(ending: Iterable[int | None] = (), within: float = 5.0) -> None:
    """Reap the shims this process forked whose containers have ended (no zombie stays);
    ``ending`` are shims just told to end (``launched()`` for all): wait up to ``within``
    seconds for them."""
    ending = set(ending)
    deadline = time.monotonic() + within
    for pid in list(_LAUNCHED):
        while True:
            try:
                ended = os.waitpid(pid, os.WNOHANG)[0] == pid
            except ChildProcessError:
                ended = True  # not ours to collect any more
            if ended or pid not in ending or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if ended:
            _LAUNCHED.remove(pid)


def launched() -> list[int]:
    """The shims this process forked and has not collected yet."""
    return list(_LAUNCHED)


def _become_shim(directory: Path, report_w: int) -> None:
    """The shim's life in the forked copy of its starter; never returns (a forked
    Jupyter kernel or pytest must not run their exit hooks)."""
    code = 1
    try:
        log = os.open(directory / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # Nothing of the starter's: its sockets, pipes and terminals stay with it.
        os.closerange(3, report_w)
        os.closerange(report_w + 1, 65536)
        sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)
        syscalls.set_process_name("lab-shim")
        timeline.begin(directory / store.TIMELINE)
        timeline.mark("the shim begins")
        ownership.register_process(os.getpid())
        code = supervise(directory, report_w)
    except BaseException:  # noqa: BLE001 - nothing above may reach the starter's handlers
        import traceback
        traceback.print_exc()
    finally:
        ownership.unregister_process(os.getpid())
        os._exit(code)

