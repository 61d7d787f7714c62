"""cgroups - in the seed's words, control over separate resources (독립된 자원에 대한 제어).

The lab runs on cgroup v1, v2 and the hybrid of both; ``detect_layout`` tells
which tree holds each controller on this machine.
"""
from labsupport.cgroups.layout import CgroupLayout, detect_layout

__all__ = ["CgroupLayout", "detect_layout"]
