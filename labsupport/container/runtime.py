"""A container's life: create, start, exec, stop, kill, remove - with its state on disk.

Why a state directory and a shim: a container started from a notebook must
be listed and stopped from the CLI or another notebook, and must not die
with the Python that started it. So ``start`` forks a small supervisor
(the shim, containerd-shim's job) into its own session; the shim forks the
container through labsupport.process, keeps
/run/labsupport/containers/<id>/state.json up to date and cleans up the
host side (cgroup, network, published ports) when the container ends.
The container's processes carry the lab's marker and the shim is registered,
so ``clean`` finds a container left by a dead kernel.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from labsupport import ownership, process
from labsupport.cgroups.devices import parse_rule
from labsupport.container import hardening, shim, store
from labsupport.container import plan as plans
from labsupport.container import seccomp as seccomp_profiles
from labsupport.container import spec as specs
from labsupport.container.spec import Spec
from labsupport.kernel.errors import LabError, require_root
from labsupport.kernel.tables import Table
from labsupport.namespaces import rootfs
from labsupport.process import timeline

if TYPE_CHECKING:
    from labsupport.namespaces import chroot

NETWORKS = ("bridge", "none", "host")
#: ``--userns-remap``'s id map: 65536 ids from 100000 on the host, 0 the first of them inside.
REMAP = "0 100000 65536"


@dataclass(frozen=True)
class Publish:
    host_address: str
    host_port: int
    port: int

    @classmethod
    def parse(cls, text: str) -> "Publish":
        """'127.0.0.1:8080:80', '8080:80' (on 127.0.0.1) - docker run -p's forms that stay local."""
        parts = text.split(":")
        try:
            if len(parts) == 2:
                return cls("127.0.0.1", int(parts[0]), int(parts[1]))
            if len(parts) == 3:
                return cls(parts[0], int(parts[1]), int(parts[2]))
        except ValueError:
            pass
        raise LabError(f"Cannot read the port mapping {text!r}: write HOST_PORT:PORT or "
                       "127.0.0.1:HOST_PORT:PORT.")


# -- root file systems -----------------------------------------------------------

def prepare_root(image: str, directory: Path) -> tuple[Path, dict[str, Any]]:
    """The container's root from an image (an overlay over its layers) and the image's config.

    The lab's image store (labsupport.images) is used when it works here; the
    plain busybox root is the fallback only for the image name 'busybox'.
    """
    try:
        from labsupport import images
        if image in ("busybox", "busybox:latest"):
            images.build_busybox_base()
        found = images.get(image)
        root = images.prepare_rootfs(image, directory)
        cfg = found.config
        return root, {"cmd": list(cfg.cmd or []), "env": dict(cfg.env or {}),
                      "workdir": cfg.workdir or "/", "image_id": found.id}
    except LabError:
        if image not in ("busybox", "busybox:latest"):
            raise LabError(f"There is no image {image!r}: build or import it first "
                           "(labsupport.images.list_images() lists them).") from None
    root = directory / "rootfs"
    shutil.copytree(rootfs.busybox_root(), root, symlinks=True)
    return root, {"cmd": ["/bin/sh"], "env": {"PATH": "/bin:/sbin:/usr/bin:/usr/sbin"},
                  "workdir": "/", "image_id": "busybox-root"}


def _release_root(directory: Path) -> None:
    try:
        from labsupport import images
        images.release_rootfs(directory)
    except (LabError, ImportError, OSError):
        pass


# -- create / start ----------------------------------------------------------------

def _new_id() -> str:
    return os.urandom(6).hex()


def _check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "_.-" for c in name) or len(name) > 40:
        raise LabError(f"{name!r} is not a usable container name: use up to 40 letters, digits, "
                       "'_', '.' or '-'.")
    if name in store.names_in_use():
        raise LabError(f"The name {name!r} is in use by another container: remove it "
                       f"(`python -m labsupport rm {name}`) or pick another name.")
    return name


def _device_rates(rules: Sequence[str], flag: str) -> dict[str, int | None]:
    """Docker's ``--device-read-bps /dev/loop0:1M`` -> {"MAJ:MIN": bytes per second}."""
    from labsupport.cgroups import api, limits
    rates = {}
    for rule in rules:
        device, _, rate = rule.rpartition(":")
        if not device or not rate:
            raise LabError(f"{flag} {rule!r}: write it as DEVICE:RATE, e.g. /dev/loop0:1M.")
        rates[api.device_number(device)] = limits.parse_rate(rate)
    return rates


