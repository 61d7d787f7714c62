"""Run a Python function or a command in a child process with its own namespaces.

Why a child: a Jupyter kernel runs about eight threads, and namespaces belong
to a process, not a thread - ``unshare(CLONE_NEWUSER)`` even refuses a
multi-threaded caller, ``CLONE_NEWPID`` only affects later children, and a
mount namespace made by one thread leaves the others behind. So every
namespace, mount and root change happens in a freshly forked child, and the
kernel process only reads the result.

The steps, in the order the kernel needs them (``ENTER_STEPS``)::

    fork -> (child) unshare -> [parent writes uid/gid maps] -> [fork again
    to become PID 1 of a new PID namespace] -> private mounts -> hostname
    -> mount /proc in the new root -> chroot or pivot_root -> run the function or exec

A child dies with its parent (``PR_SET_PDEATHSIG``), and everything it
starts sits in its own process group, so a killed kernel or a time-out takes
the whole tree down.
"""
from __future__ import annotations

import errno
import fcntl
import io
import os
import pickle
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from labsupport import ownership
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError, require_root
from labsupport.process import timeline

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: What a new mount namespace does to its copy of every mount first (``propagation=``).
PROPAGATION = {"private": syscalls.MS_PRIVATE, "slave": syscalls.MS_SLAVE, "unchanged": 0}


@dataclass(frozen=True)
class RootMount:
    """A mount the new root gets from the host's side: a tmpfs, or a bind of a host path
    (``source``) at ``target``, a path inside the new root.

    Made before the root changes - while the host's paths are still there (the
    kernel binds nothing from another mount namespace) - and in list order.
    """

    target: str
    source: str | None = None  # None: a fresh tmpfs
    read_only: bool = False


