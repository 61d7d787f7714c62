"""Notebook 06 (network): two namespaces on a bridge, two servers on port 80, one published."""
from __future__ import annotations

from labsupport import net
from labsupport.course.exercises.nb06_network import FIRST, HOST_PORT, SECOND
from labsupport.net import publish as portproxy
from labsupport.net import run as netrun

ADDRESSES = {FIRST: "10.206.0.1/24", SECOND: "10.206.0.2/24"}


def solve(k: int) -> None:
    if k == 1:
        net.create_namespace(FIRST)
        net.set_up("lo", FIRST)
    elif k == 2:
        net.create_namespace(SECOND)
        bridge = net.add_bridge("br")
        for ns, address in ADDRESSES.items():
            net.plug(ns, bridge, address)
    elif k == 3:
        for ns in ADDRESSES:
            netrun.serve_page(ns, f"hello from {ns}\n")
    elif k == 4:
        portproxy.publish(SECOND, 80, HOST_PORT)
