"""Network limits: shape a container's veth with a traffic-control qdisc.

The seed lists the network among the resources cgroups control, but no
cgroup controller caps bandwidth. cgroup v1's ``net_cls`` only *tags* a
group's packets with a class id, for a tc filter on the host to act on; v2
dropped it (an eBPF program can match a v2 group instead). What Docker and
Kubernetes' bandwidth plugin do is simpler: shape the container's end of
its veth pair with a token bucket filter (tbf) - a qdisc (queueing
discipline) that lets packets leave no faster than the rate, queues up to
``latency`` worth of them and drops the rest.

The qdisc is set over netlink (pyroute2), on the lab's netlink worker
thread in ``labsupport.net``. ``LinkedPair`` is the measuring bench: two lab
network namespaces joined by one veth, a receiver in one and a sender in
the other, both real TCP over the shaped link.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

from labsupport import net, ownership
from labsupport.cgroups.experiments import figure
from labsupport.cgroups.limits import parse_bitrate
from labsupport.kernel.errors import LabError
from labsupport.net import run as netrun

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_MIN_BURST = 32 * 1024  # a veth hands over up to 64 KiB GSO packets; tbf splits bigger ones
_TC_H_ROOT = 0xFFFFFFFF  # the parent id of a link's root qdisc
PORT = 5201

# Stdlib-only programs for the host's own Python, run inside the namespaces.
_RECEIVER = """
import json, socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(1)
conn, _ = server.accept()
start, total, last, samples = time.monotonic(), 0, 0.0, [(0.0, 0)]
while True:
    data = conn.recv(1 << 16)
    if not data:
        break
    total += len(data)
    now = time.monotonic() - start
    if now - last >= 0.05:
        samples.append((now, total))
        last = now
samples.append((time.monotonic() - start, total))
print(json.dumps(samples))
"""
_SENDER = """
import socket, sys, time
for _ in range(200):
    try:
        conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        break
    except OSError:
        time.sleep(0.025)
block, end = bytes(1 << 16), time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    conn.sendall(block)
conn.close()
"""


def _check_place(link: str, namespace: Optional[str]) -> None:
    if namespace is None and not ownership.is_lab_name(link):
        raise LabError(f"The link {link!r} is not the lab's (its name does not start with 'lab'): "
                       "the lab shapes only links it made.")
    if namespace is not None and not ownership.is_lab_name(namespace):
        raise LabError(f"The namespace {namespace!r} is not the lab's: the lab shapes only links "
                       "in namespaces it made.")


def _index(ipr: Any, link: str, namespace: Optional[str]) -> int:
    found = ipr.link_lookup(ifname=link)
    if not found:
        where = "on the host" if namespace is None else f"in namespace {namespace}"
        raise LabError(f"There is no link named {link!r} {where}.")
    return found[0]


def shape(link: str, rate: Union[str, int], namespace: Optional[str] = None,
          latency: str = "50ms") -> int:
    """Cap what leaves ``link`` at ``rate`` ('8mbit') with a tbf root qdisc; returns bits/s.

    Replaces any root qdisc the link had. Only egress is shaped - as on a
    real NIC, a link controls what it sends, not what it is sent.
    """
    bits = parse_bitrate(rate)
    _check_place(link, namespace)
    burst = max(_MIN_BURST, bits // 8 // 50)  # 20 ms worth of bytes, at least 32 KiB

    def work(ipr: Any) -> None:
        ipr.tc("replace", "tbf", _index(ipr, link, namespace), rate=f"{bits}bit",
               burst=burst, latency=latency)

    net.netlink(namespace, f"shape {link}", work)
    return bits


def unshape(link: str, namespace: Optional[str] = None) -> None:
    """Remove the link's root qdisc: the kernel's default queue returns, unshaped."""
    _check_place(link, namespace)

    def work(ipr: Any) -> None:
        index = _index(ipr, link, namespace)
        for q in ipr.get_qdiscs(index=index):
            if q["parent"] == _TC_H_ROOT and q.get("kind") == "tbf":
                ipr.tc("del", index=index, handle=q["handle"], parent=_TC_H_ROOT)

    net.netlink(namespace, f"unshape {link}", work)


def qdisc_stats(link: str, namespace: Optional[str] = None) -> dict[str, Any]:
    """The link's root qdisc as ``tc -s qdisc`` shows it: kind, bytes and packets sent, drops."""
    _check_place(link, namespace)

    def work(ipr: Any) -> dict[str, Any]:
        index = _index(ipr, link, namespace)
        for q in ipr.get_qdiscs(index=index):
            if q["parent"] == _TC_H_ROOT:
                stats = q.get("TCA_STATS") or {}
                return {"kind": q.get("kind"), "bytes": stats.get("bytes", 0),
                        "packets": stats.get("packets", 0), "drops": stats.get("drops", 0),
                        "overlimits": stats.get("overlimits", 0)}
        return {"kind": None}

    return net.netlink(namespace, f"read the qdisc of {link}", work)