@dataclass(frozen=True)
class Isolation:
    """What the child should be isolated with: the learner's request.

    ``namespaces`` uses the /proc/PID/ns names: mnt, uts, ipc, pid, net,
    user, cgroup. ``enter`` lists existing namespaces to join first, as
    (kind, namespace file) pairs - what ``nsenter`` and ``docker exec`` do.
    ``root`` is changed with chroot, or with pivot_root when ``pivot`` is set
    (that needs a mount namespace). ``mount_proc`` mounts a fresh /proc
    inside, which shows only the PID namespace's own processes.
    ``cgroup_procs`` lists ``cgroup.procs`` files the child writes its own
    PID to first, so it starts its work already inside those cgroups.
    ``propagation`` is what a new mount namespace makes of its copy of every
    mount first: "private" (the default), "slave" (runc's default: the host's
    mounts still arrive, none go back) or "unchanged" (shared mounts stay
    shared with the host - only for showing why the other two exist).
    ``mark_steps`` writes each step into the caller's timeline
    (labsupport.process.timeline): a container's first process does; the
    helpers a shim forks on the way (to name a namespace, say) do not.
    ``outlive_parent`` lets the child live on once its starter exits, as a
    runtime's container does after ``runc create`` returns: no death signal,
    and the orphan goes to whoever reaps orphans (an engine's subreaper, or
    init). ``stdio`` gives the child these three descriptors as its stdin,
    stdout and stderr instead of /dev/null and pipes back to the parent.
    """

    namespaces: frozenset[str] = frozenset()
    enter: tuple[tuple[str, str], ...] = ()
    root: Path | None = None
    pivot: bool = False
    hostname: str | None = None
    mount_proc: bool = False
    uid_map: str | None = None
    gid_map: str | None = None
    cwd: str = "/"
    cgroup_procs: tuple[Path, ...] = ()
    propagation: str = "private"
    root_mounts: tuple["RootMount", ...] = ()
    mark_steps: bool = False
    outlive_parent: bool = False
    stdio: tuple[int, int, int] | None = None
    #: Descriptors a child keeps when joining namespaces closes all others (a runtime's own
    #: pipes to its container's first process).
    keep_fds: tuple[int, ...] = ()

    @classmethod
    def make(cls, namespaces: Sequence[str] = (), root: str | os.PathLike | None = None,
             pivot: bool = False, hostname: str | None = None, mount_proc: bool = False,
             uid_map: str | None = None, gid_map: str | None = None, cwd: str = "/",
             enter: int | str | os.PathLike | None = None,
             enter_namespaces: Sequence[str] | None = None,
             cgroup_procs: Sequence[str | os.PathLike] = (),
             propagation: str = "private", root_mounts: Sequence["RootMount"] = (),
             outlive_parent: bool = False,
             stdio: tuple[int, int, int] | None = None) -> "Isolation":
        """Check the request before anything is forked, so errors come early and plain."""
        names = frozenset(namespaces)
        syscalls.namespace_flags(names)  # refuses unknown names
        joined = _namespaces_to_enter(enter, enter_namespaces) if enter is not None else ()
        new_root = None
        if root is not None:
            new_root = Path(root).resolve()
            if not new_root.is_dir():
                raise LabError(f"The root {root} does not exist or is not a directory: build it first.")
        if pivot and (new_root is None or "mnt" not in names):
            raise LabError("pivot_root needs a root directory and a mount namespace ('mnt').")
        if mount_proc and "mnt" not in names:
            raise LabError("Mounting a fresh /proc needs a mount namespace ('mnt'), "
                           "or it would cover the host's /proc.")
        if mount_proc and new_root is not None and not (new_root / "proc").is_dir():
            raise LabError(f"The root {new_root} has no /proc directory to mount on.")
        if propagation not in PROPAGATION:
            raise LabError(f"Unknown propagation {propagation!r}: choose from {', '.join(PROPAGATION)}.")
        if propagation != "private" and "mnt" not in names:
            raise LabError("Propagation applies to a new mount namespace: add 'mnt' to namespaces.")
        if propagation == "unchanged" and (pivot or mount_proc):
            raise LabError("With propagation 'unchanged' the mounts of pivot_root and of a fresh "
                           "/proc could reach the host's table: use 'private' or 'slave'.")
        if hostname is not None and "uts" not in names:
            raise LabError("Setting a hostname needs a UTS namespace ('uts'), "
                           "or it would rename the host.")
        if "user" in names:
            uid = os.geteuid()
            uid_map = uid_map or f"0 {uid} 1"
            gid_map = gid_map or f"0 {os.getegid()} 1"
        procs = tuple(Path(p) for p in cgroup_procs)
        for path in procs:
            if path.name != "cgroup.procs" or not path.is_file():
                raise LabError(f"{path} is not the cgroup.procs file of an existing cgroup: "
                               "create the group first.")
        if root_mounts and (new_root is None or "mnt" not in names):
            raise LabError("Mounts into a new root need the root and a mount namespace ('mnt').")
        return cls(names, joined, new_root, pivot, hostname, mount_proc, uid_map, gid_map, cwd,
                   procs, propagation, tuple(root_mounts), outlive_parent=outlive_parent,
                   stdio=stdio)


