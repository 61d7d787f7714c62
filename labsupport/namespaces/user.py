"""User namespaces (사용자 네임스페이스): root inside, an ordinary uid outside.

A user namespace numbers users and groups its own way. Its uid_map and
gid_map, written once by a process outside, say which host ids its ids stand
for: ``0 100000 65536`` makes its root host uid 100000. Capabilities
(CapEff in /proc/PID/status) count inside it: its root holds all of them,
but only over what the namespace owns - its own mount or network namespace,
files whose owner is mapped into it - never over the host's.

Everything here reads /proc or acts in children the runner starts; the one
experiment that needs an *unprivileged* process (``unprivileged_story``)
drops to uid 65534 in a forked child first, as ``setpriv`` would.
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from labsupport import namespaces, ownership, process
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.namespaces import chroot

#: Capability names by bit number, as in <linux/capability.h>.
CAPABILITY_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

#: The uid and gid of "nobody": what an unprivileged user is here.
NOBODY = 65534
#: The map the notebook gives its container: 65536 ids from host id 100000 on (--userns-remap's shape).
REMAP = "0 100000 65536"
#: ioctl on a user namespace file: the uid that created it (<linux/nsfs.h>: _IO(0xb7, 0x4)).
NS_GET_OWNER_UID = 0xB704
#: The scratch purpose of notebook 07's directories (``ownership.temp_dir``).
SCRATCH = "userns"


# -- reading /proc ---------------------------------------------------------------------

def _status(pid: int | str) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise LabError(f"The process {pid} is gone (or never existed).") from None
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def capability_sets(pid: int | str = "self") -> dict[str, int]:
    """CapInh, CapPrm, CapEff, CapBnd and CapAmb of ``pid``, as bit masks."""
    status = _status(pid)
    return {key: int(status[key], 16) for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def effective(pid: int | str = "self") -> int:
    """The capabilities the kernel checks for ``pid`` (CapEff), counted in ``pid``'s user namespace."""
    return capability_sets(pid)["CapEff"]


def last_capability() -> int:
    """The highest capability bit this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    return int(Path("/proc/sys/kernel/cap_last_cap").read_text())


def full_set() -> int:
    """Every capability this kernel knows, as a mask: what root of a new user namespace holds."""
    return (1 << (last_capability() + 1)) - 1


def capability_names(mask: int) -> list[str]:
    """The names of the bits set in ``mask`` (a bit newer than this list shows as its number)."""
    return [CAPABILITY_NAMES[bit] if bit < len(CAPABILITY_NAMES) else f"capability {bit}"
            for bit in range(mask.bit_length()) if mask >> bit & 1]


def describe(mask: int) -> str:
    """A short reading of a mask: "all 41", "none", "40 of 41: all but CAP_SYS_RESOURCE" ..."""
    total = last_capability() + 1
    count = bin(mask).count("1")
    if mask == 0:
        return "none"
    if mask == full_set():
        return f"all {total}"
    missing = capability_names(full_set() & ~mask)
    if len(missing) <= 3:
        return f"{count} of {total}: all but {', '.join(missing)}"
    return f"{count} of {total}: {', '.join(capability_names(mask))}"


@dataclass(frozen=True)
class MapLine:
    """One line of /proc/PID/uid_map: ``count`` ids from ``inside`` stand for ids from ``outside``."""

    inside: int
    outside: int
    count: int

    def __str__(self) -> str:
        return f"{self.inside} {self.outside} {self.count}"


def id_map(pid: int | str = "self", kind: str = "uid") -> list[MapLine]:
    """``pid``'s uid_map or gid_map; the outside column is in the reader's namespace."""
    if kind not in ("uid", "gid"):
        raise LabError(f"Maps are 'uid' or 'gid', not {kind!r}.")
    try:
        text = Path(f"/proc/{pid}/{kind}_map").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise LabError(f"The process {pid} is gone (or never existed).") from None
    return [MapLine(*map(int, line.split())) for line in text.splitlines() if line.strip()]


def outside_id(inside: int, lines: Sequence[MapLine]) -> int | None:
    """The host id that ``inside`` stands for under a map, or None when it is not mapped."""
    for line in lines:
        if line.inside <= inside < line.inside + line.count:
            return line.outside + inside - line.inside
    return None


def host_ids(pid: int | str) -> tuple[int, int]:
    """The real uid and gid of ``pid`` as the reader's namespace numbers them."""
    status = _status(pid)
    return int(status["Uid"].split()[0]), int(status["Gid"].split()[0])