@dataclass(frozen=True)
class Transfer:
    """What the receiver saw: (seconds, bytes so far) samples of one TCP stream."""

    samples: list[tuple[float, int]]

    def rate_bits(self, skip: float = 0.3) -> float:
        """Steady rate in bit/s, leaving out the first ``skip`` s (the bucket's initial burst)."""
        steady = [(t, n) for t, n in self.samples if t >= skip]
        if len(steady) < 2:
            steady = self.samples
        (t0, n0), (t1, n1) = steady[0], steady[-1]
        if t1 <= t0:
            raise LabError("The transfer was too short to measure: give it more seconds.")
        return (n1 - n0) * 8 / (t1 - t0)


class LinkedPair:
    """Two lab network namespaces joined by one veth: a bench for measuring a link.

    The sender's namespace plays the container; its ``eth0`` is the link to
    shape, as a container runtime would shape the container's end.
    """

    def __init__(self) -> None:
        self.receiver_ns = net.create_namespace("rx")
        self.sender_ns = None
        try:
            self.sender_ns = net.create_namespace("tx")
            host_end, _ = net.add_veth("sh", "eth0", self.sender_ns)
            net.move_link(host_end, self.receiver_ns, "eth0")
            for ns, address in ((self.receiver_ns, "10.203.0.201/24"),
                                (self.sender_ns, "10.203.0.202/24")):
                net.set_up("lo", ns)
                net.set_up("eth0", ns)
                net.add_address(ns, "eth0", address)
        except BaseException:
            self.remove()
            raise
        self.link = "eth0"
        self.receiver_address = "10.203.0.201"

    def transfer(self, seconds: float) -> Transfer:
        """Send as fast as TCP can for ``seconds``, sender -> receiver; the receiver counts."""
        receiver = netrun.start_in(self.receiver_ns, [sys.executable, "-c", _RECEIVER, str(PORT)])
        try:
            netrun.run_in(self.sender_ns, [sys.executable, "-c", _SENDER, self.receiver_address,
                                        str(PORT), str(seconds)], timeout=seconds + 15)
            receiver.wait(timeout=10)
        finally:
            netrun.stop_process(receiver.pid)
        if receiver.returncode != 0:
            raise LabError(f"The receiver failed: {receiver.stderr.strip()[-200:]}")
        return Transfer([tuple(s) for s in json.loads(receiver.stdout)])

    def shape(self, rate: Union[str, int]) -> int:
        """Shape the sender's eth0 (the container's end of its veth)."""
        return shape(self.link, rate, self.sender_ns)

    def unshape(self) -> None:
        unshape(self.link, self.sender_ns)

    def remove(self) -> None:
        """Remove both namespaces (the veth goes with them); safe to repeat."""
        for ns in (self.sender_ns, self.receiver_ns):
            if ns is not None and ns in net.lab_namespaces():
                netrun.remove_namespace(ns)

    def __enter__(self) -> "LinkedPair":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


# -- the experiment notebook 08 runs ------------------------------------------------------

@dataclass
class NetRun:
    """A TCP stream between two lab namespaces, unshaped and with a tbf on the sender's veth."""

    limit_bits: int
    free: Transfer
    shaped: Transfer
    qdisc: dict[str, Any] = field(default_factory=dict)

    @property
    def within(self) -> float:
        return self.shaped.rate_bits() / self.limit_bits

    def chart(self) -> "Figure":
        fig, (left, right) = figure(9, 3.4, panels=2)
        values = [self.free.rate_bits() / 1e6, self.shaped.rate_bits() / 1e6]
        left.bar(["no qdisc", "tbf"], values, color=["C0", "C1"])
        left.axhline(self.limit_bits / 1e6, color="C3", ls="--", label=f"rate {self.limit_bits / 1e6:g} Mbit/s")
        for i, value in enumerate(values):
            left.text(i, value * 1.2, f"{value:,.1f}", ha="center", fontsize=8)
        left.set_yscale("log")
        left.set_ylabel("Mbit/s (log scale)")
        left.legend(fontsize=8)
        right.plot([t for t, _ in self.shaped.samples], [n * 8 / 1e6 for _, n in self.shaped.samples],
                   lw=2, color="C1", label="received (shaped)")
        end = self.shaped.samples[-1][0]
        right.plot([0, end], [0, self.limit_bits * end / 1e6], color="C3", ls="--", label="the rate")
        right.set_xlabel("seconds")
        right.set_ylabel("Mbit received")
        right.legend(fontsize=8)
        fig.suptitle("A veth shaped with a token bucket filter: TCP between two lab namespaces",
                     fontsize=10, x=0.02, ha="left")
        return fig


def network_shaping(rate: str = "20mbit", seconds: float = 1.5) -> NetRun:
    """Measure a TCP stream over a fresh veth, then with the sender's end shaped to ``rate``."""
    with LinkedPair() as pair:
        free = pair.transfer(seconds)
        limit = pair.shape(rate)
        shaped = pair.transfer(seconds)
        return NetRun(limit, free, shaped, qdisc_stats(pair.link, pair.sender_ns))