def _namespaces_to_enter(target: int | str | os.PathLike,
                         kinds: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """The namespace files to join: those asked for, or all that differ from ours.

    ``target`` is a PID (its /proc/PID/ns directory), or a directory of
    namespace files named by kind, as a kept namespace is (a bind mount of
    /proc/PID/ns/KIND keeps it alive after its processes end).
    """
    by_pid = isinstance(target, int)
    directory = Path(f"/proc/{target}/ns") if by_pid else Path(target)
    if not directory.is_dir():
        raise LabError(f"The process {target} is gone (or never existed): nothing to enter." if by_pid
                       else f"There is no directory {target} of namespace files to enter.")
    wanted = list(kinds) if kinds is not None else \
        [kind for kind in syscalls.NAMESPACE_FLAGS if (directory / kind).exists()]
    syscalls.namespace_flags(wanted)
    pairs = []
    for kind in wanted:
        # A lab child that made a PID namespace stays outside it, waiting for
        # its PID 1: its pid_for_children is the namespace it stands for.
        theirs = directory / ("pid_for_children" if by_pid and kind == "pid" else kind)
        try:
            ns = os.stat(theirs)
        except FileNotFoundError:
            if not by_pid:
                raise LabError(f"{directory} holds no {kind} namespace to enter.") from None
            # pid_for_children reads as missing until the namespace's PID 1 exists.
            raise LabError(f"The process {target} is gone" + (", or its PID namespace has no PID 1 "
                           "yet" if kind == "pid" else "") + ": nothing to enter.") from None
        ours = os.stat(f"/proc/self/ns/{kind}")
        if kinds is None and (ns.st_dev, ns.st_ino) == (ours.st_dev, ours.st_ino):
            continue  # already shared: joining it would change nothing
        pairs.append((kind, str(theirs)))
    # The user namespace first: it grants the rights to join the others.
    return tuple(sorted(pairs, key=lambda pair: pair[0] != "user"))


@dataclass
class CommandResult:
    """What a command left behind: its exit code and its output."""

    returncode: int
    stdout: str
    stderr: str
    pid: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __str__(self) -> str:
        return self.stdout + self.stderr


@dataclass
class _Pipes:
    """The pipes between parent and child. Each end is closed on exec."""

    sync_r: int = 0
    sync_w: int = 0
    go_r: int = 0
    go_w: int = 0
    result_r: int = 0
    result_w: int = 0
    out_r: int = 0
    out_w: int = 0
    err_r: int = 0
    err_w: int = 0
    opened: list[int] = field(default_factory=list)

    @classmethod
    def open(cls) -> "_Pipes":
        pipes = cls()
        for name in ("sync", "go", "result", "out", "err"):
            r, w = os.pipe2(os.O_CLOEXEC)
            setattr(pipes, f"{name}_r", r)
            setattr(pipes, f"{name}_w", w)
            pipes.opened += [r, w]
        return pipes

    def keep_only(self, *fds: int) -> None:
        for fd in self.opened:
            if fd not in fds:
                os.close(fd)
        self.opened = list(fds)


# -- inside the child ----------------------------------------------------------

def _change_root(iso: Isolation) -> None:
    """chroot, or pivot_root with the old root detached so nothing is left to climb back to."""
    assert iso.root is not None
    if not iso.pivot:
        syscalls.chroot(iso.root)
        return
    # pivot_root wants the new root to be a mount point: bind it onto itself.
    syscalls.mount(iso.root, iso.root, None, syscalls.MS_BIND | syscalls.MS_REC)
    os.chdir(iso.root)
    # "pivot_root . ." stacks the old root on top of the new one; detaching
    # it leaves only the new root, with no directory to keep the old one in.
    syscalls.pivot_root(".", ".")
    syscalls.umount(".", syscalls.MNT_DETACH)


def _die_with_parent(parent: int) -> None:
    """Ask for SIGKILL when ``parent`` dies - and check it did not die already.

    ``parent`` is read before the fork: if it exited before the prctl took
    effect we have been reparented, and no signal would ever come.
    """
    syscalls.set_parent_death_signal(signal.SIGKILL)
    # 0: the parent is outside our PID namespace (it unshared CLONE_NEWPID for us),
    # and cannot be named from here; it is waiting for us, so it is alive.
    if os.getppid() not in (parent, 0):
        os._exit(1)


def _become_mapped_root(iso: Isolation, pipes: _Pipes) -> None:
    """Only the parent, still in the old user namespace, may write our maps: ask, wait, then
    trade the host's uid we still hold for the mapped root of the new namespace."""
    os.write(pipes.sync_w, b"u")
    if os.read(pipes.go_r, 1) != b"g":
        os._exit(1)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _make_mounts_private(iso: Isolation) -> None:
    # Private (or slave) first: nothing mounted from here on may leak back to the host.
    syscalls.mount(None, "/", None, syscalls.MS_REC | PROPAGATION[iso.propagation])


def _mount_proc(iso: Isolation) -> None:
    # Before the root changes: in a user namespace the kernel lets a new /proc be mounted
    # only while a fully visible one is still in the mount namespace (the host's, here).
    target = "/proc" if iso.root is None else str(iso.root / "proc")
    syscalls.mount("proc", target, "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)


def drop_host_groups() -> None:
    """No supplementary group of the host may follow a process into a user namespace: unmapped,
    root's group 0 shows as 65534 inside, yet the kernel still lets it open group-0 files."""
    if os.geteuid() == 0:
        os.setgroups([])


def _mount_all_in_root(iso: Isolation) -> None:
    for mount in iso.root_mounts:
        _mount_in_root(iso.root, mount)  # type: ignore[arg-type]


_Action = Callable[[Isolation, _Pipes, int], None]

#: Everything a child does between fork and its work, in the kernel's order: (name, does the
#: request ask for it, what it does). ``_enter`` runs exactly this list; a container's plan
#: (labsupport.container.plan) names its steps from it, so the two cannot disagree.
ENTER_STEPS: tuple[tuple[str, Callable[[Isolation], bool], _Action], ...] = (
    ("die with the parent", lambda iso: not iso.outlive_parent,
     lambda iso, pipes, parent: _die_with_parent(parent)),
    ("join the cgroups", lambda iso: bool(iso.cgroup_procs),
     lambda iso, pipes, parent: _join_cgroups(iso.cgroup_procs)),
    ("join existing namespaces", lambda iso: bool(iso.enter),
     lambda iso, pipes, parent: _join(iso.enter)),
    ("drop the host's supplementary groups", lambda iso: "user" in iso.namespaces and os.geteuid() == 0,
     lambda iso, pipes, parent: drop_host_groups()),
    ("unshare the new namespaces", lambda iso: True,
     lambda iso, pipes, parent: syscalls.unshare(syscalls.namespace_flags(iso.namespaces))),
    ("become root of the user namespace (the parent writes the maps)",
     lambda iso: "user" in iso.namespaces,
     lambda iso, pipes, parent: _become_mapped_root(iso, pipes)),
    ("fork again, to be PID 1 of the PID namespace",
     lambda iso: "pid" in iso.namespaces or any(kind == "pid" for kind, _ in iso.enter),
     lambda iso, pipes, parent: _fork_into_pid_namespace(new_session=bool(iso.enter))),
    ("make every mount private or slave",
     lambda iso: "mnt" in iso.namespaces and iso.propagation != "unchanged",
     lambda iso, pipes, parent: _make_mounts_private(iso)),
    ("set the hostname", lambda iso: iso.hostname is not None,
     lambda iso, pipes, parent: syscalls.sethostname(iso.hostname or "")),
    ("mount a fresh /proc", lambda iso: iso.mount_proc,
     lambda iso, pipes, parent: _mount_proc(iso)),
    ("mount into the new root", lambda iso: bool(iso.root_mounts),
     lambda iso, pipes, parent: _mount_all_in_root(iso)),
    ("change the root: pivot_root with the old root detached (chroot without a mount namespace)",
     lambda iso: iso.root is not None,
     lambda iso, pipes, parent: _change_root(iso)),
    ("change to the working directory", lambda iso: True,
     lambda iso, pipes, parent: os.chdir(iso.cwd)),
)


def steps_for(iso: Isolation) -> list[str]:
    """The names of the steps a child with this request will take, in order."""
    return [name for name, wanted, _ in ENTER_STEPS if wanted(iso)]


def _enter(iso: Isolation, pipes: _Pipes, parent: int) -> None:
    """Everything between fork and running the target: ``ENTER_STEPS``, in order."""
    for name, wanted, action in ENTER_STEPS:
        if wanted(iso):
            timeline.mark(name)
            action(iso, pipes, parent)


def _inside(root: Path, target: str) -> Path:
    """``target`` under ``root``, refusing a path whose symlinks lead out of it: a root built
    by someone else could make its /data a link to the host's /etc."""
    where = root / target.lstrip("/")
    resolved = Path(os.path.realpath(where))
    if resolved != root and root not in resolved.parents:
        raise LabError(f"The mount point {target} leads out of the root {root} (through a "
                       "symbolic link): nothing was mounted.")
    return resolved


def _mount_in_root(root: Path, mount: RootMount) -> None:
    """Mount onto a descriptor, not a path: the target is opened with every step kept inside the
    root, then mounted on through /proc/self/fd/N - a link swapped in after the check above
    cannot send the mount to the host (the CVE-2021-30465 race)."""
    _inside(root, mount.target)  # a plain sentence for a link that leads out
    is_dir = mount.source is None or os.path.isdir(mount.source)
    target = syscalls.open_in_root(root, mount.target, os.O_PATH, make="dir" if is_dir else "file")
    try:
        if mount.source is None:
            syscalls.mount("tmpfs", f"/proc/self/fd/{target}", "tmpfs", syscalls.MS_NOSUID
                           | (syscalls.MS_RDONLY if mount.read_only else 0), "mode=755,size=65536k")
            return
        syscalls.mount(mount.source, f"/proc/self/fd/{target}", None, syscalls.MS_BIND | syscalls.MS_REC)
    finally:
        os.close(target)
    if mount.read_only:  # a bind mount's flags change only with a second call, on the new mount
        mounted = syscalls.open_in_root(root, mount.target, os.O_PATH)
        try:
            syscalls.mount(None, f"/proc/self/fd/{mounted}", None,
                           syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY)
        finally:
            os.close(mounted)


def _join_cgroups(procs_files: tuple[Path, ...]) -> None:
    """Move ourselves into each cgroup before anything else, while we still hold
    the host's PID and rights - so not one instruction of the work runs outside.
    """
    for path in procs_files:
        try:
            path.write_text("0")  # "0" is the writer itself, whatever PID namespace it is in
        except OSError as err:
            raise LabError(f"Cannot join the cgroup {path.parent}: "
                           f"{os.strerror(err.errno or 0)}.") from None


def _join(namespaces: tuple[tuple[str, str], ...]) -> None:
    """setns into each namespace; all files are opened first, while /proc is still ours."""
    opened = [(kind, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)) for kind, path in namespaces]
    if any(kind == "user" for kind, _ in namespaces):
        drop_host_groups()  # as when making one
    for kind, path, fd in opened:
        syscalls.setns(fd, syscalls.NAMESPACE_FLAGS[kind], path)
        os.close(fd)
        if kind == "user":  # as nsenter does: act as the namespace's root
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)