def namespace_owner(pid: int | str) -> int:
    """The uid that created ``pid``'s user namespace (the NS_GET_OWNER_UID ioctl)."""
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise LabError(f"The process {pid} is gone (or never existed).") from None
    try:
        return struct.unpack("I", fcntl.ioctl(fd, NS_GET_OWNER_UID, bytes(4)))[0]
    finally:
        os.close(fd)


def in_own_user_namespace(pid: int | str) -> bool:
    """True when ``pid``'s user namespace is not this process's."""
    return os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino


# -- a container with its own users ----------------------------------------------------------

def scratch_dir() -> Path:
    """A lab scratch directory that mapped users may enter (mkdtemp makes it root-only)."""
    directory = ownership.temp_dir(SCRATCH)
    directory.chmod(0o755)
    return directory


def owned_directory(path: str | os.PathLike, uid: int, gid: int) -> Path:
    """A lab directory owned by host ``uid``/``gid`` - how --userns-remap prepares a container's files."""
    directory = Path(path)
    if not ownership.is_lab_path(directory):
        raise LabError(f"{path} is not below a lab directory: the lab only changes owners there.")
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, uid, gid)
    return directory


def host_owned_file(path: str | os.PathLike) -> Path:
    """A lab file the host's root owns, readable by all, writable by root only (mode 644)."""
    file = Path(path)
    if not ownership.is_lab_path(file):
        raise LabError(f"{path} is not below a lab directory.")
    file.write_text("written by the host's root\n")
    file.chmod(0o644)
    return file


def start_box(uid_map: str = REMAP, gid_map: str = REMAP) -> process.Child:
    """A process that waits as root of a new user namespace, the parent having written its maps."""
    return namespaces.start_waiting(namespaces=["user"], uid_map=uid_map, gid_map=gid_map)


def _outcome(action: Callable[[], Any]) -> str:
    """Run ``action``; "done", or the kernel's refusal in a few words."""
    try:
        action()
        return "done"
    except OSError as err:
        return f"refused: {os.strerror(err.errno or 0)} ({errno.errorcode.get(err.errno or 0, '?')})"
    except LabError as err:
        return f"refused: {str(err).split(' failed: ', 1)[-1].split(' - ')[0]}"


def _read(path: str) -> str:
    """A small /proc file, its columns joined by single spaces (the kernel pads the maps)."""
    return "\n".join(" ".join(line.split()) for line in Path(path).read_text().strip().splitlines())


def _look_inside(made: str, host_file: str) -> dict[str, Any]:
    """Runs inside the box's user namespace: who am I, what do I hold, and whose are these files."""
    Path(made).write_text("made by root inside the user namespace\n")
    return {"uid": os.getuid(), "gid": os.getgid(), "uid_map": _read("/proc/self/uid_map"),
            "gid_map": _read("/proc/self/gid_map"), "setgroups": _read("/proc/self/setgroups"),
            "caps": effective(), "made_owner": os.stat(made).st_uid,
            "host_file_owner": os.stat(host_file).st_uid,
            "write_host_file": _outcome(lambda: Path(host_file).write_text("changed inside\n"))}


def _short(path: str | os.PathLike) -> str:
    """A scratch file by its last two parts: the scratch directory's name says nothing."""
    return str(Path(Path(path).parent.name, Path(path).name))


