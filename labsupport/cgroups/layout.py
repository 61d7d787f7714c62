"""Where each cgroup controller lives: cgroup v1, cgroup v2, or both (hybrid).

Most learners' laptops run pure cgroup v2 (one tree at ``/sys/fs/cgroup``).
Older systems, and the lab's reference machine, still mount v1 hierarchies -
one tree per controller - and some also mount a v2 tree beside them (the
"hybrid" layout). The lab offers one API over all three, so it must ask, per
controller, which tree to write to. The answer comes from the kernel's own
record of mounts, ``/proc/self/mountinfo``, never from guessing paths: a
directory named ``/sys/fs/cgroup/memory`` proves nothing, the mount's
filesystem type and super options do.

The parser is pure over the mountinfo text, so tests can feed the text of a
pure-v2 or pure-v1 machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Optional, Sequence

from labsupport.kernel.errors import LabError

Kind = Literal["v2", "v1", "hybrid"]
Where = Literal["v1", "v2"]

CGROUP_ROOT = Path("/sys/fs/cgroup")

# A v1 mount's super options mix controllers with flags from cgroup itself
# (noprefix, clone_children, xattr, name=..., release_agent=...) and from
# security modules (SELinux adds "seclabel"), so only the kernel's own list of
# v1 subsystem names (include/linux/cgroup_subsys.h) tells them apart.
V1_CONTROLLER_NAMES = frozenset(
    {"cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer",
     "net_cls", "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc",
     "debug"}
)


@dataclass(frozen=True)
class MountEntry:
    """One line of mountinfo, reduced to what the lab needs."""

    mount_point: Path
    root: str  # the directory of the filesystem that is mounted here
    fstype: str
    source: str
    super_options: tuple[str, ...]


@dataclass(frozen=True)
class CgroupLayout:
    """The cgroup trees mounted on this machine, and which controller is where."""

    kind: Kind
    v1_controllers: dict[str, Path]  # controller -> mount point of its v1 tree
    v2_mount: Optional[Path]
    v2_controllers: tuple[str, ...]  # from cgroup.controllers at the v2 mount
    v1_named_hierarchies: dict[str, Path] = field(default_factory=dict)  # name=systemd

    def where(self, controller: str) -> Optional[Where]:
        """'v1' if the controller has a v1 tree, else 'v2' if the v2 tree offers it.

        A controller bound to a v1 hierarchy cannot be enabled in v2 at the same
        time, so on a hybrid machine v1 wins whenever it is mounted there.
        """
        if controller in self.v1_controllers:
            return "v1"
        if self.v2_mount is not None and controller in self.v2_controllers:
            return "v2"
        return None

    def summary(self) -> str:
        """A short finding, e.g. 'hybrid (v1 + v2 at /sys/fs/cgroup/unified)'."""
        if self.kind == "hybrid":
            return f"hybrid (v1 + v2 at {self.v2_mount})"
        if self.kind == "v2":
            return f"v2 at {self.v2_mount}"
        return f"v1 at {_v1_location(self.v1_controllers)}"

    def describe(self) -> str:
        """One sentence for learners on how this machine's cgroups are laid out."""
        v1 = ", ".join(sorted(self.v1_controllers))
        v2 = ", ".join(self.v2_controllers) or "no controllers"
        if self.kind == "v2":
            return (f"This machine uses cgroup v2 only: one unified tree at "
                    f"{self.v2_mount} with the controllers {v2}.")
        if self.kind == "v1":
            return (f"This machine uses cgroup v1 only: each controller ({v1}) "
                    f"has its own tree under {_v1_location(self.v1_controllers)}.")
        return (f"This machine uses a hybrid layout: cgroup v1 trees for {v1} "
                f"under {_v1_location(self.v1_controllers)}, plus a cgroup v2 "
                f"tree at {self.v2_mount} holding {v2}.")


def _v1_location(v1_controllers: dict[str, Path]) -> str:
    """'/sys/fs/cgroup/<controller>' when all v1 trees share a parent, else that list."""
    parents = {path.parent for path in v1_controllers.values()}
    if len(parents) == 1:
        return f"{parents.pop()}/<controller>"
    return ", ".join(sorted(str(p) for p in set(v1_controllers.values())))