def _fork_into_pid_namespace(new_session: bool = False) -> None:
    """After unshare(CLONE_NEWPID) or setns into a PID namespace, only our
    *children* are in it.

    So fork once more: the child goes on inside (as PID 1 of a new namespace);
    this process waits for it and exits with its status.
    """
    # PID 1 cannot see its parent (getppid() says 0), so it learns of the
    # parent's death from a pipe whose write end only the parent holds.
    alive_r, alive_w = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.fork()
    except OSError as err:
        if err.errno != errno.ENOMEM:
            raise
        # The kernel's way of saying the namespace's PID 1 has died: a PID
        # namespace takes no new process once its init is gone.
        raise LabError("That PID namespace has no PID 1 any more (its init ended), "
                       "so it cannot take a new process: start a new one.") from None
    if child == 0:
        os.close(alive_w)
        syscalls.set_parent_death_signal(signal.SIGKILL)
        if select.select([alive_r], [], [], 0)[0]:  # EOF: the parent is already gone
            os._exit(1)
        os.close(alive_r)
        if new_session:
            os.setsid()  # joining a container: no terminal of the caller's goes in with us
        return
    os.close(alive_r)
    # Waiting is all this process does: it keeps no copy of the child's pipes, so a pipe
    # closed on exec inside tells the truth.
    os.closerange(3, alive_w)
    os.closerange(alive_w + 1, 65536)
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _restore_default_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; a program it starts should not inherit that
    (a shell pipeline would never stop at a closed pipe). subprocess does the same."""
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)


def _close_all_but(keep: set[int]) -> None:
    """Close every file descriptor this process holds but ``keep`` (what fork copied from the caller)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory's own descriptor, closed by the time we get to it


