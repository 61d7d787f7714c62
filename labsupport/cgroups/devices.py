"""Device rules: which device nodes (/dev/...) a group's processes may open.

A device node is only a name for a (type, major, minor) triple - ``/dev/null``
is character device 1:3 - so the kernel checks the numbers, not the path: a
node made with mknod anywhere, under any name, is the same device. Both
cgroup versions keep the same policy: a default (allow or deny everything)
plus exceptions, each with the access it concerns: r(ead), w(rite), m(knod).

* v1 writes the policy into ``devices.allow`` / ``devices.deny``.
* v2 has no devices files at all: the lab compiles the same policy into a
  small eBPF program (``devices_bpf``) that the kernel runs on every open.

``DevicePolicy`` applies v1's own rules for changing a policy, so both back
ends behave alike: "a" resets the default and forgets every exception; a
rule against the default adds an exception; a rule with the default takes
that access out of a matching exception.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from typing import Optional, Union

from labsupport.kernel.errors import LabError

ACCESS = "rwm"
_RULE = re.compile(r"^\s*(?P<kind>[cb])\s+(?P<major>\d+|\*):(?P<minor>\d+|\*)"
                   r"(?:\s+(?P<access>[rwm]+))?\s*$")


@dataclass(frozen=True)
class DeviceRule:
    """One exception: a device type, major and minor (None for any), and an access set."""

    kind: str  # "c" (character) or "b" (block)
    major: Optional[int]
    minor: Optional[int]
    access: str = ACCESS

    def same_device(self, other: "DeviceRule") -> bool:
        return (self.kind, self.major, self.minor) == (other.kind, other.major, other.minor)

    def v1_line(self) -> str:
        """'c 1:3 rwm', the format of devices.allow and devices.deny."""
        def number(n: Optional[int]) -> str:
            return "*" if n is None else str(n)
        return f"{self.kind} {number(self.major)}:{number(self.minor)} {self.access}"

    def __str__(self) -> str:
        return self.v1_line()


def _normal_access(access: str) -> str:
    return "".join(a for a in ACCESS if a in access)


def parse_rule(spec: Union[str, os.PathLike]) -> Optional[DeviceRule]:
    """'c 1:3 rw', 'b 7:* r', '/dev/null', '/dev/null r' -> a rule; 'a' (all devices) -> None."""
    text = os.fspath(spec).strip()
    if text == "a" or text.startswith("a "):
        return None
    if text.startswith("/"):
        path, _, access = text.partition(" ")
        return _rule_for_node(path, access.strip() or ACCESS)
    match = _RULE.match(text)
    if not match:
        raise LabError(f"{text!r} is not a device rule: write 'c 1:3 rwm' (type, major:minor, "
                       "access), a node such as '/dev/null', or 'a' for all devices.")

    def number(n: str) -> Optional[int]:
        return None if n == "*" else int(n)

    return DeviceRule(match.group("kind"), number(match.group("major")),
                      number(match.group("minor")), _normal_access(match.group("access") or ACCESS))


def _rule_for_node(path: str, access: str) -> DeviceRule:
    if set(access) - set(ACCESS):
        raise LabError(f"{access!r} is not a device access: use letters from r, w and m.")
    try:
        mode = os.stat(path)
    except FileNotFoundError:
        raise LabError(f"There is no device node {path}: name an existing node, or write "
                       "the numbers ('c 1:3 rwm').") from None
    if stat.S_ISCHR(mode.st_mode):
        kind = "c"
    elif stat.S_ISBLK(mode.st_mode):
        kind = "b"
    else:
        raise LabError(f"{path} is not a device node (ls -l shows c or b first for one).")
    return DeviceRule(kind, os.major(mode.st_rdev), os.minor(mode.st_rdev), _normal_access(access))


@dataclass
class DevicePolicy:
    """A default and the exceptions to it - what v1 keeps per group, and what v2's program encodes."""

    default_allow: bool = True
    exceptions: list[DeviceRule] = field(default_factory=list)

    def _change(self, rule: Optional[DeviceRule], allow: bool) -> None:
        if rule is None:  # "a": a new default, no exceptions
            self.default_allow = allow
            self.exceptions = []
            return
        if allow != self.default_allow:
            for i, old in enumerate(self.exceptions):
                if old.same_device(rule):
                    merged = _normal_access(old.access + rule.access)
                    self.exceptions[i] = DeviceRule(rule.kind, rule.major, rule.minor, merged)
                    return
            self.exceptions.append(rule)
            return
        kept = []
        for old in self.exceptions:
            if old.same_device(rule):
                left = "".join(a for a in old.access if a not in rule.access)
                if left:
                    kept.append(DeviceRule(old.kind, old.major, old.minor, left))
            else:
                kept.append(old)
        self.exceptions = kept

    def allow(self, rule: Optional[DeviceRule]) -> None:
        self._change(rule, allow=True)

    def deny(self, rule: Optional[DeviceRule]) -> None:
        self._change(rule, allow=False)

    def describe(self) -> list[str]:
        """One line per part of the policy, e.g. ['default: allow', 'deny c 1:3 rwm']."""
        word = "allow" if self.default_allow else "deny"
        other = "deny" if self.default_allow else "allow"
        return [f"default: {word} every device"] + [f"{other} {rule}" for rule in self.exceptions]
