"""Notebook 06 (network namespace): checks that ask the kernel, from inside and from the host.

The learner builds in two namespaces with fixed names, ``labex06a`` and
``labex06b`` (lab names, so the clean-up cell and ``clean`` remove them).
Each check reads their links over netlink, pings and fetches from *inside*
them - never from the host, which only ever talks to its own loopback - and
looks at the host's side: its addresses, its bridges, its port 8086.
"""
from __future__ import annotations

import ipaddress

from labsupport import net
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.kernel.errors import LabError
from labsupport.net import publish as portproxy
from labsupport.net import run as netrun

#: The two namespaces the exercises use, and the host port exercise 4 publishes on.
FIRST, SECOND = "labex06a", "labex06b"
EXERCISE_NAMESPACES = (FIRST, SECOND)
HOST_PORT = 8086


def _missing(*names: str) -> Verdict | None:
    for name in names:
        if name not in net.lab_namespaces():
            return hint(f"There is no network namespace {name} yet (`ip netns` does not list it). "
                        "A name that starts with 'lab' is kept exactly as you give it.")
    return None


def _cables(namespace: str) -> list[tuple[net.Link, ipaddress.IPv4Interface]]:
    """Each (link, IPv4 address) of the namespace's links besides lo that are up."""
    return [(link, address) for link in net.links(namespace)
            if link.kind != "loopback" and link.up
            for address in map(ipaddress.ip_interface, link.addresses) if address.version == 4]


@exercise("06", 1, f"{FIRST} reaches its own 127.0.0.1")
def own_loopback() -> Verdict:
    missing = _missing(FIRST)
    if missing:
        return missing
    if not net.is_up("lo", FIRST):
        return hint(f"{FIRST} exists, but a program inside cannot even reach 127.0.0.1 there. "
                    "Which links does a new namespace start with, and in what state?")
    result = netrun.ping("127.0.0.1", FIRST)
    if not result.ok:
        return hint(f"lo is up in {FIRST}, yet ping 127.0.0.1 failed: {result.stderr.strip()}")
    return passed(f"ping 127.0.0.1 answers inside {FIRST}: its own lo, switched on by you - the "
                  "host's lo was never involved.")


def _connected_pair() -> tuple[Verdict | None, dict[str, ipaddress.IPv4Interface]]:
    """Exercise 2's work: both namespaces cabled to one bridge, with addresses - or a hint."""
    missing = _missing(FIRST, SECOND)
    if missing:
        return missing, {}
    found = {ns: _cables(ns) for ns in EXERCISE_NAMESPACES}
    for ns, cables in found.items():
        if not cables:
            return hint(f"{ns} has no link besides lo that is up and has an IPv4 address: it has "
                        "nothing to reach the other namespace with."), {}
    # Prefer two addresses in one subnet, if the learner tried several.
    pairs = [(a, b) for a in found[FIRST] for b in found[SECOND] if a[1].network == b[1].network]
    chosen = dict(zip(EXERCISE_NAMESPACES, pairs[0] if pairs else (found[FIRST][0], found[SECOND][0])))
    ends = [link.peer for link, _ in chosen.values()]
    if any(end is None or end.namespace is not None for end in ends):
        return hint("The other end of each namespace's cable should be on the host, plugged into "
                    "one bridge - not in the other namespace."), {}
    host = {link.name: link for link in net.links(None)}
    masters = {host[end.name].master if end.name in host else None for end in ends if end}
    if len(masters) != 1 or None in masters:
        return hint(f"The host ends of {FIRST}'s and {SECOND}'s cables are not plugged into the "
                    "same bridge: a bridge is the switch that joins them."), {}
    return None, {ns: address for ns, (_, address) in chosen.items()}