def _limits(memory: str | None, cpus: float | None, pids: int | None,
            cpu_shares: int | None = None, device_read_bps: Sequence[str] = (),
            device_write_bps: Sequence[str] = ()) -> specs.Resources:
    from labsupport.cgroups import limits
    res = specs.Resources()
    reads = _device_rates(device_read_bps, "--device-read-bps")
    writes = _device_rates(device_write_bps, "--device-write-bps")
    res.io = {device: (reads.get(device), writes.get(device)) for device in {**reads, **writes}}
    if cpu_shares is not None:
        if not 2 <= cpu_shares <= 262144:
            raise LabError(f"--cpu-shares {cpu_shares} must be between 2 and 262144 (1024 is the default).")
        res.cpu_shares = cpu_shares
    if memory is not None:
        res.memory = limits.parse_size(memory)
    if cpus is not None:
        if cpus <= 0:
            raise LabError(f"--cpus {cpus} must be more than 0 (0.5 is half a core).")
        res.cpu_period = 100_000
        res.cpu_quota = int(cpus * 100_000)
    if pids is not None:
        if pids <= 0:
            raise LabError(f"--pids {pids} must be a positive number of processes.")
        res.pids = pids
    return res


def create(image: str = "busybox", command: Sequence[str] = (), name: str | None = None,
           publish: Sequence[str] = (), memory: str | None = None, cpus: float | None = None,
           pids: int | None = None, env: dict[str, str] | None = None,
           hostname: str | None = None, network: str = "bridge", cpu_shares: int | None = None,
           seccomp: bool = True, device_read_bps: Sequence[str] = (),
           device_write_bps: Sequence[str] = (), userns: bool = False,
           device_rules: Sequence[str] = (), cap_add: Sequence[str] = (),
           no_new_privileges: bool = True, mask_paths: bool = True) -> str:
    """Make a container from an image, not started yet (``docker create``); returns its id.

    ``cpu_shares`` is ``docker run --cpu-shares``: a weight for a busy core, not
    a cap. ``network`` is Docker's ``--network``: "bridge" (an address on the
    lab bridge, the others' names, published ports), "none" (a network
    namespace with only lo) or "host" (the host's own network). ``seccomp``
    False is Docker's ``--security-opt seccomp=unconfined``: no filter.
    ``device_read_bps`` / ``device_write_bps`` cap a block device's bandwidth,
    as Docker's flags do: ["/dev/loop0:1M"]. ``device_rules`` is Docker's
    ``--device-cgroup-rule``: more devices the container may open than the
    default list (["c 10:237 rw"]; ["a *:* rwm"] opens them all). ``cap_add`` is
    ``--cap-add`` (["CAP_NET_ADMIN"], or ["ALL"]). ``no_new_privileges`` False lets
    a setuid program raise privileges again (the lab sets it by default; Docker
    only with ``--security-opt no-new-privileges``). ``mask_paths`` False leaves
    /proc/kcore, /proc/interrupts and the others unmasked. ``userns`` remaps the container's
    users as ``dockerd --userns-remap`` does: root inside is uid 100000 outside,
    and the image's files (owned by the host's root) read as nobody's.
    """
    require_root("Creating a container")
    if network not in NETWORKS:
        raise LabError(f"Unknown network {network!r}: choose from {', '.join(NETWORKS)}.")
    if publish and network != "bridge":
        raise LabError(f"Publishing a port needs the bridge network, not {network!r}.")
    ports = [Publish.parse(p) for p in publish]
    resources = _limits(memory, cpus, pids, cpu_shares, device_read_bps, device_write_bps)
    for rule in device_rules:
        resources.devices.allow(parse_rule(rule))
    container_id = _new_id()
    name = _check_name(name or f"box-{container_id[:6]}")
    directory = store.make_container_dir(container_id, _remapped_root(REMAP) if userns else None)
    timeline.note(directory / store.TIMELINE, "create: the root from the image")
    try:
        root, config = prepare_root(image, directory)
        args = list(command) or config["cmd"]
        if not args:
            raise LabError(f"The image {image!r} names no command: give one after the image.")
        merged_env = {**config["env"], **(env or {})}
        spec = Spec(args=args, env=[f"{k}={v}" for k, v in merged_env.items()],
                    cwd=config["workdir"], root=str(root), hostname=hostname or name,
                    namespaces=["pid", "ipc", "uts", "mnt"] + (["net"] if network != "host" else [])
                    + (["user"] if userns else []),
                    uid_map=REMAP if userns else None, gid_map=REMAP if userns else None,
                    resources=resources, capabilities=_capabilities(cap_add),
                    no_new_privileges=no_new_privileges,
                    masked_paths=specs.DEFAULT_MASKED if mask_paths else (),
                    seccomp=seccomp_profiles.DEFAULT if seccomp else None)
        return _save(directory, spec, name, image, ports, network)
    except BaseException:
        _release_root(directory)
        shutil.rmtree(directory, ignore_errors=True)
        raise


