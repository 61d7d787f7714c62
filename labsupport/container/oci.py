"""The lab's runtime behind runc's command line, so that an engine (podman, containerd) can drive it.

    python -m labsupport oci create --bundle DIR [--pid-file F] ID    (bin/lab-runtime is the same)
    python -m labsupport oci start ID;  oci state ID;  oci kill ID TERM;  oci delete ID

An engine never imports a runtime: it runs it, as a program, once per verb, and
reads the answer from exit codes, a PID file and ``state``'s JSON (the OCI
runtime spec's runtime.md). So each verb here is a short-lived process, and
everything between them is on disk, in ``--root``/<id>/: ``state.json``, the
bundle's ``config.json`` as it was at create, and ``start.fifo``.

The created state is real, as runc's is: ``create`` forks the container's first
process, which makes its namespaces, mounts and root (the plan's steps up to
"ready") and then waits on the read end of ``start.fifo``; ``create`` exits and
leaves it waiting. ``start`` writes one byte into the FIFO, and the process
goes on to become the program. The FIFO's existence is the state: there, the
container is "created"; gone, "running" - until the process has ended ("stopped").

There is no shim here: the engine brings its own (conmon), a subreaper that
adopts the container when ``create`` exits. Nothing here touches the network:
a bundle's network namespace gets only lo, as under runc.

Where this differs from runc, on purpose or not yet:
- prestart and createRuntime hooks run while the process waits, which is after
  its pivot_root (the spec asks for before); the state they read is the same.
- A bundle with both a user and a PID namespace is refused (the lab's child
  runner would put a process between the container and the engine's reaper);
  so is a terminal (there is no console), and a seccomp allow-list.
- linux.cgroupsPath is not used: the group is <hierarchy>/lab/lab<id>.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from labsupport import ownership, process
from labsupport.cgroups import cgroupfs
from labsupport.container import hardening, shim, store
from labsupport.container import plan as plans
from labsupport.container import spec as specs
from labsupport.container.spec import Spec
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError

OCI_VERSION = "1.0.2"
VERSION = "0.1"
DEFAULT_ROOT = ownership.STATE_DIR / "oci"
FIFO = "start.fifo"
#: Hook kinds run, and by which verb (the spec's lifecycle): createRuntime and prestart by
#: create while the process waits, poststart by start, poststop by delete.
HOOKS = ("prestart", "createRuntime", "poststart", "poststop")


class _Runtime:
    """Where this runtime keeps its containers (``--root``), and where it logs errors."""

    def __init__(self, root: str | os.PathLike, log: str | None = None, log_format: str = "text") -> None:
        self.root = Path(root)
        self.log = log
        self.log_format = log_format

    def directory(self, container_id: str) -> Path:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise LabError(f"{container_id!r} is not a container id: use letters, digits, '-', '_' or '.'.")
        return self.root / container_id

    def existing(self, container_id: str) -> Path:
        directory = self.directory(container_id)
        if not (directory / "state.json").exists():
            raise LabError(f"container {container_id!r} does not exist")
        return directory

    def note(self, level: str, message: str) -> None:
        """One line in ``--log``, as runc writes it: conmon reads an engine's errors from there."""
        if not self.log:
            return
        if self.log_format == "json":
            line = json.dumps({"level": level, "msg": message, "time": _rfc3339(time.time())})
        else:
            line = f"{_rfc3339(time.time())} {level}: {message}"
        with open(self.log, "a") as out:
            out.write(line + "\n")


def _rfc3339(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


# -- the state an engine reads -------------------------------------------------------

def _freezer(directory: Path) -> Path | None:
    current = store.read_state(directory)
    return Path(current["freezer"]) if current.get("freezer") else None


def status(directory: Path) -> str:
    """creating, created, running, paused or stopped - read from the kernel, not remembered."""
    current = store.read_state(directory)
    if not current.get("pid"):
        return "creating"
    if not store.holds(current, "pid"):
        return "stopped"
    freezer = _freezer(directory)
    if freezer is not None and (freezer / "freezer.state").read_text().strip() != "THAWED":
        return "paused"
    return "created" if (directory / FIFO).exists() else "running"


def oci_state(directory: Path) -> dict[str, Any]:
    """The state of runtime.md: what ``state`` prints and what every hook reads on stdin."""
    current = store.read_state(directory)
    now = status(directory)
    return {"ociVersion": OCI_VERSION, "id": directory.name, "status": now,
            "pid": current.get("pid", 0) if now not in ("stopped", "creating") else 0,
            "bundle": current.get("bundle", ""), "rootfs": current.get("rootfs", ""),
            "created": _rfc3339(current.get("created", 0)), "owner": "",
            "annotations": current.get("annotations", {})}


def _config(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "config.json").read_text())