def both_sides(pid: int, made: str | os.PathLike, host_file: str | os.PathLike) -> Table:
    """The box ``pid`` seen from inside (a process that joins its user namespace) and from the host."""
    inside = process.run_function(_look_inside, str(made), str(host_file),
                                  enter=pid, enter_namespaces=["user"])
    uid, gid = host_ids(pid)
    caps = effective(pid)
    rows = [
        ("who (uid, gid)", f"uid {inside['uid']}, gid {inside['gid']}",
         f"uid {uid}, gid {gid}  (/proc/{pid}/status)"),
        ("uid_map", inside["uid_map"], " ".join(map(str, id_map(pid, "uid")))),
        ("gid_map", inside["gid_map"], " ".join(map(str, id_map(pid, "gid")))),
        ("setgroups", inside["setgroups"], _read(f"/proc/{pid}/setgroups")),
        ("capabilities (CapEff)", f"{inside['caps']:016x} = {describe(inside['caps'])}",
         f"{caps:016x} - the same bits, counted in its own namespace"),
        (f"{_short(made)} (made inside)", f"owner uid {inside['made_owner']}",
         f"owner uid {os.stat(made).st_uid}"),
        (f"{_short(host_file)} (the host's root's)",
         f"owner uid {inside['host_file_owner']}; writing it: {inside['write_host_file']}",
         f"owner uid {os.stat(host_file).st_uid}; still says {Path(host_file).read_text().strip()!r}"),
    ]
    return Table(["", "inside the user namespace", "seen from the host"], rows,
                 f"One process, two numberings (box PID {pid})")


#: What root of a user namespace tries, and why the kernel answers as it does.
ATTEMPT_REASONS = {
    "create a file in the box's directory": "its owner is the host uid that the namespace's root stands for",
    "write the host root's file": "its owner (host uid 0) is not mapped: no capability reaches it",
    "mount a tmpfs (own mount namespace)": "tmpfs may be mounted by root of the namespace "
                                           "that owns the mount namespace",
    "mount the host's disk read-only": "a disk filesystem needs CAP_SYS_ADMIN in the host's namespace",
    "create a device node (mknod)": "device nodes need CAP_MKNOD in the host's namespace",
    "read /etc/shadow": "root-owned and not readable by others: root inside is nobody special outside",
}


def _attempts(directory: str, host_file: str, disk: str, disk_type: str) -> dict[str, str]:
    """Runs as root of a new user namespace with its own mount namespace."""
    box = Path(directory)
    (box / "tmp").mkdir(exist_ok=True)
    (box / "disk").mkdir(exist_ok=True)
    actions: dict[str, Callable[[], Any]] = {
        "create a file in the box's directory": lambda: (box / "made-by-root-inside.txt").write_text("ok\n"),
        "write the host root's file": lambda: Path(host_file).write_text("changed inside\n"),
        "mount a tmpfs (own mount namespace)": lambda: syscalls.mount("lab-userns-tmp", box / "tmp", "tmpfs"),
        "mount the host's disk read-only": lambda: syscalls.mount(disk, box / "disk", disk_type,
                                                                  syscalls.MS_RDONLY),
        "create a device node (mknod)": lambda: os.mknod(box / "null", stat.S_IFCHR | 0o666,
                                                         os.makedev(1, 3)),
        "read /etc/shadow": lambda: Path("/etc/shadow").read_bytes(),
    }
    return {name: _outcome(action) for name, action in actions.items()}


def root_disk() -> tuple[str, str]:
    """The device and filesystem type of the host's /, from its mount table."""
    for mount in reversed(hoststate.mounts()):
        if mount.mountpoint == "/":
            return mount.source, mount.fstype
    raise LabError("The host's mount table has no / (is /proc mounted?).")