@exercise("06", 2, f"{FIRST} and {SECOND} on one bridge")
def two_namespaces_on_a_bridge() -> Verdict:
    problem, addresses = _connected_pair()
    if problem:
        return problem
    for here, there in ((FIRST, SECOND), (SECOND, FIRST)):
        result = netrun.ping(str(addresses[there].ip), here)
        if not result.ok:
            return hint(f"{here} cannot ping {there} at {addresses[there].ip}. Are both addresses "
                        "in one subnet, and is every link on the way up - on both sides?")
    nets = {a.network for a in addresses.values()}
    on_host = [text for link in net.links(None) for text in link.addresses
               if any(ipaddress.ip_interface(text).ip in n for n in nets)]
    if on_host:
        return hint(f"The host itself holds {on_host[0]}, in your namespaces' subnet: that gives it "
                    "a route into them. Keep the host's side without an address.")
    return passed(f"{FIRST} ({addresses[FIRST]}) and {SECOND} ({addresses[SECOND]}) answer each "
                  "other's ping across the bridge, and the host holds no address in their subnet.")


def _page(namespace: str, url: str) -> str | None:
    try:
        return netrun.http_get(url, namespace)
    except LabError:
        return None


@exercise("06", 3, "Two web servers, both on port 80")
def two_servers_on_port_80() -> Verdict:
    problem, addresses = _connected_pair()
    if problem:
        return problem
    for ns in EXERCISE_NAMESPACES:
        if not any(netrun.listening_on(pid, 80) for pid in netrun.processes_in(ns)):
            return hint(f"No program in {ns} listens on port 80.")
    pages = {there: _page(here, f"http://{addresses[there].ip}/")
             for here, there in ((FIRST, SECOND), (SECOND, FIRST))}
    for ns, page in pages.items():
        if not page:
            return hint(f"Something listens on port 80 in {ns}, but fetching "
                        f"http://{addresses[ns].ip}/ from the other namespace got no page.")
    if pages[FIRST] == pages[SECOND]:
        return hint("Both servers answer with the same page: make each one say which namespace "
                    "it is in, so you can tell them apart.")
    return passed(f"Port 80 twice, no clash: {addresses[FIRST].ip}:80 says "
                  f"{pages[FIRST].strip()[:40]!r}, {addresses[SECOND].ip}:80 says "
                  f"{pages[SECOND].strip()[:40]!r}.")


@exercise("06", 4, f"{SECOND}'s server on the host's 127.0.0.1:{HOST_PORT}")
def published_on_loopback() -> Verdict:
    missing = _missing(SECOND)
    if missing:
        return missing
    found = [p for p in portproxy.published() if p.host_port == HOST_PORT]
    if not found:
        return hint(f"The lab publishes nothing on 127.0.0.1:{HOST_PORT} yet. The host cannot reach "
                    f"{SECOND}'s address; something on the host's loopback has to pass the "
                    "connections in.")
    if found[0].namespace != SECOND:
        return hint(f"127.0.0.1:{HOST_PORT} leads into {found[0].namespace}, not into {SECOND}.")
    inside = _page(SECOND, f"http://127.0.0.1:{found[0].port}/")
    if inside is None:
        return hint(f"127.0.0.1:{HOST_PORT} leads to port {found[0].port} of {SECOND}, but nothing "
                    f"answers there inside {SECOND}.")
    try:
        outside = netrun.http_get(f"http://127.0.0.1:{HOST_PORT}/")
    except LabError as err:
        return hint(str(err))
    if outside != inside:
        return hint(f"127.0.0.1:{HOST_PORT} answers, but not with the page {SECOND} serves.")
    return passed(f"The notebook fetched {SECOND}'s page from 127.0.0.1:{HOST_PORT}: the proxy "
                  f"(PID {found[0].pid}) listens on the host's loopback and connects inside {SECOND}.")


def reset() -> list[str]:
    """What notebook 06's exercises leave besides the exercise directory, removed (``reset 06``)."""
    from labsupport.net import run as netrun

    done = []
    if any(p.host_port == HOST_PORT for p in portproxy.published()):
        portproxy.unpublish(HOST_PORT)
        done.append(f"unpublished 127.0.0.1:{HOST_PORT}")
    present = [ns for ns in EXERCISE_NAMESPACES if ns in net.lab_namespaces()]
    if present:
        rows = netrun.clean_up(namespaces=present).rows
        done += [f"{what}: {removed}" for what, removed in rows if removed != "none"]
    return done