# -- hooks ------------------------------------------------------------------------------

def run_hooks(kind: str, directory: Path, state: dict[str, Any]) -> None:
    """Each hook of ``kind`` in the bundle, in order, with the state on its stdin (runtime.md)."""
    for hook in _config(directory).get("hooks", {}).get(kind, []):
        path = hook["path"]
        args = hook.get("args") or [path]
        env = dict(item.split("=", 1) for item in hook.get("env", []) if "=" in item)
        try:
            result = subprocess.run(args, executable=path, input=json.dumps(state).encode(), env=env,
                                    capture_output=True, timeout=hook.get("timeout"))
        except subprocess.TimeoutExpired:
            raise LabError(f"The {kind} hook {path} did not finish within {hook.get('timeout')} s.") from None
        except OSError as err:
            raise LabError(f"The {kind} hook {path} could not run: {os.strerror(err.errno or 0)}.") from None
        if result.returncode != 0:
            raise LabError(f"The {kind} hook {path} failed with exit code {result.returncode}: "
                           f"{result.stderr.decode(errors='replace').strip()}")


# -- create, start --------------------------------------------------------------------

def _load_bundle(bundle: Path) -> tuple[dict[str, Any], Spec]:
    try:
        data = json.loads((bundle / "config.json").read_text())
    except FileNotFoundError:
        raise LabError(f"There is no config.json in {bundle}: write one with `runc spec`.") from None
    except json.JSONDecodeError as err:
        raise LabError(f"{bundle}/config.json is not valid JSON (line {err.lineno}): fix the file.") from None
    spec = specs.parse(data)
    if not os.path.isabs(spec.root):
        spec.root = str((bundle / spec.root).resolve())
    if not Path(spec.root).is_dir():
        raise LabError(f"The bundle's root {spec.root} is missing: put the root file system there.")
    for kind, path in spec.join.items():
        if not os.path.exists(path):
            raise LabError(f"linux.namespaces asks to join the {kind} namespace {path}, which does "
                           "not exist (its process ended?).")
    if spec.devices and "user" in spec.namespaces:
        raise LabError("linux.devices asks for device nodes in a user namespace, where none can be "
                       "made: remove them, or the user namespace.")
    if "user" in spec.namespaces and "pid" in spec.namespaces:
        raise LabError("linux.namespaces asks for a user and a PID namespace together: the lab's "
                       "OCI runtime cannot yet leave such a container to the engine's subreaper; "
                       "use the lab's own `run --bundle`, or runc.")
    return data, spec


def _write_pid_file(path: str | None, pid: int) -> None:
    if path:
        scratch = Path(f"{path}.lab-new")
        scratch.write_text(str(pid))
        scratch.replace(path)


def _make_freezer(directory: Path) -> tuple[Path, ...]:
    """A group of the v1 freezer for ``pause``, where the host has that hierarchy (runc makes
    one); its cgroup.procs, for the first process to join with its other groups."""
    hierarchy = Path("/sys/fs/cgroup/freezer")
    if not (hierarchy / "cgroup.procs").exists():
        return ()
    group = hierarchy / ownership.PREFIX / shim.cgroup_name(directory.name)
    cgroupfs.make(group)
    store.write_state(directory, freezer=str(group))
    return (group / "cgroup.procs",)


