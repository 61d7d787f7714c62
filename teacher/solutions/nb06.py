"""Notebook 06 (network): one cable between two namespaces, a router namespace between two
subnets, and a published port timed against the server's own loopback."""
from __future__ import annotations

from labsupport import net
from labsupport.course.exercises.nb06_network import (
    FIRST,
    HOST_PORT,
    LEFT,
    RIGHT,
    ROUTER,
    SECOND,
)
from labsupport.course.predictions import predict
from labsupport.net import publish as portproxy
from labsupport.net import run as netrun


def solve(k: int) -> None:
    if k == 1:
        for ns in (FIRST, SECOND):
            net.create_namespace(ns)
        one, other = net.add_veth("x6", "y6")
        for end, ns, address in ((one, FIRST, "10.206.1.1/30"), (other, SECOND, "10.206.1.2/30")):
            net.move_link(end, ns, "eth0")
            net.set_up("eth0", ns)
            net.add_address(ns, "eth0", address)
    elif k == 2:
        for ns in (LEFT, ROUTER, RIGHT):
            net.create_namespace(ns)
        for ns, side, inner, outer in ((LEFT, "c6", "10.206.2.2/24", "10.206.2.1/24"),
                                       (RIGHT, "d6", "10.206.3.2/24", "10.206.3.1/24")):
            here, there = net.add_veth(f"{side}a", f"{side}b")
            net.move_link(here, ns, "eth0")
            net.move_link(there, ROUTER, f"to{side}")
            for link, where, address in (("eth0", ns, inner), (f"to{side}", ROUTER, outer)):
                net.set_up(link, where)
                net.add_address(where, link, address)
            net.add_route(ns, "default", via=outer.split("/")[0])
        netrun.run_in(ROUTER, ["busybox", "sysctl", "-w", "net.ipv4.ip_forward=1"])
    elif k == 3:
        predict("06", 3, "about 3 times as long: the proxy makes a second connection")
        if SECOND not in net.lab_namespaces():
            net.create_namespace(SECOND)
        net.set_up("lo", SECOND)
        netrun.serve_page(SECOND, f"hello from {SECOND}\n")
        portproxy.publish(SECOND, 80, HOST_PORT)