def create_bundle(bundle: str | os.PathLike, name: str | None = None,
                  publish: Sequence[str] = ()) -> str:
    """Make a container from an OCI bundle (DIR/config.json + its root), as ``runc create`` does."""
    require_root("Creating a container")
    spec = specs.load(bundle)
    if not Path(spec.root).is_dir():
        raise LabError(f"The bundle's root {spec.root} is missing: put the root file system there.")
    ports = [Publish.parse(p) for p in publish]
    container_id = _new_id()
    name = _check_name(name or f"box-{container_id[:6]}")
    directory = store.make_container_dir(container_id, _remapped_root(spec.uid_map) if spec.uid_map else None)
    spec.hostname = spec.hostname if "uts" in spec.namespaces else None
    return _save(directory, spec, name, f"bundle:{Path(bundle).resolve()}", ports)


def _capabilities(added: Sequence[str]) -> tuple[str, ...]:
    """Docker's default capabilities plus ``added`` ("ALL": every one the lab knows)."""
    if any(name.upper() == "ALL" for name in added):
        return tuple(f"CAP_{name}" for name in hardening.CAPABILITIES)
    hardening.capability_mask(added)  # refuses an unknown name in one sentence
    names = [f"CAP_{n.upper().removeprefix('CAP_')}" for n in added]
    return tuple(dict.fromkeys([*specs.DEFAULT_CAPABILITIES, *names]))


def _remapped_root(uid_map: str) -> int | None:
    """The host uid that root inside stands for, under a user namespace's map ("0 100000 65536")."""
    for line in uid_map.splitlines():
        inside, outside, _ = (int(x) for x in line.split())
        if inside == 0:
            return outside
    return None


def _save(directory: Path, spec: Spec, name: str, image: str, ports: list[Publish],
          network: str = "bridge") -> str:
    timeline.note(directory / store.TIMELINE, "create: write the spec and the state")
    for sub in ("proc", "sys", "dev"):
        (Path(spec.root) / sub).mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(spec.to_json(), indent=1))
    (directory / "container.log").touch()
    store.write_state(directory, id=directory.name, name=name, image=image, status="created",
                created=time.time(), root=spec.root, network=network,
                publish=[[p.host_address, p.host_port, p.port] for p in ports])
    return directory.name


def start(ref: str, timeout: float = 20) -> dict[str, Any]:
    """Start a created container: the shim runs it; returns once the program has been exec'd."""
    directory = store.find(ref)
    current = store.state(ref)
    if current.get("status") != "created":
        raise LabError(f"The container {current.get('name')} is {current.get('status')}; only a "
                       "created container can start (run a new one).")
    if current.get("network", "bridge") == "bridge":
        from labsupport import net
        net.preload()  # once here, rather than in every shim
    shim.reaper()  # built once per machine, here in the caller: the shim only looks for it
    timeline.note(directory / store.TIMELINE, "start: fork the shim")
    report_r = shim.launch(directory)
    try:
        select.select([report_r], [], [], timeout)
    finally:
        os.close(report_r)
    timeline.note(directory / store.TIMELINE, "start: the caller hears it runs")
    current = store.read_state(directory)
    if current.get("status") in ("running", "exited"):
        if current.get("error"):
            raise LabError(current["error"])
        return current
    raise LabError(f"The container {current.get('name')} did not start within {timeout} s: "
                   f"see {directory / 'shim.log'}.")


def plan_of(ref: str) -> plans.Plan:
    """The plan a container runs (or ran): its steps in order, each with what asks for it."""
    return shim.container_plan(store.state(ref), store.load_spec(ref))


def bundle_plan(bundle: str | os.PathLike) -> plans.Plan:
    """The plan the lab would run for an OCI bundle (``runc run --bundle DIR``), nothing started;
    a bundle that asks for a terminal is drawn as it would run detached (the lab has none)."""
    return plans.plan(specs.load(bundle, detached=True))