def _unescape(field_text: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for a space, \\134 for a backslash)."""
    if "\\" not in field_text:
        return field_text
    out, i = [], 0
    while i < len(field_text):
        chunk = field_text[i:i + 4]
        if len(chunk) == 4 and chunk[0] == "\\" and chunk[1:].isdigit():
            out.append(chr(int(chunk[1:], 8)))
            i += 4
        else:
            out.append(field_text[i])
            i += 1
    return "".join(out)


def parse_mountinfo_line(line: str) -> MountEntry:
    """Parse 'ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS'.

    The optional fields (shared:N, master:N, ...) vary in number, so the
    filesystem part can only be found after the lone "-" separator.
    """
    fields = line.split()
    try:
        separator = fields.index("-", 6)
        fstype, source, super_options = fields[separator + 1:separator + 4]
    except ValueError:
        raise LabError(f"This mountinfo line is not in the kernel's format: {line!r}.") from None
    return MountEntry(
        mount_point=Path(_unescape(fields[4])),
        root=_unescape(fields[3]),
        fstype=fstype,
        source=_unescape(source),
        super_options=tuple(super_options.split(",")),
    )


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Every mount in a mountinfo text, in the kernel's order."""
    return [parse_mountinfo_line(line) for line in text.splitlines() if line.strip()]


def v1_controllers_of(super_options: Iterable[str]) -> tuple[str, ...]:
    """Controllers bound to a v1 mount: 'rw,cpu,cpuacct' -> ('cpu', 'cpuacct')."""
    return tuple(opt for opt in super_options if opt in V1_CONTROLLER_NAMES)


def v1_names_of(super_options: Iterable[str]) -> tuple[str, ...]:
    """Named v1 hierarchies (no controller, used for process tracking): 'name=systemd' -> ('systemd',)."""
    return tuple(opt.partition("=")[2] for opt in super_options if opt.startswith("name="))


def _prefer_standard_place(mounts: list[MountEntry]) -> list[MountEntry]:
    """Mounts under /sys/fs/cgroup first; a bind mount elsewhere is a copy, not the home."""
    return sorted(mounts, key=lambda m: not m.mount_point.is_relative_to(CGROUP_ROOT))


def read_v2_controllers(v2_mount: Path) -> tuple[str, ...]:
    """The controllers a v2 tree offers, from cgroup.controllers at its root."""
    try:
        return tuple((v2_mount / "cgroup.controllers").read_text().split())
    except OSError:
        return ()


def layout_from_mounts(
    mounts: Sequence[MountEntry],
    read_controllers: Callable[[Path], tuple[str, ...]] = read_v2_controllers,
) -> CgroupLayout:
    """Decide v1 / v2 / hybrid from parsed mounts."""
    v1_controllers: dict[str, Path] = {}
    v1_named: dict[str, Path] = {}
    for mount in _prefer_standard_place([m for m in mounts if m.fstype == "cgroup"]):
        for controller in v1_controllers_of(mount.super_options):
            v1_controllers.setdefault(controller, mount.mount_point)
        for name in v1_names_of(mount.super_options):
            v1_named.setdefault(name, mount.mount_point)

    v2_mounts = _prefer_standard_place([m for m in mounts if m.fstype == "cgroup2"])
    v2_mount = v2_mounts[0].mount_point if v2_mounts else None

    if v1_controllers and v2_mount is not None:
        kind: Kind = "hybrid"
    elif v1_controllers:
        kind = "v1"
    elif v2_mount is not None:
        kind = "v2"
    else:
        raise LabError(
            "No cgroup controllers are mounted (no cgroup or cgroup2 filesystem in "
            "mountinfo), so resource limits cannot work: mount cgroup2 on "
            "/sys/fs/cgroup or run the lab in the Vagrant VM."
        )
    return CgroupLayout(
        kind=kind,
        v1_controllers=v1_controllers,
        v2_mount=v2_mount,
        v2_controllers=read_controllers(v2_mount) if v2_mount is not None else (),
        v1_named_hierarchies=v1_named,
    )


def layout_from_mountinfo(text: str, v2_controllers: Optional[Sequence[str]] = None) -> CgroupLayout:
    """Layout from a mountinfo text; pass ``v2_controllers`` to stay off the real filesystem."""
    if v2_controllers is None:
        return layout_from_mounts(parse_mountinfo(text))
    given = tuple(v2_controllers)
    return layout_from_mounts(parse_mountinfo(text), lambda _mount: given)


def detect_layout(mounts_path: str | Path = "/proc/self/mountinfo") -> CgroupLayout:
    """This machine's cgroup layout, as this process's mount namespace sees it."""
    try:
        text = Path(mounts_path).read_text()
    except OSError as err:
        raise LabError(f"Cannot read {mounts_path} ({err.strerror}), so the cgroup layout is unknown.") from None
    return layout_from_mountinfo(text)
