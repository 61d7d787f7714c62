"""cgroups - in the seed's words, control over separate resources (독립된 자원에 대한 제어).

The lab runs on cgroup v1, v2 and the hybrid of both; ``detect_layout`` tells
which tree holds each controller on this machine, and ``create`` makes a
lab group that limits memory, CPU, I/O, processes and devices the same way
on all three.
"""
from labsupport.cgroups.api import (
    CONTROLLERS,
    CGroup,
    Usage,
    create,
    device_number,
    groups_of,
    home_of,
    open_group,
)
from labsupport.cgroups.layout import CgroupLayout, detect_layout

__all__ = ["CONTROLLERS", "CGroup", "CgroupLayout", "Usage", "create", "detect_layout",
           "device_number", "groups_of", "home_of", "open_group"]