def attempts(directory: str | os.PathLike, host_file: str | os.PathLike, uid_map: str = REMAP) -> Table:
    """``_attempts`` run as root of a user namespace mapped with ``uid_map``, with a mount namespace."""
    disk, disk_type = root_disk()
    done = process.run_function(_attempts, str(directory), str(host_file), disk, disk_type,
                                namespaces=["user", "mnt"], uid_map=uid_map, gid_map=uid_map)
    return Table(["root inside tries to", "the kernel says", "why"],
                 [(name, outcome, ATTEMPT_REASONS[name]) for name, outcome in done.items()],
                 "All capabilities - over what the namespace owns")


# -- an unprivileged user makes one --------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One step of the unprivileged story, as the process itself saw it."""

    what: str
    outcome: str
    uid: int
    gid: int
    caps: int
    meant_to_fail: bool = False

    @property
    def failed(self) -> bool:
        return self.outcome.startswith("refused")


def _write_file(path: str, text: str) -> None:
    """One write(2) on an unbuffered file: the kernel's answer to *this* write is what we see."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _become_nobody() -> None:
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)  # from root to non-root: every capability is dropped
    # The uid change made us non-dumpable (our /proc files now belong to root)
    # and cleared the parent-death signal; an ordinary user's program has neither problem.
    syscalls.set_dumpable()
    syscalls.set_parent_death_signal(signal.SIGKILL)


def _unprivileged_steps(directory: str) -> list[Step]:
    """Runs in a child that starts as root: drop to nobody, then make and map a user namespace."""
    idmap = f"0 {NOBODY} 1\n"
    made = f"{directory}/made-by-nobody.txt"
    plan: list[tuple[str, Callable[[], Any], bool]] = [
        (f"become uid {NOBODY} on the host (as setpriv does)", _become_nobody, False),
        ("read /etc/shadow", lambda: Path("/etc/shadow").read_bytes(), True),
        ("unshare(CLONE_NEWUSER): a user namespace of its own", lambda: syscalls.unshare(syscalls.CLONE_NEWUSER),
         False),
        (f"write gid_map '{idmap.strip()}' while setgroups is allowed",
         lambda: _write_file("/proc/self/gid_map", idmap), True),
        (f"write uid_map '{idmap.strip()}'", lambda: _write_file("/proc/self/uid_map", idmap), False),
        ("write 'deny' to setgroups", lambda: _write_file("/proc/self/setgroups", "deny"), False),
        (f"write gid_map '{idmap.strip()}' again", lambda: _write_file("/proc/self/gid_map", idmap), False),
        ("create a file in a directory nobody owns", lambda: Path(made).write_text("made inside\n"), False),
        ("read /etc/shadow as root inside", lambda: Path("/etc/shadow").read_bytes(), True),
    ]
    steps = []
    for what, action, meant_to_fail in plan:
        outcome = _outcome(action)
        steps.append(Step(what, outcome, os.getuid(), os.getgid(), effective(), meant_to_fail))
        if outcome != "done" and not meant_to_fail:
            break  # what follows needs this step
    return steps


@dataclass(repr=False)
class Story:
    """The unprivileged story: each step, and the file it made as seen from the host."""

    steps: list[Step]
    made: Path

    @property
    def made_owner(self) -> int | None:
        """The owner the host sees of the file made inside, or None when it was never made."""
        return self.made.stat().st_uid if self.made.exists() else None

    def table(self) -> Table:
        rows = [(i, s.what, s.outcome + ("  (as it should)" if s.failed and s.meant_to_fail else ""),
                 f"uid {s.uid}, gid {s.gid}", describe(s.caps)) for i, s in enumerate(self.steps, 1)]
        owner = self.made_owner
        rows.append(("", "the host looks at the file", f"{self.made}: owner uid {owner}"
                     if owner is not None else "it was never made", "", ""))
        return Table(["", "step", "the kernel says", "ids inside", "capabilities (CapEff)"], rows,
                     f"An ordinary user (uid {NOBODY}) makes a user namespace")

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__


def unprivileged_story(directory: str | os.PathLike) -> Story:
    """Run ``_unprivileged_steps`` in a child; ``directory`` becomes nobody's, for the file it makes."""
    box = owned_directory(directory, NOBODY, NOBODY)
    steps = process.run_function(_unprivileged_steps, str(box))
    return Story(steps, box / "made-by-nobody.txt")


