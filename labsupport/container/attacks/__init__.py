"""Attacks on the lab's own container, run for real by root inside it.

Each defense of the container (seccomp, the device cgroup, masked paths, the
closed state directory ...) is proven by the attack it stops: the attack runs
once with the defense on and fails, and once with only that defense off and
succeeds - safely, since the lab made the target too. System calls that
busybox cannot make (clone with namespace flags, clone3, io_uring, add_key) are
made by ``probe.c``, a small static program built once at set-up and copied
into the container's root.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from labsupport import ownership
from labsupport.container import runtime, store
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.process import programs

SOURCE = Path(__file__).with_name("probe.c")
#: Where a container finds the probe.
INSIDE = "/lab-probe"


def probe() -> Path:
    """The probe, built from probe.c with ``gcc -static`` into the lab's cache (once per version)."""
    return programs.build(SOURCE)


def install(ref: str) -> None:
    """Put the probe into a running container's root, without following the root's links."""
    root = store.state(ref)["root"]
    syscalls.write_in_root(root, INSIDE, probe().read_bytes(), mode=0o755)


#: Attacks whose last word is said by another: "nnp" drops to nobody and execs "setuid".
_ANSWERED_BY = {"nnp": "setuid"}


def attempt(ref: str, attack: str) -> str:
    """Run one attack as the container's root; "allowed" or "refused ERRNO"."""
    result = runtime.exec_in(ref, [INSIDE, attack])
    line = result.stdout.strip()
    said = _ANSWERED_BY.get(attack, attack)
    if not line.startswith(f"{said}: "):
        raise LabError(f"The probe said nothing of {attack!r}: {result.stdout}{result.stderr}")
    return line.split(": ", 1)[1]


# -- the defense matrix: each defense, the attack it stops, on and off ----------------------

@contextmanager
def _container(name: str, **options: Any) -> Iterator[str]:
    """A throw-away busybox container with the probe inside (no network: nothing to reach)."""
    box = runtime.run("busybox", ["sleep", "120"], name=ownership.owned_name(name, max_len=40),
                      network="none", **options)
    try:
        install(box)
        yield box
    finally:
        runtime.remove(box, force=True)


def _escape(defended: bool) -> bool:
    from labsupport.namespaces import chroot

    marker = chroot.write_host_marker()
    try:
        with _container("esc") as box:
            if defended:
                return runtime.try_escape(box, marker).escaped
            return chroot.try_escape(store.state(box)["root"], marker).escaped  # chroot, no pivot_root
    finally:
        chroot.remove_scratch(marker.parent)


def _change_a_link(defended: bool) -> bool:
    with _container("cap", **({} if defended else {"cap_add": ["CAP_NET_ADMIN"]})) as box:
        return runtime.exec_in(box, ["ip", "link", "set", "lo", "mtu", "1400"]).ok


def _setuid_again(defended: bool) -> bool:
    with _container("nnp", **({} if defended else {"no_new_privileges": False})) as box:
        runtime.exec_in(box, ["chmod", "4755", INSIDE])  # root inside makes the probe setuid-root
        return attempt(box, "nnp") == "allowed"


def _probe(attack: str, off: dict[str, Any]) -> Callable[[bool], bool]:
    def run(defended: bool) -> bool:
        with _container(attack[:6], **({} if defended else off)) as box:
            return attempt(box, attack) == "allowed"
    return run


def _read_interrupts(defended: bool) -> bool:
    with _container("mask", **({} if defended else {"mask_paths": False})) as box:
        return int(runtime.exec_in(box, ["sh", "-c", "wc -c < /proc/interrupts"]).stdout.strip() or 0) > 0


def _host_owns_files(defended: bool) -> bool:
    """Does a file root makes inside belong to the host's root?"""
    with _container("usr", **({"userns": True} if defended else {})) as box:
        runtime.exec_in(box, ["touch", "/tmp/made-inside"])  # /tmp: writable by anyone
        made = Path(store.state(box)["root"]) / "tmp" / "made-inside"
        return made.stat().st_uid == 0


def _fork_bomb(defended: bool) -> bool:
    """200 processes at once: a bounded stand-in for a fork bomb."""
    with _container("pid", **({"pids": 50} if defended else {})) as box:
        run = runtime.exec_in(box, ["sh", "-c", "n=0; while [ $n -lt 200 ]; do sleep 5 >/dev/null 2>&1 & n=$((n+1)); done; "
                                    "echo started $n"], timeout=60)
        return "started 200" in run.stdout and "fork" not in run.stderr


@dataclass(frozen=True)
class Defense:
    """One defense of the container and the attack that proves it."""

    name: str
    attack: str
    field: str
    docker: str
    succeeds: Callable[[bool], bool]  # (defense on?) -> did the attack get through?


DEFENSES = (
    Defense("pivot_root, old root detached", "notebook 01's chroot escape reads a host file",
            "root.path", "always (runc pivots)", _escape),
    Defense("dropped capabilities", "root changes a network interface (CAP_NET_ADMIN)",
            "process.capabilities", "--cap-add NET_ADMIN", _change_a_link),
    Defense("no_new_privs", "an ordinary user inside runs a setuid-root program",
            "process.noNewPrivileges", "--security-opt no-new-privileges", _setuid_again),
    Defense("seccomp", "clone() makes a user namespace (needs no capability)",
            "linux.seccomp", "--security-opt seccomp=unconfined",
            _probe("clone-newuser", {"seccomp": False})),
    Defense("device cgroup", "mknod the loop controller, then open it",
            "linux.resources.devices", "--device-cgroup-rule 'a *:* rwm'",
            _probe("device", {"device_rules": ["a *:* rwm"]})),
    Defense("masked paths", "read the host's interrupt counters (/proc/interrupts)",
            "linux.maskedPaths", "--security-opt systempaths=unconfined", _read_interrupts),
    Defense("user namespace", "root inside makes a file the host's root owns",
            "linux.uidMappings", "dockerd --userns-remap", _host_owns_files),
    Defense("pids limit", "start 200 processes at once (a bounded fork bomb)",
            "linux.resources.pids.limit", "--pids-limit 50", _fork_bomb),
)


def _outcome(got_through: bool) -> str:
    return "succeeds" if got_through else "blocked"


def matrix(defenses: Sequence[Defense] = DEFENSES) -> Table:
    """Each defense's attack, run for real with the defense on, then with only it off."""
    rows = [(d.name, d.attack, d.field, d.docker, _outcome(d.succeeds(True)), _outcome(d.succeeds(False)))
            for d in defenses]
    return Table(["defense", "the attack", "config.json field", "Docker flag", "defense on", "defense off"],
                 rows, "Each defense of the container, proven by the attack it stops")


def stopped_by(attack: str, off: dict[str, dict[str, Any]]) -> list[str]:
    """Which of the given defenses (name -> the run options that turn it off) stop ``attack``:
    it must fail with all of them on, and get through when only that one is off."""
    with _container("pred") as box:
        if attempt(box, attack) == "allowed":
            return []
    return [name for name, options in off.items() if _probe(attack, options)(False)]