def _dup_cloexec(fd: int) -> int:
    """A copy of ``fd`` that programs the function starts will not inherit."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _send(fd: int, message: tuple[str, Any]) -> None:
    try:
        data = pickle.dumps(message)
    except Exception as err:  # the value or exception cannot cross the pipe
        data = pickle.dumps(("error", LabError(f"The child's result could not be sent back: {err}")))
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _child_main(target: Callable[[], Any] | Sequence[str], env: dict[str, str] | None,
                iso: Isolation, pipes: _Pipes, parent: int) -> None:
    """Runs in the child; never returns (a forked Jupyter kernel must not run its exit hooks)."""
    code = 1
    try:
        if not iso.mark_steps:
            timeline.end()
        os.setpgid(0, 0)
        is_command = not callable(target)
        if iso.stdio is not None:
            for number, fd in enumerate(iso.stdio):
                os.dup2(fd, number)
        else:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)  # never the caller's terminal: a container could read from it
            os.close(null)
            os.dup2(pipes.out_w, 1)
            os.dup2(pipes.err_w, 2)
        keep = {0, 1, 2, pipes.sync_w, pipes.go_r, pipes.result_w}
        if not is_command and iso.stdio is None:
            # ipykernel's sys.stdout talks to the kernel's sockets; give the
            # child plain pipes, and the parent prints what came through.
            sys.stdout = io.TextIOWrapper(os.fdopen(_dup_cloexec(pipes.out_w), "wb"), line_buffering=True)
            sys.stderr = io.TextIOWrapper(os.fdopen(_dup_cloexec(pipes.err_w), "wb"), line_buffering=True)
            keep |= {sys.stdout.fileno(), sys.stderr.fileno()}
        pipes.keep_only(pipes.sync_w, pipes.go_r, pipes.result_w)
        if iso.enter:
            # Joining a container's namespaces: its root must find nothing of the caller's here -
            # no socket, file or pipe (CVE-2024-21626 leaked one), and no way into our memory.
            _close_all_but(keep | set(iso.keep_fds))
            syscalls.set_dumpable(False)
        _enter(iso, pipes, parent)
        if is_command:
            argv = [os.fspath(a) for a in target]  # type: ignore[union-attr]
            _restore_default_signals()
            try:
                os.execvpe(argv[0], argv, env or {})
            except OSError as err:
                raise LabError(f"Cannot run {argv[0]!r} inside: {os.strerror(err.errno or 0)} "
                               "- is it in the root, with its libraries?") from None
        value = target()  # type: ignore[operator]
        sys.stdout.flush()
        sys.stderr.flush()
        _send(pipes.result_w, ("ok", value))
        code = 0
    except BaseException as err:  # noqa: BLE001 - everything must reach the parent
        try:
            err.__traceback__ = None
            _send(pipes.result_w, ("error", err))
        except BrokenPipeError:
            # The starter is gone (it left us to run on, as `oci create` does): say it here.
            os.write(2, f"{err}\n".encode(errors="replace"))
        except BaseException:
            traceback.print_exc()
        code = 127 if isinstance(err, LabError) else 1
    finally:
        os._exit(code)


# -- in the parent ------------------------------------------------------------

#: Plain values a child's result may be built from (no function that could run code).
_PLAIN = {"list", "tuple", "dict", "set", "frozenset", "int", "float", "complex", "str", "bytes",
          "bytearray", "bool", "range", "slice", "NoneType"}


class _ResultUnpickler(pickle.Unpickler):
    """pickle, but able to make only plain values, exceptions, and the lab's own data classes.

    A pickle is a small program: an ordinary one would call ``os.system`` if asked to. A child
    that joined a container could in principle have had its result pipe written by the
    container's root; read this way, the worst such bytes can do is fail to load.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _PLAIN:
            return super().find_class(module, name)
        found = super().find_class(module, name) if module.split(".")[0] in (
            "builtins", "labsupport", "pathlib", "collections", "datetime", "errno") else None
        if isinstance(found, type) and (issubclass(found, BaseException) or is_dataclass(found)
                                        or issubclass(found, tuple) or module in ("pathlib", "datetime")
                                        or found.__name__ == "OrderedDict"):
            return found
        raise pickle.UnpicklingError(f"{module}.{name} may not appear in a child's result")


