"""detect_layout: sample mountinfo texts for v2 / v1 / hybrid, then the real machine.

The machine-specific checks derive the expected answer from a second, independent
kernel source (/proc/cgroups and /proc/mounts), so they hold on any layout.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from labsupport.cgroups import CgroupLayout, detect_layout
from labsupport.cgroups.layout import (
    layout_from_mountinfo,
    parse_mountinfo,
    parse_mountinfo_line,
    v1_controllers_of,
)
from labsupport.kernel.errors import LabError

# A typical systemd laptop (Ubuntu 22.04+, Fedora, Debian 12): pure v2.
PURE_V2 = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""
PURE_V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")

# CentOS 7 style: pure v1 with comounted controllers and a named systemd hierarchy.
PURE_V1 = """\
18 62 0:17 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw,seclabel
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:7 - tmpfs tmpfs ro,seclabel,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,seclabel,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,seclabel,cpu,cpuacct
29 24 0:25 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,seclabel,net_cls,net_prio
30 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,seclabel,memory
31 24 0:27 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,seclabel,cpuset,clone_children
32 24 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,seclabel,pids
"""

# The lab's reference machine, as measured (no optional fields at all).
REFERENCE_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


# --- the parser -------------------------------------------------------------
def test_parse_line_skips_a_variable_number_of_optional_fields() -> None:
    line = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:4 - ext3 /dev/root rw,errors=continue"
    entry = parse_mountinfo_line(line)
    assert entry.mount_point == Path("/mnt2")
    assert entry.root == "/mnt1"
    assert (entry.fstype, entry.source) == ("ext3", "/dev/root")
    assert entry.super_options == ("rw", "errors=continue")


def test_parse_line_undoes_octal_escapes_in_the_mount_point() -> None:
    line = r"50 28 0:40 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw"
    assert parse_mountinfo_line(line).mount_point == Path("/mnt/my cgroups")


def test_a_line_without_the_separator_is_a_lab_error() -> None:
    with pytest.raises(LabError, match="not in the kernel's format"):
        parse_mountinfo_line("31 23 0:28 / /sys/fs/cgroup rw,relatime tmpfs tmpfs rw")


def test_v1_super_options_yield_controllers_but_not_flags_or_names() -> None:
    options = "rw,seclabel,xattr,noprefix,release_agent=/x,name=systemd".split(",")
    assert v1_controllers_of(options) == ()
    assert v1_controllers_of(["rw", "cpu", "cpuacct"]) == ("cpu", "cpuacct")
    assert v1_controllers_of(["rw", "cpuset", "clone_children"]) == ("cpuset",)


def test_parse_mountinfo_ignores_blank_lines() -> None:
    assert len(parse_mountinfo(PURE_V2 + "\n\n")) == 3


# --- layouts from sample machines ------------------------------------------
def test_pure_v2_machine() -> None:
    layout = layout_from_mountinfo(PURE_V2, PURE_V2_CONTROLLERS)
    assert layout.kind == "v2"
    assert layout.v2_mount == Path("/sys/fs/cgroup")
    assert layout.v1_controllers == {}
    assert layout.where("memory") == "v2"
    assert layout.where("hugetlb") == "v2"
    assert layout.where("net_cls") is None  # v1-only controller, absent in v2
    assert layout.summary() == "v2 at /sys/fs/cgroup"


def test_pure_v1_machine_with_comounts_and_a_named_hierarchy() -> None:
    layout = layout_from_mountinfo(PURE_V1, ())
    assert layout.kind == "v1"
    assert layout.v2_mount is None
    assert layout.v1_controllers["cpu"] == layout.v1_controllers["cpuacct"] == Path(
        "/sys/fs/cgroup/cpu,cpuacct")
    assert layout.v1_controllers["net_prio"] == Path("/sys/fs/cgroup/net_cls,net_prio")
    assert "systemd" not in layout.v1_controllers
    assert "name=systemd" not in layout.v1_controllers
    assert "seclabel" not in layout.v1_controllers  # SELinux's flag, not a controller
    assert set(layout.v1_controllers) == {"cpu", "cpuacct", "net_cls", "net_prio",
                                          "memory", "cpuset", "pids"}
    assert layout.v1_named_hierarchies == {"systemd": Path("/sys/fs/cgroup/systemd")}
    assert layout.where("memory") == "v1"
    assert layout.where("hugetlb") is None


def test_reference_machine_text_is_hybrid() -> None:
    layout = layout_from_mountinfo(REFERENCE_HYBRID, ("hugetlb",))
    assert layout.kind == "hybrid"
    assert layout.where("memory") == "v1"
    assert layout.where("hugetlb") == "v2"
    assert layout.summary() == "hybrid (v1 + v2 at /sys/fs/cgroup/unified)"


def test_v1_wins_over_v2_for_a_controller_listed_in_both() -> None:
    layout = layout_from_mountinfo(REFERENCE_HYBRID, ("hugetlb", "memory"))
    assert layout.where("memory") == "v1"


def test_a_bind_mount_elsewhere_does_not_replace_the_standard_place() -> None:
    text = ("90 28 0:99 / /srv/copy rw - cgroup2 cgroup2 rw\n" + PURE_V2)
    assert layout_from_mountinfo(text, ()).v2_mount == Path("/sys/fs/cgroup")


def test_no_cgroup_mounts_is_a_lab_error() -> None:
    no_cgroups = "28 1 259:2 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    with pytest.raises(LabError, match="No cgroup controllers are mounted"):
        layout_from_mountinfo(no_cgroups, ())


@pytest.mark.parametrize("text, controllers, word", [
    (PURE_V2, PURE_V2_CONTROLLERS, "v2 only"),
    (PURE_V1, (), "v1 only"),
    (REFERENCE_HYBRID, ("hugetlb",), "hybrid"),
])
def test_describe_is_one_sentence(text: str, controllers: tuple[str, ...], word: str) -> None:
    sentence = layout_from_mountinfo(text, controllers).describe()
    assert word in sentence
    assert sentence.endswith(".") and "\n" not in sentence
    assert sentence.count(". ") == 0


def test_layout_is_frozen() -> None:
    layout = layout_from_mountinfo(PURE_V2, PURE_V2_CONTROLLERS)
    with pytest.raises(AttributeError):
        layout.kind = "v1"  # type: ignore[misc]


# --- this machine, checked against independent kernel sources ---------------
def _v1_bound_controllers() -> set[str]:
    """Controllers that /proc/cgroups says are bound to a v1 hierarchy (hierarchy id > 0)."""
    bound = set()
    for line in Path("/proc/cgroups").read_text().splitlines()[1:]:
        name, hierarchy, _count, enabled = line.split()
        if int(hierarchy) > 0 and enabled == "1":
            bound.add(name)
    return bound


def _fstypes_mounted() -> set[str]:
    """Filesystem types in /proc/mounts (a different file and format than mountinfo)."""
    return {line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()}


@pytest.fixture(scope="module")
def real_layout() -> CgroupLayout:
    return detect_layout()


def test_real_kind_matches_proc_cgroups_and_proc_mounts(real_layout: CgroupLayout) -> None:
    has_v1 = bool(_v1_bound_controllers())
    has_v2 = "cgroup2" in _fstypes_mounted()
    expected = {(True, True): "hybrid", (True, False): "v1", (False, True): "v2"}[(has_v1, has_v2)]
    assert real_layout.kind == expected


def test_real_v1_controllers_are_exactly_the_bound_ones(real_layout: CgroupLayout) -> None:
    assert set(real_layout.v1_controllers) == _v1_bound_controllers()
    for controller, mount_point in real_layout.v1_controllers.items():
        assert (mount_point / "cgroup.procs").exists(), controller


def test_real_memory_and_hugetlb_live_where_the_kernel_says(real_layout: CgroupLayout) -> None:
    # Reference machine: memory in v1, hugetlb in v2 - derived, not hard-coded.
    bound = _v1_bound_controllers()
    if "memory" in bound:
        assert real_layout.where("memory") == "v1"
        assert (real_layout.v1_controllers["memory"] / "memory.limit_in_bytes").exists()
    if real_layout.v2_mount is not None:
        offered = (real_layout.v2_mount / "cgroup.controllers").read_text().split()
        assert real_layout.v2_controllers == tuple(offered)
        for controller in offered:
            if controller not in bound:
                assert real_layout.where(controller) == "v2"
        if "hugetlb" in offered and "hugetlb" not in bound:
            assert real_layout.where("hugetlb") == "v2"


def test_real_describe_and_summary_name_the_kind(real_layout: CgroupLayout) -> None:
    assert real_layout.summary().startswith(real_layout.kind)
    assert real_layout.describe().endswith(".")