def _start_or_remove(container_id: str) -> str:
    """Start a just-created container; a failed start leaves nothing."""
    try:
        start(container_id)
    except BaseException:
        remove(container_id, force=True)
        raise
    return container_id


def run(image: str = "busybox", command: Sequence[str] = (), **options: Any) -> str:
    """create + start (``docker run --detach``); returns the id. A failed start leaves nothing."""
    return _start_or_remove(create(image, command, **options))


def run_bundle(bundle: str | os.PathLike, name: str | None = None, publish: Sequence[str] = ()) -> str:
    """create_bundle + start (``runc run --detach``); returns the id."""
    return _start_or_remove(create_bundle(bundle, name, publish))


# -- while it runs -----------------------------------------------------------------

def _running(ref: str) -> dict[str, Any]:
    current = store.state(ref)
    if current.get("status") != "running" or not store.holds(current, "pid"):
        raise LabError(f"The container {current.get('name')} is not running (its program has "
                       "ended; `logs` says why): start or run one first.")
    return current


def exec_in(ref: str, command: Sequence[str], timeout: float = 30) -> process.CommandResult:
    """Run a command inside a running container (``docker exec``): its namespaces, its
    cgroup, its user, capabilities and no_new_privs."""
    if not command:
        raise LabError("No command given to exec: e.g. ['ps'].")
    current = _running(ref)
    spec = store.load_spec(ref)
    from labsupport.cgroups import api
    procs = api.open_group(current["cgroup"]).procs_files if current.get("cgroup") else []
    iso = process.Isolation.make(enter=current["pid"], cgroup_procs=procs)
    steps = shim.container_plan(current, spec).names(plans.AFTER_PIVOT)
    child = process.Child(lambda: hardening.run_exec(spec, steps, list(command)), iso)
    code = child.wait(timeout)
    outcome = child.outcome()
    if outcome is not None and outcome[0] == "error":
        raise outcome[1]
    return process.CommandResult(code, child.stdout, child.stderr, child.pid,
                                 time.monotonic() - child.started)


def _escape_as_container(spec: Spec, steps: list[str], marker: str) -> tuple[list[str], str | None]:
    from labsupport.namespaces import chroot
    hardening.adopt_identity(spec, steps)
    return chroot.classic_escape(marker)


def try_escape(ref: str, marker: str | os.PathLike) -> chroot.EscapeOutcome:
    """Notebook 01's chroot escape, run as root inside a running container (with its
    capabilities - CAP_SYS_CHROOT among them): pivot_root left no old root to climb to."""
    from labsupport.namespaces import chroot  # imported when used: the CLI's start-up stays short
    current = _running(ref)
    spec = store.load_spec(ref)
    steps = shim.container_plan(current, spec).names(plans.AFTER_PIVOT)
    seen, text = process.run_function(_escape_as_container, spec, steps, str(marker),
                                      enter=current["pid"])
    return chroot.EscapeOutcome(f"lab container {current['name']}", seen, str(marker), text)


def kill(ref: str, signum: int = signal.SIGKILL) -> None:
    """Send a signal to the container's first process (``docker kill -s``)."""
    current = _running(ref)
    if signum == signal.SIGKILL and store.holds(current, "group"):
        # PID 1 of a namespace cannot be SIGKILLed from inside, but can from here; the
        # whole process group goes so nothing is left behind.
        os.killpg(current["group"], signal.SIGKILL)
    else:
        os.kill(current["pid"], signum)


def _wait_exited(directory: Path, timeout: float) -> bool:
    """Until the shim has recorded the end and gone; False if ``timeout`` ran out first."""
    current = store.read_state(directory)
    shim_pid = current.get("shim_pid")
    if not store.holds(current, "shim_pid"):
        return store.read_state(directory).get("status") == "exited"
    try:
        handle = os.pidfd_open(shim_pid)
    except ProcessLookupError:
        handle = None  # gone already
    if handle is not None:
        try:
            select.select([handle], [], [], timeout)  # readable once the shim has ended
        finally:
            os.close(handle)
    current = store.read_state(directory)
    return current.get("status") == "exited" and not store.holds(current, "shim_pid")


def has_exited(ref: str, within: float = 0) -> bool:
    """Has the container's program ended (waiting up to ``within`` seconds for it)?"""
    return _wait_exited(store.find(ref), within)