def expected_refusal(check: Any) -> str | None:
    """Which unprivileged step the doctor's finding says will be refused (None: none but the designed ones).

    ``check`` is the doctor's "user namespaces" row (``doctor.check("user namespaces")``).

    Debian's switch and a zero limit stop ``unshare`` itself; Ubuntu's
    AppArmor switch lets it succeed but takes every capability inside, so
    the first write of a map is refused.
    """
    if check.status == "ok":
        return None
    if "apparmor" in check.finding:
        return "write uid_map"
    return "unshare(CLONE_NEWUSER)"


#: The switches distributions use, and what each does.
SWITCHES = (
    ("/proc/sys/user/max_user_namespaces", "0 forbids new user namespaces for everyone (RHEL 7's default)"),
    ("/proc/sys/kernel/unprivileged_userns_clone", "Debian's own patch: 0 refuses unshare(CLONE_NEWUSER) to "
     "non-root users (the default before Debian 11)"),
    ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "Ubuntu 23.10+: 1 lets non-root users create "
     "one but AppArmor takes every capability inside, unless a profile allows it"),
)


def switches_table() -> Table:
    """The user-namespace switches this kernel has, and their values now."""
    rows = []
    for path, meaning in SWITCHES:
        try:
            value = Path(path).read_text().strip()
        except FileNotFoundError:
            value = "(not in this kernel)"
        rows.append((path.removeprefix("/proc/sys/").replace("/", "."), value, meaning))
    return Table(["sysctl", "here", "what it does"], rows, "Who may create a user namespace")


# -- tables for the notebook -------------------------------------------------------------

def capabilities_table(entries: Sequence[tuple[str, str, int]]) -> Table:
    """(who, ids, CapEff mask) rows, each decoded."""
    return Table(["process", "ids (as the host sees them)", "CapEff", "holds"],
                 [(who, ids, f"{mask:016x}", describe(mask)) for who, ids, mask in entries],
                 "Capabilities, from /proc/PID/status")


def process_capabilities(label: str, pid: int | str) -> tuple[str, str, int]:
    """A ``capabilities_table`` row for a running process."""
    uid, gid = host_ids(pid)
    return label, f"uid {uid}, gid {gid}", effective(pid)


def bits_table(masks: Mapping[str, int]) -> Table:
    """CapEff bit by bit: one row per capability, one column per process."""
    return Table(["bit", "capability", *masks],
                 [(bit, CAPABILITY_NAMES[bit] if bit < len(CAPABILITY_NAMES) else "?",
                   *("x" if mask >> bit & 1 else "" for mask in masks.values()))
                  for bit in range(last_capability() + 1)], "CapEff, decoded")


# -- the boxes a learner starts (exercises) and clean up -------------------------------------

def lab_user_boxes() -> list[int]:
    """The lab's running processes that sit in a user namespace other than this process's."""
    found = []
    for pid in ownership.lab_processes():
        try:
            if in_own_user_namespace(pid):
                found.append(pid)
        except OSError:
            continue  # ended meanwhile
    return found


def clean_up_notebook(exercises: str | os.PathLike | None = None) -> Table:
    """Notebook 07's clean-up cell: stop its boxes and remove its scratch; keep the exercise files."""
    stopped = namespaces.stop_children()
    scratch = sorted(ownership.TEMP_DIR.glob(f"{ownership.PREFIX}-{SCRATCH}-*"))
    removed = chroot.remove_scratch(*scratch)
    return Table(["what", "removed"], [
        ("boxes this Python started", ", ".join(map(str, stopped)) or "none"),
        ("scratch directories", "\n".join(map(str, removed)) or "none"),
        ("your exercise files", f"kept: {exercises}" if exercises else "-")], "Clean up")
