"""What this host is, said in sentences a notebook can show: computed where the notebook runs.

A notebook written on one machine is read on many: a laptop with systemd and
pure cgroup v2, a teacher's VM, an ARM Mac's Linux guest. A sentence such as
"this host has no systemd" is true on one of them. So a notebook never states
such a fact: it calls ``hostfacts.show(topic)``, which reads the kernel (the
mount table, PID 1, the cgroup trees, the doctor's KVM probe) and says what
is true here, in Markdown.

``facts()`` reads once per process; ``sentence(topic, facts)`` is pure, so a
test can ask what another host would be told.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from labsupport.cgroups import layout as cgroup_layout
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError


@dataclass(frozen=True)
class Facts:
    """The facts the notebooks' host sentences are made of."""

    architecture: str
    pid1: str               # the name of PID 1: systemd, init, tini, sh ...
    root_propagation: str   # of "/" in the host's mount table: shared, slave or private
    cgroup_kind: str        # v1, v2 or hybrid
    v1_controllers: tuple[str, ...]
    mqueue_mounted: bool
    own_cgroup: str         # "memory:/some/group" where the notebook is not at the top; else "/"
    kvm: str                # usable, pvm, none or unusable
    kvm_reason: str


def _root_propagation(mountinfo: str) -> str:
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[4] == "/":
            optional = fields[6:fields.index("-")]
            if any(f.startswith("shared:") for f in optional):
                return "shared"
            if any(f.startswith("master:") for f in optional):
                return "slave"
            return "private"
    return "private"


def _kvm() -> tuple[str, str]:
    from labsupport.vm import kvm  # the probe runs a test guest: only when a topic needs it
    probe = kvm.probe_accelerator()
    if probe.accelerator == "kvm":
        return "usable", probe.reason
    if not probe.kvm_device:
        return "none", probe.reason
    return ("pvm" if probe.pvm else "unusable"), probe.reason


@functools.cache
def facts() -> Facts:
    """This host's facts, read once per process."""
    mountinfo = Path("/proc/self/mountinfo").read_text()
    found = cgroup_layout.layout_from_mountinfo(mountinfo)
    # The first hierarchy where this process is not at the top (v2's line is "0::/PATH").
    own = next((f"{controllers or 'v2'}:{path}" for controllers, path in hoststate.own_cgroups().items()
                if path not in ("", "/")), "/")
    accelerator, reason = _kvm()
    return Facts(
        architecture=os.uname().machine,
        pid1=Path("/proc/1/comm").read_text().strip(),
        root_propagation=_root_propagation(mountinfo),
        cgroup_kind=found.kind,
        v1_controllers=tuple(sorted(found.v1_controllers)),
        mqueue_mounted=any(line.split(" - ", 1)[-1].startswith("mqueue ")
                           for line in mountinfo.splitlines()),
        own_cgroup=own or "/",
        kvm=accelerator, kvm_reason=reason)


def _mqueue(f: Facts) -> str:
    if f.mqueue_mounted:
        return ("This host mounts an `mqueue` filesystem (usually at `/dev/mqueue`) - but it shows "
                "the queues of the *host's* IPC namespace, so to look into another namespace the lab "
                "mounts one of its own in a throwaway child with a private mount namespace.")
    return ("This host mounts no `mqueue` filesystem (no `/dev/mqueue`), so the lab mounts one in a "
            "throwaway child with a private mount namespace.")


def _propagation(f: Facts) -> str:
    who = "systemd" if f.pid1 == "systemd" else f"`{f.pid1}`, not systemd"
    if f.root_propagation == "shared":
        return (f"On this host PID 1 is {who}, and `/` is **shared**: the trap is live here. The lab "
                "still springs it only on a shared tmpfs of its own in a scratch directory, so the "
                "host's `/` and `/proc` are never touched.")
    return (f"On this host PID 1 is {who}, and `/` is **{f.root_propagation}**: the trap could not "
            "spring here. So the lab makes one shared tmpfs of its own in a scratch directory and "
            "springs the trap there, as it would on a systemd machine - the host's `/` and `/proc` "
            "are never touched.")


def _net_cls(f: Facts) -> str:
    if "net_cls" in f.v1_controllers:
        return "This host mounts cgroup v1's `net_cls` controller (cgroup v2 dropped it)."
    return "This host does not mount `net_cls` (cgroup v2 dropped it; only v1 offers it)."


def _machine_group(f: Facts) -> str:
    if f.own_cgroup in ("", "/"):
        return ("On this host the notebook runs at the top of the cgroup tree, so runc's group "
                "would be made there, beside the machine's own groups.")
    return (f"On this host the notebook runs in the group `{f.own_cgroup}`, so runc's group would "
            "be made inside it - in a group the lab did not make.")


def _kvm_sentence(f: Facts) -> str:
    if f.kvm == "usable":
        return ("This host's `/dev/kvm` really runs a test guest: the lab's VMs use **KVM**, and "
                "their figures measure virtualization, not emulation.")
    if f.kvm == "pvm":
        return ("The kernel module behind this host's `/dev/kvm` is **kvm_pvm**: the host is itself a "
                "guest of a cloud hypervisor, and PVM runs nested guests without hardware "
                "virtualization by keeping them in a paravirtual world (its own page tables, its own "
                "entry code). A guest kernel must be **built for PVM** to run on it - Debian's stock "
                "kernel traps on its first privileged step. That is the seed's 반가상화 point, live: "
                "the guest OS has to be modified. So QEMU falls back to emulation (**TCG**) here.")
    if f.kvm == "none":
        return ("This host has no `/dev/kvm` (no hardware virtualization passed to it, or no kvm "
                "module): QEMU emulates every guest instruction (**TCG**).")
    return f"This host's `/dev/kvm` cannot run the test guest ({f.kvm_reason}), so QEMU uses **TCG**."


def _accelerator(f: Facts) -> str:
    if f.kvm == "usable":
        return ("On this host QEMU uses **KVM**: a VM's CPU figures measure the price of "
                "virtualization itself.")
    return ("On this host `/dev/kvm` cannot run a stock kernel (see notebook 12), so QEMU *emulates* "
            "the guest's CPU (**TCG**): a VM's CPU figures here measure emulation, not the price of "
            "virtualization.")


def _architecture(f: Facts) -> str:
    try:
        syscalls.number("pivot_root")
    except LabError:
        return f"This host is **{f.architecture}**, an architecture the lab has no tables for."
    return f"This host is **{f.architecture}**."


TOPICS = {"mqueue": _mqueue, "propagation": _propagation, "net_cls": _net_cls,
          "machine_group": _machine_group, "kvm": _kvm_sentence, "accelerator": _accelerator,
          "architecture": _architecture}


def sentence(topic: str, found: Facts | None = None) -> str:
    """The Markdown sentence for ``topic``, true on the host ``found`` describes (default: this one)."""
    if topic not in TOPICS:
        raise LabError(f"There is no host fact {topic!r}; choose one of: {', '.join(TOPICS)}.")
    return TOPICS[topic](found or facts())


def show(topic: str) -> object:
    """The sentence as Markdown in a notebook (plain text elsewhere)."""
    text = sentence(topic)
    try:
        from IPython.display import Markdown
    except ImportError:
        return text
    return Markdown(text)
