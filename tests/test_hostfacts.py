"""Notebook sentences about "this host" come from the host they run on, never from prose.

Each topic is checked against the kernel here, then asked about a different
host (a systemd laptop on arm64 with pure cgroup v2 and a working KVM): the
sentence must change with the facts. And no notebook's prose may state a host
fact itself.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from labsupport.course import doctor, hostfacts
from labsupport.kernel.errors import LabError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

LAPTOP = hostfacts.Facts(architecture="aarch64", pid1="systemd", root_propagation="shared",
                         cgroup_kind="v2", v1_controllers=(), mqueue_mounted=True,
                         own_cgroup="v2:/user.slice/user-1000.slice/session-2.scope",
                         kvm="usable", kvm_reason="a test guest ran")

#: Ways prose states a fact of the machine it was written on.
HOST_CLAIMS = re.compile(r"this (host|machine)('s)? (has|is|does|runs|mounts|offers|cannot)\b|kvm_pvm"
                         r"|on this (host|machine)[^.?]*\b(is|has|would be)\b", re.I)


def test_each_topic_says_what_the_kernel_shows_here() -> None:
    facts = hostfacts.facts()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert ("mounts no `mqueue`" in hostfacts.sentence("mqueue")) == (" - mqueue " not in mounts)
    pid1 = Path("/proc/1/comm").read_text().strip()
    assert pid1 in hostfacts.sentence("propagation") or pid1 == "systemd"
    assert f"**{facts.root_propagation}**" in hostfacts.sentence("propagation")
    kvm_row = doctor.check("kvm")
    assert (facts.kvm == "usable") == (kvm_row.status == "ok"), (facts.kvm, kvm_row)
    assert facts.architecture in hostfacts.sentence("architecture")


def test_another_host_is_told_other_facts() -> None:
    here = hostfacts.facts()
    for topic in hostfacts.TOPICS:
        assert hostfacts.sentence(topic, LAPTOP), topic
    assert "**shared**" in hostfacts.sentence("propagation", LAPTOP)
    assert "KVM" in hostfacts.sentence("kvm", LAPTOP) and "PVM" not in hostfacts.sentence("kvm", LAPTOP)
    assert "aarch64" in hostfacts.sentence("architecture", LAPTOP)
    assert "does not mount `net_cls`" in hostfacts.sentence("net_cls", LAPTOP)
    pvm = replace(LAPTOP, kvm="pvm")
    assert "kvm_pvm" in hostfacts.sentence("kvm", pvm)
    if here != LAPTOP:
        assert any(hostfacts.sentence(t) != hostfacts.sentence(t, LAPTOP) for t in hostfacts.TOPICS)


def test_an_unknown_topic_is_refused_in_one_sentence() -> None:
    with pytest.raises(LabError, match="no host fact 'gpu'"):
        hostfacts.sentence("gpu")


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_no_notebook_states_a_host_fact_in_prose(notebook: str) -> None:
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    claims = [(cell.get("id"), match.group(0)) for cell in cells if cell["cell_type"] == "markdown"
              for match in HOST_CLAIMS.finditer("".join(cell["source"]))]
    assert not claims, f"prose states this host's facts (use hostfacts.show): {claims}"
