"""A container's plan is the one list of steps that runs: every step names a field the spec
parser accepts, every step has code that takes it, and a running container's plan says
what the kernel shows."""
from __future__ import annotations

import pytest

from labsupport import container, process
from labsupport.container import hardening, shim
from labsupport.container import plan as plans
from labsupport.container import spec as specs


def test_every_step_names_a_field_the_parser_accepts() -> None:
    for step in plans.every_step():
        if step.field and step.field != plans.ENGINE:
            assert specs.accepts(step.field), f"{step.name!r} names {step.field}, which parse refuses"


def test_the_field_check_can_fail() -> None:
    """The hand-written table this replaced named linux.rootfsPropagation, which parse refuses."""
    assert not specs.accepts("linux.rootfsPropagation")
    assert not specs.accepts("linux.intelRdt")
    assert specs.accepts("linux.resources.memory.limit") and specs.accepts("process.noNewPrivileges")


def test_every_step_has_code_that_takes_it() -> None:
    for step in plans.every_step():
        if step.where == plans.HOST:
            assert step.name in shim.HOST_ACTIONS, step.name
        elif step.where == plans.AFTER_PIVOT:
            assert step.name in hardening.ACTIONS, step.name
        else:
            assert step.name in [name for name, _, _ in process.ENTER_STEPS], step.name


def test_a_plan_holds_only_what_its_spec_asks_for() -> None:
    default = specs.Spec(args=["/bin/true"], root="/")
    names = plans.plan(default).names()
    assert "install the seccomp filter" not in names and "set the hostname" not in names
    assert "become root of the user namespace (the parent writes the maps)" not in names
    asked = specs.Spec(args=["/bin/true"], root="/", hostname="box", root_readonly=True,
                       namespaces=["pid", "net", "ipc", "uts", "mnt", "user"], uid_map="0 100000 65536",
                       gid_map="0 100000 65536", seccomp=container.seccomp.DEFAULT)
    names = plans.plan(asked, publish=True).names()
    for wanted in ("install the seccomp filter", "set the hostname", "make the root read-only",
                   "become root of the user namespace (the parent writes the maps)",
                   "publish ports on the host"):
        assert wanted in names
    # With a user namespace the child makes the PID namespace itself (it must belong to it).
    assert "make a PID namespace for the next child" not in names
    assert "fork again, to be PID 1 of the PID namespace" in names
    # Identity last, exec the very last: each step needs the rights the next one drops.
    assert names[-5:] == ["set the user and groups", "drop capabilities", "set no_new_privs",
                          "install the seccomp filter", "exec the program"]


def _status(pid: int) -> dict[str, str]:
    lines = open(f"/proc/{pid}/status").read().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@pytest.mark.parametrize("seccomp", [True, False])
def test_a_running_containers_plan_is_what_the_kernel_shows(seccomp: bool) -> None:
    box = container.run("busybox", ["sleep", "60"], name=f"labplan-{int(seccomp)}", network="none",
                        seccomp=seccomp)
    try:
        plan = container.plan_of(box)
        state = container.state(box)
        names = plan.names()
        assert ("install the seccomp filter" in names) == seccomp
        assert _status(state["pid"])["Seccomp"].strip() == ("2" if seccomp else "0")
        assert "plug into the lab bridge, with an address and /etc/hosts" not in names  # network none
        assert "set no_new_privs" in names and _status(state["pid"])["NoNewPrivs"].strip() == "1"
        table = plan.table()
        assert table.column("step") == names and len(table.rows) == len(plan.steps)
    finally:
        container.remove(box, force=True)