def wait(ref: str, timeout: float = 30) -> int | None:
    """Wait for a container's program to end (``docker wait``); its exit code."""
    directory = store.find(ref)
    if store.state(ref).get("status") == "created":
        raise LabError(f"The container {ref} has not been started: there is nothing to wait for.")
    if not _wait_exited(directory, timeout):
        raise LabError(f"The container {ref} was still running after {timeout} s: stop it, "
                       "or wait longer.")
    timeline.note(directory / store.TIMELINE, "wait: the caller hears it ended")
    shim.unplug_if_ended(store.read_state(directory))
    shim.collect_shims()
    return store.read_state(directory).get("exit_code")


def stop(ref: str, grace: float = 10) -> dict[str, Any]:
    """SIGTERM, then SIGKILL after ``grace`` seconds (``docker stop -t``). A PID 1 without a
    SIGTERM handler ignores it - the kernel protects a namespace's init - so sh waits for the kill."""
    directory = store.find(ref)
    current = store.state(ref)
    if current.get("status") != "running":
        return current
    if store.holds(current, "pid"):
        try:
            os.kill(current["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    if not _wait_exited(directory, grace):
        if store.holds(current, "group"):
            try:
                os.killpg(current["group"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not _wait_exited(directory, 10):
            _stop_shim(store.read_state(directory))
    shim.unplug_if_ended(store.state(ref))
    shim.collect_shims()
    return store.state(ref)


def _stop_shim(current: dict[str, Any]) -> None:
    for key in ("group", "shim_pid"):
        pid = current.get(key)
        if pid and store.holds(current, key):
            try:
                os.killpg(pid, signal.SIGKILL) if key == "group" else os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def remove(ref: str, force: bool = False) -> None:
    """Delete a stopped container: its root's overlay, its state (``docker rm [-f]``)."""
    directory = store.find(ref)
    current = store.state(ref)
    if current.get("status") == "running":
        if not force:
            raise LabError(f"The container {current.get('name')} is running: stop it first, "
                           "or remove it with force.")
        stop(ref, grace=0)
    _stop_shim(store.read_state(directory))
    left = store.read_state(directory)
    if left.get("exit_code") is None and not left.get("error"):
        # The shim records the end only after undoing the host side: it died before that.
        shim.undo_host_side(left)
    else:
        shim.unplug_if_ended(left)  # a reaper leaves the network to the lab's Python
    _release_root(directory)
    shutil.rmtree(directory, ignore_errors=True)
    shim.collect_shims(ending=[left.get("shim_pid")])


def start_phases(ref: str) -> list[timeline.Phase]:
    """Where this container's create, start and end went, step by step (in milliseconds)."""
    return timeline.phases(store.find(ref) / store.TIMELINE)


def logs(ref: str) -> str:
    """What the container's program wrote to stdout and stderr."""
    return (store.find(ref) / "container.log").read_text(errors="replace")


def inspect(ref: str) -> dict[str, Any]:
    directory = store.find(ref)
    return {"state": store.state(ref), "config": json.loads((directory / "config.json").read_text())}


def ps_table(all_: bool = True) -> Table:
    rows = [(c.get("id", "")[:12], c.get("name"), c.get("image"), c.get("status"), c.get("pid", ""),
             ", ".join(f"{a}:{h}->{p}" for a, h, p in c.get("publish", [])), c.get("address", ""))
            for c in store.list_containers(all_)]
    return Table(["id", "name", "image", "status", "host PID", "ports", "address"], rows,
                 "Containers (python -m labsupport ps)")


def clean_all() -> list[str]:
    """Stop and remove every container, even one whose shim died with a kernel: ``clean``'s first step.

    A live shim stops its container and undoes the host side itself; for a
    dead one this does it: the container's process group, ports, namespace
    and cgroup, then the overlay and the state directory.
    """
    removed = []
    for directory in sorted(store.CONTAINERS_DIR.glob("*")) if store.CONTAINERS_DIR.is_dir() else []:
        current = store.read_state(directory)
        if current.get("status") == "running" and store.holds(current, "shim_pid"):
            stop(directory.name, grace=0)
        current = store.read_state(directory)
        _stop_shim(current)
        shim.undo_host_side(current)
        _release_root(directory)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(current.get("name", directory.name))
    return removed


def _clean(report: ownership.CleanReport) -> None:
    # First of all kinds: a container's shim undoes its own network, ports and cgroup.
    for name in clean_all():
        report.note("containers", name)
    shim.collect_shims(ending=shim.launched())


ownership.register_kind("containers", 10, _clean)