def load_result(raw: bytes) -> tuple[str, Any]:
    """A child's ("ok", value) or ("error", exception), refusing anything that would run code."""
    try:
        return _ResultUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as err:
        return ("error", LabError(f"The child's result could not be read safely ({err}): nothing of it was used."))

#: The children this Python process started and has not collected yet, by PID.
_LIVE: dict[int, "Child"] = {}


def forget_child(pid: int) -> None:
    """Drop a child someone else collected (a clean-up), so its PID is never reused by mistake."""
    _LIVE.pop(pid, None)


def live_children() -> list[int]:
    """PIDs of the children started here that are not collected yet - even those that
    have not exec'd their command (and so carry no marker) yet."""
    return sorted(_LIVE)


class Child:
    """A running child started by the lab: its PID, its output, and how to end it."""

    def __init__(self, target: Callable[[], Any] | Sequence[str], iso: Isolation,
                 env: dict[str, str] | None = None) -> None:
        require_root("Creating namespaces and changing roots")
        if not callable(target) and ownership.MARKER_ENV not in (env or {}):
            env = command_env(env)  # every command the lab starts must be findable by clean()
        self.iso = iso
        self.started = time.monotonic()
        self._pipes = pipes = _Pipes.open()
        self._chunks: dict[int, list[bytes]] = {pipes.out_r: [], pipes.err_r: [], pipes.result_r: []}
        self.returncode: int | None = None
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child_main(target, env, iso, pipes, me)
        self.pid = pid
        try:
            os.setpgid(pid, pid)  # also done by the child; whichever runs first wins the race
        except OSError:
            pass  # the child already did it, or already exec'd
        _LIVE[pid] = self
        # A command carries the lab's marker in its environment; a forked
        # function has none, so clean() learns of it from the registry.
        self._registered = callable(target)
        if self._registered:
            ownership.register_process(pid)
        pipes.keep_only(pipes.sync_r, pipes.go_w, pipes.result_r, pipes.out_r, pipes.err_r)
        try:
            if "user" in iso.namespaces:
                self._write_id_maps()
        finally:
            os.close(pipes.sync_r)
            os.close(pipes.go_w)

    def _write_id_maps(self) -> None:
        if os.read(self._pipes.sync_r, 1) != b"u":
            return  # the child failed before unsharing; its error follows on the result pipe
        proc = Path(f"/proc/{self.pid}")
        (proc / "uid_map").write_text(self.iso.uid_map + "\n")
        # Unprivileged gid maps need setgroups off; as root it is a choice.
        (proc / "setgroups").write_text("deny\n")
        (proc / "gid_map").write_text(self.iso.gid_map + "\n")
        os.write(self._pipes.go_w, b"g")

    def _drain(self, timeout: float | None) -> bool:
        """Read output until every pipe is closed; False if the time ran out."""
        open_fds = [fd for fd in self._chunks if fd not in getattr(self, "_closed", set())]
        self._closed = getattr(self, "_closed", set())
        deadline = None if timeout is None else time.monotonic() + timeout
        while open_fds:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(open_fds, [], [], left)
            if not ready:
                return False
            for fd in ready:
                data = os.read(fd, 65536)
                if data:
                    self._chunks[fd].append(data)
                else:
                    open_fds.remove(fd)
                    self._closed.add(fd)
                    os.close(fd)
        return True

    def wait(self, timeout: float | None = 30) -> int:
        """Wait for the child to finish (kill it after ``timeout`` seconds)."""
        if self.returncode is not None:
            return self.returncode
        if not self._drain(timeout):
            self.kill()
            self._drain(None)
            self._reap()
            raise LabError(f"The child (PID {self.pid}) did not finish within {timeout} s "
                           "and was killed.")
        self._reap()
        return self.returncode  # type: ignore[return-value]

    def _reap(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # someone else (a clean-up) already collected it
            self.returncode = -signal.SIGKILL
        _LIVE.pop(self.pid, None)
        if self._registered:
            ownership.unregister_process(self.pid)
        for fd in set(self._chunks) - self._closed:
            os.close(fd)
            self._closed.add(fd)

    def kill(self) -> None:
        """SIGKILL the child's whole process group (its PID namespace dies with it)."""
        if self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> int:
        """End the child now and collect it; safe to call twice."""
        self.kill()
        return self.wait(timeout=10)

    @property
    def stdout(self) -> str:
        return b"".join(self._chunks[self._pipes.out_r]).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return b"".join(self._chunks[self._pipes.err_r]).decode(errors="replace")

    def outcome(self) -> tuple[str, Any] | None:
        """The function's ("ok", value) or ("error", exception), or None for a command."""
        raw = b"".join(self._chunks[self._pipes.result_r])
        return load_result(raw) if raw else None

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A small, predictable environment, marked so ``clean`` can find the process."""
    env = {"PATH": DEFAULT_PATH, "HOME": "/root", "TERM": "dumb", "LANG": "C.UTF-8",
           ownership.MARKER_ENV: "1"}
    env.update(extra or {})
    return env


def start(argv: Sequence[str], env: dict[str, str] | None = None, **isolation: Any) -> Child:
    """Start a command in the background; stop it with ``child.stop()`` or a ``with`` block."""
    if not argv:
        raise LabError("No command given: pass a list such as ['sleep', '60'].")
    return Child(list(argv), Isolation.make(**isolation), command_env(env))


def run_command(argv: Sequence[str], timeout: float = 30, env: dict[str, str] | None = None,
                **isolation: Any) -> CommandResult:
    """Run a command to its end, isolated as asked, and return its exit code and output.

    >>> run_command(["hostname"], namespaces=["uts"], hostname="box").stdout
    'box\\n'
    """
    child = start(argv, env=env, **isolation)
    code = child.wait(timeout)
    outcome = child.outcome()
    if outcome is not None and outcome[0] == "error":
        raise outcome[1]
    return CommandResult(code, child.stdout, child.stderr, child.pid,
                         time.monotonic() - child.started)


def run_function(func: Callable[..., Any], *args: Any, timeout: float = 30,
                 **isolation: Any) -> Any:
    """Call ``func(*args)`` in a child isolated as asked, and return what it returns.

    The function runs in a copy of this Python, so it needs no interpreter
    inside the new root - but it can only import modules already loaded.
    What it prints is printed here; what it raises is raised here.
    """
    child = Child(lambda: func(*args), Isolation.make(**isolation))
    code = child.wait(timeout)
    sys.stdout.write(child.stdout)
    sys.stderr.write(child.stderr)
    outcome = child.outcome()
    if outcome is None:
        raise LabError(f"The child (PID {child.pid}) ended with code {code} "
                       "before returning a result.")
    kind, value = outcome
    if kind == "error":
        raise value
    return value