def create(runtime: _Runtime, container_id: str, bundle: str, pid_file: str | None = None,
           console_socket: str | None = None) -> None:
    """Make the container and leave its first process waiting before the program (``runc create``)."""
    directory = runtime.directory(container_id)
    if directory.exists():
        raise LabError(f"container with id exists: {container_id}")
    bundle_path = Path(bundle).resolve()
    data, spec = _load_bundle(bundle_path)
    if console_socket:
        raise LabError("--console-socket is given but process.terminal is false: a console is "
                       "only for a container with a terminal.")
    runtime.root.mkdir(parents=True, exist_ok=True)
    runtime.root.chmod(0o711)
    directory.mkdir(mode=0o700)
    try:
        (directory / "config.json").write_text(json.dumps(data))
        store.write_state(directory, id=container_id, bundle=str(bundle_path), rootfs=spec.root,
                          created=time.time(), annotations=data.get("annotations", {}))
        os.mkfifo(directory / FIFO, 0o600)
        fifo = os.open(directory / FIFO, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        shim.create_waiting(directory, spec, (0, 1, 2), fifo, _make_freezer(directory))
        current = store.read_state(directory)
        state = oci_state(directory)
        state["status"] = "creating"  # what runc's hooks read at this point, too
        for kind in ("prestart", "createRuntime"):
            run_hooks(kind, directory, state)
        _write_pid_file(pid_file, current["pid"])
    except BaseException:
        _destroy(directory)
        raise


def start(runtime: _Runtime, container_id: str) -> None:
    """The go-ahead: one byte into the FIFO the first process waits on (``runc start``)."""
    directory = runtime.existing(container_id)
    now = status(directory)
    if now != "created":
        raise LabError(f"cannot start a container that is {now}: only a created one can start")
    try:
        fifo = os.open(directory / FIFO, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO: no reader, so the first process is gone
        raise LabError(f"container {container_id} is not waiting to start any more "
                       "(its first process ended)") from None
    try:
        os.write(fifo, b"g")
    finally:
        os.close(fifo)
    # runc (1.1) hands poststart hooks the state read before its FIFO is gone: "created".
    # Hooks written for runc may rely on it, so they read the same here.
    state = oci_state(directory)
    (directory / FIFO).unlink()
    store.write_state(directory, started=time.time())
    try:
        run_hooks("poststart", directory, state)
    except LabError as err:  # runc too only warns: the program runs already
        runtime.note("warning", str(err))


# -- kill, delete -----------------------------------------------------------------

def parse_signal(text: str) -> int:
    """'TERM', 'SIGTERM' or '15'."""
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}"
    found = getattr(signal, name, None)
    if not isinstance(found, int):
        raise LabError(f"unknown signal {text!r}: use a name such as TERM or KILL, or a number")
    return int(found)


def _group_pids(directory: Path) -> list[int]:
    current = store.read_state(directory)
    if not current.get("cgroup"):
        return []
    from labsupport.cgroups import api
    try:
        return api.open_group(current["cgroup"]).processes()
    except LabError:
        return []


def kill(runtime: _Runtime, container_id: str, signum: int = signal.SIGTERM, every: bool = False) -> None:
    """A signal to the first process, or with ``every`` to all in its cgroup (``runc kill [--all]``)."""
    directory = runtime.existing(container_id)
    now = status(directory)
    if now == "stopped" or now == "creating":
        raise LabError("container not running")
    current = store.read_state(directory)
    for pid in (_group_pids(directory) if every else [current["pid"]]):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _destroy(directory: Path) -> None:
    """Everything a container holds on the host: its processes, cgroups and state directory."""
    current = store.read_state(directory)
    if current.get("pid") and store.holds(current, "pid") and not current.get("cgroup"):
        os.kill(current["pid"], signal.SIGKILL)
    freezer = _freezer(directory)
    if freezer is not None:
        try:
            (freezer / "freezer.state").write_text("THAWED")  # a frozen process cannot even die
        except OSError:
            pass  # gone already (a clean-up came first)
    shim.undo_host_side(current)   # kills what is left in the cgroup, removes it
    if freezer is not None:
        try:
            cgroupfs.remove(freezer)  # and the lab's parent, if no other group is left in it
        except LabError:
            pass
    if current.get("group"):
        ownership.unregister_process(current["group"])
    shutil.rmtree(directory, ignore_errors=True)


def delete(runtime: _Runtime, container_id: str, force: bool = False) -> None:
    """Remove a stopped container, or with ``force`` any (``runc delete [--force]``)."""
    directory = runtime.existing(container_id)
    now = status(directory)
    if now not in ("stopped", "creating") and not force:
        raise LabError(f"cannot delete container {container_id} that is not stopped: {now}")
    state = oci_state(directory)
    ran = now != "creating"
    _destroy_keeping_config = _config(directory)
    _destroy(directory)
    if ran:
        state.update(status="stopped", pid=0)
        try:
            _run_hooks_of(_destroy_keeping_config, "poststop", state)
        except LabError as err:
            runtime.note("warning", str(err))


def _run_hooks_of(config: dict[str, Any], kind: str, state: dict[str, Any]) -> None:
    """run_hooks for a container whose directory is gone (poststop comes after delete)."""
    scratch = ownership.temp_dir("oci-hooks")
    try:
        (scratch / "config.json").write_text(json.dumps(config))
        run_hooks(kind, scratch, state)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- exec, ps, pause ----------------------------------------------------------------

def _process_spec(directory: Path, process_json: dict[str, Any] | None, argv: Sequence[str]) -> Spec:
    """The container's config with its process replaced by ``exec``'s: one parser for both."""
    config = _config(directory)
    if process_json is not None:
        config["process"] = process_json
    elif argv:
        config["process"] = {**config["process"], "args": list(argv), "terminal": False}
    else:
        raise LabError("exec needs --process FILE or a command after the container id")
    spec = specs.parse(config)
    spec.root = "/"
    return spec


def exec_process(runtime: _Runtime, container_id: str, process_file: str | None, argv: Sequence[str],
                 detach: bool = False, pid_file: str | None = None) -> int:
    """Run one more process in the container (``runc exec``); its exit code, or 0 with ``detach``.

    This process joins the container's PID namespace for its next child, so the
    child is in it from birth, with no middle process: with ``detach`` it is left
    to the engine's subreaper, which can wait for it by the PID in ``pid_file``.
    """
    directory = runtime.existing(container_id)
    now = status(directory)
    if now not in ("running", "created"):
        raise LabError(f"cannot exec in a {now} container")
    process_json = json.loads(Path(process_file).read_text()) if process_file else None
    spec = _process_spec(directory, process_json, argv)
    current = store.read_state(directory)
    pid = current["pid"]
    from labsupport.cgroups import api
    procs = api.open_group(current["cgroup"]).procs_files if current.get("cgroup") else []
    procs += [Path(current["freezer"]) / "cgroup.procs"] if current.get("freezer") else []
    kinds = sorted((set(spec.namespaces) | set(spec.join)) - {"pid"})
    iso = process.Isolation.make(enter=pid, enter_namespaces=kinds, cgroup_procs=procs,
                                 outlive_parent=detach, stdio=(0, 1, 2))
    steps = [name for name in plans.plan(spec, "none", detached=True).names(plans.AFTER_PIVOT)
             if name in hardening.IDENTITY]
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    theirs = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(theirs, syscalls.CLONE_NEWPID, f"/proc/{pid}/ns/pid")
        child = process.Child(lambda: hardening.run_exec(spec, steps, list(spec.args)), iso)
    finally:
        syscalls.setns(own, syscalls.CLONE_NEWPID, "/proc/self/ns/pid")
        os.close(own)
        os.close(theirs)
    _write_pid_file(pid_file, child.pid)
    if detach:
        # Left to the engine: it is in the container's cgroup, which is how clean finds it.
        ownership.unregister_process(child.pid)
        return 0
    code = child.wait(None)
    outcome = child.outcome()
    if outcome is not None and outcome[0] == "error":
        raise outcome[1]
    return code if code >= 0 else 128 - code


def ps(runtime: _Runtime, container_id: str) -> list[int]:
    """The host PIDs of every process in the container's cgroup (``runc ps --format json``)."""
    runtime.existing(container_id)
    return _group_pids(runtime.directory(container_id))


def freeze(runtime: _Runtime, container_id: str, frozen: bool) -> None:
    """``runc pause`` / ``resume``: the v1 freezer stops every process of the group at once."""
    directory = runtime.existing(container_id)
    freezer = _freezer(directory)
    if freezer is None:
        raise LabError("pausing needs the cgroup v1 freezer, which this host does not have")
    now = status(directory)
    wanted = ("running", "created") if frozen else ("paused",)
    if now not in wanted:
        raise LabError(f"container {container_id} is {now}: cannot " + ("pause" if frozen else "resume") + " it")
    (freezer / "freezer.state").write_text("FROZEN" if frozen else "THAWED")
    for _ in range(100):
        if (freezer / "freezer.state").read_text().strip() == ("FROZEN" if frozen else "THAWED"):
            return
        time.sleep(0.01)
    raise LabError(f"container {container_id} did not {'freeze' if frozen else 'thaw'} within a second")


def features() -> dict[str, Any]:
    """What this runtime supports, in the shape of ``runc features``."""
    return {"ociVersionMin": "1.0.0", "ociVersionMax": OCI_VERSION, "hooks": list(HOOKS),
            "mountOptions": sorted(specs.MOUNT_FLAGS) if hasattr(specs, "MOUNT_FLAGS") else [],
            "linux": {"namespaces": sorted(specs.NAMESPACES),
                      "capabilities": [f"CAP_{name}" for name in hardening.CAPABILITIES],
                      "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
                      "seccomp": {"enabled": True}, "apparmor": {"enabled": False},
                      "selinux": {"enabled": False}},
            "annotations": {"org.labsupport.runtime": "the lab's own OCI runtime"}}


def list_ids(runtime: _Runtime) -> list[dict[str, Any]]:
    return [oci_state(d) for d in store.records.directories(runtime.root)]


def clean_all(root: Path = DEFAULT_ROOT) -> list[str]:
    """Every container this runtime made under ``root``, destroyed: ``clean``'s part for them."""
    removed = []
    for directory in store.records.directories(root):
        _destroy(directory)
        removed.append(directory.name)
    return removed


def _clean(report: ownership.CleanReport) -> None:
    for name in clean_all():
        report.note("OCI runtime containers", name)


ownership.register_kind("OCI runtime containers", 11, _clean)


# -- the command line ------------------------------------------------------------------

def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


def parser() -> argparse.ArgumentParser:
    """runc's command line: global flags first, then one verb."""
    top = argparse.ArgumentParser(prog="lab-runtime", description="The lab's OCI runtime, "
                                  "driven as runc is (create, start, state, kill, delete ...).")
    top.add_argument("--root", default=str(DEFAULT_ROOT), help="where container state is kept")
    top.add_argument("--log", help="append errors here (conmon reads them)")
    top.add_argument("--log-format", default="text", choices=("text", "json"))
    top.add_argument("--systemd-cgroup", action="store_true", help="refused: cgroups go through cgroupfs")
    top.add_argument("--debug", action="store_true", help="accepted; changes nothing")
    top.add_argument("-v", "--version", action="store_true", help="print the version")
    verbs = top.add_subparsers(dest="verb", metavar="COMMAND")
    cr = verbs.add_parser("create", help="make a container and leave it waiting to start")
    run = verbs.add_parser("run", help="create, start, wait for the end and delete")
    for p in (cr, run):
        p.add_argument("-b", "--bundle", default=".", help="the bundle directory (config.json, rootfs)")
        p.add_argument("--pid-file", help="write the container's PID here")
        p.add_argument("--console-socket", help="for a terminal: refused, as there is none")
        p.add_argument("--no-pivot", action="store_true", help="accepted; pivot_root is always used")
        p.add_argument("--no-new-keyring", action="store_true", help="accepted; no keyring is made")
        p.add_argument("--preserve-fds", type=int, default=0, help="only 0 is supported")
        p.add_argument("id")
    for name, text in (("start", "let a created container run its program"),
                       ("state", "print the container's OCI state as JSON"),
                       ("pause", "freeze every process of the container"),
                       ("resume", "thaw a paused container")):
        verbs.add_parser(name, help=text).add_argument("id")
    kl = verbs.add_parser("kill", help="send a signal (default TERM)")
    kl.add_argument("-a", "--all", action="store_true", help="to every process of the container")
    kl.add_argument("id")
    kl.add_argument("signal", nargs="?", default="TERM")
    dl = verbs.add_parser("delete", help="remove a stopped container (with --force, any)")
    dl.add_argument("-f", "--force", action="store_true")
    dl.add_argument("id")
    ex = verbs.add_parser("exec", help="run another process in the container")
    ex.add_argument("-p", "--process", help="a process.json as in config.json")
    ex.add_argument("-d", "--detach", action="store_true")
    ex.add_argument("--pid-file")
    ex.add_argument("-t", "--tty", action="store_true", help="refused: there is no terminal")
    ex.add_argument("--console-socket")
    ex.add_argument("--preserve-fds", type=int, default=0)
    ex.add_argument("id")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ps_ = verbs.add_parser("ps", help="list the container's processes")
    ps_.add_argument("-f", "--format", default="table", choices=("table", "json"))
    ps_.add_argument("id")
    ps_.add_argument("ps_args", nargs=argparse.REMAINDER)
    verbs.add_parser("features", help="what this runtime supports, as JSON")
    ls = verbs.add_parser("list", help="list the containers")
    ls.add_argument("-f", "--format", default="table", choices=("table", "json"))
    ls.add_argument("-q", "--quiet", action="store_true")
    return top


def _run(runtime: _Runtime, args: argparse.Namespace) -> int:
    """``runc run``: create, start, wait for the program's end, delete; its exit code."""
    create(runtime, args.id, args.bundle, args.pid_file, args.console_socket)
    pid = store.read_state(runtime.directory(args.id))["pid"]
    start(runtime, args.id)
    try:
        _, code = os.waitpid(pid, 0)  # our own child: create forked it from here
        return os.waitstatus_to_exitcode(code) & 0xFF if os.WIFEXITED(code) else 128 + os.WTERMSIG(code)
    finally:
        delete(runtime, args.id, force=True)


def _dispatch(runtime: _Runtime, args: argparse.Namespace) -> int:
    verb = args.verb
    refusals: dict[str, Callable[[], bool]] = {
        "--preserve-fds": lambda: getattr(args, "preserve_fds", 0) > 0,
        "--tty": lambda: bool(getattr(args, "tty", False)),
    }
    for flag, given in refusals.items():
        if given():
            raise LabError(f"{flag} is not supported by the lab's runtime: run without it.")
    if verb == "create":
        create(runtime, args.id, args.bundle, args.pid_file, args.console_socket)
    elif verb == "run":
        return _run(runtime, args)
    elif verb == "start":
        start(runtime, args.id)
    elif verb == "state":
        _print(oci_state(runtime.existing(args.id)))
    elif verb == "kill":
        kill(runtime, args.id, parse_signal(args.signal), args.all)
    elif verb == "delete":
        if args.force and not runtime.directory(args.id).exists():
            return 0  # runc too: deleting what is not there, by force, is no error
        delete(runtime, args.id, args.force)
    elif verb == "exec":
        if args.console_socket:
            raise LabError("--console-socket is for a terminal, which the lab's runtime does not make.")
        return exec_process(runtime, args.id, args.process, args.command, args.detach, args.pid_file)
    elif verb == "ps":
        pids = ps(runtime, args.id)
        if args.format == "json":
            print(json.dumps(pids))
        else:
            print("PID\n" + "\n".join(map(str, pids)))
    elif verb in ("pause", "resume"):
        freeze(runtime, args.id, verb == "pause")
    elif verb == "features":
        _print(features())
    elif verb == "list":
        found = list_ids(runtime)
        if args.format == "json":
            _print(found)
        elif args.quiet:
            print("\n".join(s["id"] for s in found))
        else:
            print("ID\tPID\tSTATUS\tBUNDLE")
            for s in found:
                print(f"{s['id']}\t{s['pid']}\t{s['status']}\t{s['bundle']}")
    return 0


def _close_on_exec_above_stdio() -> None:
    """An engine may leave descriptors of its own open in its runtime (conmon does). None may
    reach the container's program - a directory of the host's would be a way out of its root
    (CVE-2024-21626) - so, as runc does, every one above stderr closes at exec."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, gone by now


def main(argv: Sequence[str] | None = None) -> int:
    """The whole command: errors are one sentence on stderr (and in --log), exit code 1 as runc's."""
    _close_on_exec_above_stdio()
    args = parser().parse_args(argv)
    runtime = _Runtime(args.root, args.log, args.log_format)
    try:
        if args.version:
            print(f"lab-runtime version {VERSION}\nspec: {OCI_VERSION}")
            return 0
        if args.systemd_cgroup:
            raise LabError("The lab's runtime makes its cgroups itself, not through systemd: "
                           "drop --systemd-cgroup (podman: --cgroup-manager cgroupfs).")
        if args.verb is None:
            raise LabError("Name a command: create, start, state, kill, delete, exec, ps, "
                           "pause, resume, features, list or run.")
        return _dispatch(runtime, args)
    except LabError as err:
        runtime.note("error", str(err))
        print(f"lab-runtime: {err}", file=sys.stderr)
        return 1

