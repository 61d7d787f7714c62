"""Network namespaces, veth pairs, a bridge, addresses and routes - on pyroute2.

A network namespace is a whole network stack of its own: links, addresses,
routes, sockets and port numbers. That is why two web servers can both listen
on port 80 when each has its own namespace. This module builds what Docker
builds for a container - a named namespace, a veth pair (a virtual cable)
with one end inside, a bridge (a virtual switch) on the host joining the
outer ends, addresses and routes - and reads back what each side has
(``netview`` lays that out as tables and a picture; ``netrun`` runs programs
inside; ``portproxy`` publishes a port on the host's loopback).

Three design choices, and why:

* **One worker thread for netlink.** pyroute2 0.9 is built on asyncio; its
  synchronous ``IPRoute`` drives an event loop with ``run_until_complete``,
  which fails in a Jupyter kernel's main thread ("This event loop is already
  running"). So every pyroute2 call runs on one dedicated thread that never
  runs a loop of its own; the functions here hand their work to it and wait.
  One thread also means two calls never interleave.
* **Named namespaces without a shared /run/netns.** ``ip netns add`` and
  ``pyroute2.netns.create`` first make /run/netns a shared mount point, a
  lasting change to the host's mount table. The lab bind-mounts only the
  namespace file (/run/netns/lab...), from a child made by the lab's runner;
  ``ip netns`` lists it all the same, and ``clean`` removes it.
* **The host stays as it was.** Links made on the host carry a ``lab`` name
  and no address - IPv6 is switched off on them, so not even a link-local
  address or route appears. Addresses and routes are only set inside lab
  namespaces, programs are only pointed at 127.0.0.0/8 from the host, so no
  packet is routed off the machine; nothing forwards on the host or touches
  its firewall.

Names: a host link or namespace name that starts with ``lab`` is used as it
is; any other name is a stem, ``"red"`` -> a fresh ``"labred3f2a"``. Names
inside a lab namespace (``eth0``) are free: they die with the namespace.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from labsupport import ownership, process
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError, describe_errno

if TYPE_CHECKING:
    from pyroute2 import IPRoute

T = TypeVar("T")

#: The range the lab gives out inside its namespaces (never on the host).
LAB_SUBNET = ipaddress.ip_network("10.203.0.0/24")
#: An address that stands for "somewhere on the internet" in route look-ups:
#: TEST-NET-2, reserved for documentation, and only ever looked up, never sent to.
FAR_AWAY = "198.51.100.7"

_IFNAMSIZ = 15
_IFF_UP = 0x1
_IFF_LOWER_UP = 0x10000
_MAIN_TABLE = 254
_RTPROT_KERNEL = 2
_NO_NSID = 0xFFFFFFFF  # RTM_GETNSID's answer for "no id assigned here"
_RTN_NAMES = {1: "", 2: "local ", 3: "broadcast ", 7: "unreachable "}

#: What this process made, in order: ("namespace" | "link", name).
_made: list[tuple[str, str]] = []


def _note(kind: str, name: str) -> None:
    """Remember a namespace or link this process made, and tell ownership it is the lab's."""
    _made.append((kind, name))
    ownership.record_made("netns" if kind == "namespace" else "links", name)


# -- the netlink worker --------------------------------------------------------

_WORKER_NAME = "lab-netlink"
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _executor() -> ThreadPoolExecutor:
    """The netlink thread's pool - a new one in a forked child, where the old thread does not exist."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix=_WORKER_NAME))
    return _pool[1]


def _on_worker(func: Callable[[], T]) -> T:
    """Run ``func`` on the netlink thread, where no event loop runs, and wait for it."""
    if threading.current_thread().name.startswith(_WORKER_NAME):
        return func()
    return _executor().submit(func).result()


@contextmanager
def _rtnl(namespace: str | None) -> Iterator["IPRoute"]:
    """An rtnetlink socket in ``namespace`` (None: the host's). Worker thread only.

    pyroute2 is imported here, not at the top: the port proxy imports this
    module and never talks netlink.
    """
    from pyroute2 import IPRoute

    if namespace is None:
        ipr = IPRoute()
    else:
        # flags=0: never create a missing namespace (pyroute2 would, sharing /run/netns).
        ipr = IPRoute(netns=str(namespace_path(namespace)), flags=0)
    try:
        yield ipr
    finally:
        ipr.close()


def _where(namespace: str | None) -> str:
    return "on the host" if namespace is None else f"in namespace {namespace}"


def netlink(namespace: str | None, action: str, func: Callable[["IPRoute"], T],
             hints: dict[int, str] | None = None) -> T:
    """Run ``func(ipr)`` with a socket in ``namespace``; a refusal becomes one sentence."""
    from pyroute2.netlink.exceptions import NetlinkError

    def work() -> T:
        with _rtnl(namespace) as ipr:
            return func(ipr)

    try:
        return _on_worker(work)
    except NetlinkError as err:
        hint = (hints or {}).get(err.code)
        raise LabError(hint or f"The kernel refused to {action} {_where(namespace)}: "
                       f"{describe_errno(err.code)}.") from None
    except OSError as err:  # the namespace file vanished, or is no namespace
        raise LabError(f"Could not {action} {_where(namespace)}: {err}.") from None


def _index(ipr: "IPRoute", name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


# -- names -----------------------------------------------------------------------

def _check_link_name(name: str) -> str:
    """Refuse what the kernel would refuse, in words."""
    if not name:
        raise LabError("A link name cannot be empty: give one such as 'eth0'.")
    if len(name) > _IFNAMSIZ:
        raise LabError(f"The link name {name!r} is {len(name)} characters long; the kernel allows "
                       f"at most {_IFNAMSIZ} (IFNAMSIZ): pick a shorter one.")
    if "/" in name or ":" in name or any(c.isspace() for c in name) or name in (".", ".."):
        raise LabError(f"{name!r} cannot name a link (no '/', ':' or spaces): use letters, "
                       "digits, '-' or '_'.")
    return name


def _lab_name(name: str) -> str:
    """``'red'`` -> a fresh ``'labred3f2a'``; a name that starts with ``lab`` stays as it is."""
    if not ownership.is_lab_name(name):
        room = _IFNAMSIZ - len(ownership.PREFIX) - 4  # 'lab' + stem + 4 hex digits
        if len(name) > room:
            raise LabError(f"The stem {name!r} is too long: 'lab' + stem + 4 random hex digits must "
                           f"fit in {_IFNAMSIZ} characters, so use a stem of at most {room}.")
        name = ownership.owned_name(name)
    return _check_link_name(name)


def require_lab(name: str, what: str) -> None:
    if not ownership.is_lab_name(name):
        raise LabError(f"The {what} {name!r} is not the lab's (its name does not start with "
                       f"'lab'): the lab only changes what it made.")


# -- namespaces ------------------------------------------------------------------

def namespace_path(name: str) -> Path:
    """The file that keeps a named namespace alive: /run/netns/NAME, as ``ip netns`` uses."""
    path = ownership.NETNS_DIR / name
    if not name or "/" in name or not path.is_file():
        raise LabError(f"There is no network namespace named {name!r}: `ip netns` lists those "
                       "that exist; make one with net.create_namespace().")
    return path


def lab_namespaces() -> list[str]:
    """The lab's named network namespaces (what ``ip netns`` lists, lab names only)."""
    return ownership.lab_netns()


def _pin_own_namespace(path: str) -> None:
    """In a child just given a new network namespace: bind it to ``path`` so it outlives us."""
    syscalls.mount("/proc/self/ns/net", path, None, syscalls.MS_BIND)


def create_namespace(name: str = "ns") -> str:
    """Make a new, empty network namespace kept by name; returns its name.

    A child of the lab's runner unshares CLONE_NEWNET and bind-mounts its
    /proc/self/ns/net onto /run/netns/NAME - the namespace then lives on
    after the child exits, with nothing in it but a loopback link that is down.
    """
    name = _lab_name(name)
    path = ownership.NETNS_DIR / name
    if path.exists():
        raise LabError(f"A network namespace named {name} already exists: pick another name "
                       "or remove that one first.")
    ownership.NETNS_DIR.mkdir(exist_ok=True)
    path.touch()
    try:
        process.run_function(_pin_own_namespace, str(path), namespaces=["net"])
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    _note("namespace", name)
    return name


def _pin_namespace_of(pid: int, path: str) -> None:
    syscalls.mount(f"/proc/{pid}/ns/net", path, None, syscalls.MS_BIND)


def attach_namespace(pid: int, name: str = "ns") -> str:
    """Give the network namespace of a running process a name (``ip netns attach``).

    A container's namespace has none: it lives as long as its processes do.
    Named, it can be plugged into a bridge and its ports published - and it
    outlives the process until ``run.remove_namespace``. Returns the name.
    """
    if not isinstance(pid, int) or not Path(f"/proc/{pid}/ns/net").exists():
        raise LabError(f"There is no process {pid!r}: nothing to attach.")
    name = _lab_name(name)
    path = ownership.NETNS_DIR / name
    if path.exists():
        raise LabError(f"A network namespace named {name} already exists: pick another name.")
    ownership.NETNS_DIR.mkdir(exist_ok=True)
    path.touch()
    try:
        process.run_function(_pin_namespace_of, pid, str(path))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    _note("namespace", name)
    return name


def delete_veths(ipr: "IPRoute") -> None:
    for link in ipr.link("dump"):
        if link.get(("linkinfo", "kind")) == "veth":
            index = _index(ipr, link.get("ifname"))
            if index is not None:  # gone already, with its partner
                ipr.link("del", index=index)


# -- links -----------------------------------------------------------------------

def _require_absent(name: str, namespace: str | None) -> None:
    if netlink(namespace, "look up a link", lambda ipr: _index(ipr, name)) is not None:
        raise LabError(f"A link named {name} already exists {_where(namespace)}: pick another "
                       "name, or delete that link first.")


def _require_link(name: str, namespace: str | None) -> None:
    if netlink(namespace, "look up a link", lambda ipr: _index(ipr, name)) is None:
        raise LabError(f"There is no link named {name!r} {_where(namespace)}: "
                       f"netview.show({namespace!r}) lists the links there.")


def _host_link(name: str) -> None:
    """Only the lab's own links on the host may be changed - never eth0."""
    require_lab(name, "link")
    _require_link(name, None)


def _quiet_ipv6(name: str) -> None:
    """Switch IPv6 off on a host link of ours, so it gets no fe80:: address and no route.

    This sysctl belongs to the link and goes away with it.
    """
    knob = Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6")
    if knob.exists():
        knob.write_text("1\n")


_EXISTS = {17: "A link with one of those names already exists: pick other names."}


def add_veth(name: str, peer: str, namespace: str | None = None) -> tuple[str, str]:
    """A veth pair: two links joined like the two ends of a cable. Returns (name, peer).

    ``name`` stays on the host. ``peer`` is made on the host too, or directly
    inside ``namespace`` - which is how it can be called ``eth0`` there
    while the host has an ``eth0`` of its own.
    """
    name = _lab_name(name)
    peer = _lab_name(peer) if namespace is None else _check_link_name(peer)
    if namespace is None and peer == name:
        raise LabError("The two ends of a veth pair need two different names.")
    _require_absent(name, None)
    if namespace is not None:
        require_lab(namespace, "network namespace")
    _require_absent(peer, namespace)
    fd = os.open(namespace_path(namespace), os.O_RDONLY) if namespace is not None else None
    spec: dict[str, Any] = {"ifname": peer} if fd is None else {"ifname": peer, "net_ns_fd": fd}
    try:
        netlink(None, "add a veth pair",
                 lambda ipr: ipr.link("add", ifname=name, kind="veth", peer=spec), _EXISTS)
    finally:
        if fd is not None:
            os.close(fd)
    _note("link", name)
    _quiet_ipv6(name)
    if namespace is None:
        ownership.record_made("links", peer)  # both ends are the lab's while on the host
        _quiet_ipv6(peer)
    return name, peer


def move_link(link: str, namespace: str, new_name: str | None = None) -> str:
    """Move a host link of the lab's into a namespace (renamed on the way, if asked).

    The host loses it that instant: a link lives in exactly one namespace.
    """
    _host_link(link)
    require_lab(namespace, "network namespace")
    target = _check_link_name(new_name or link)
    _require_absent(target, namespace)
    fd = os.open(namespace_path(namespace), os.O_RDONLY)
    try:
        netlink(None, f"move {link}", lambda ipr: ipr.link(
            "set", index=_index(ipr, link), net_ns_fd=fd, ifname=target))
    finally:
        os.close(fd)
    return target


def add_bridge(name: str = "br") -> str:
    """A bridge - a virtual switch - on the host, up and with no address; returns its name.

    Docker's docker0 is one, with an address. This one has none, so the host
    gets no route into the lab's subnet and stays out of its traffic.
    """
    name = _lab_name(name)
    _require_absent(name, None)
    netlink(None, "add a bridge", lambda ipr: ipr.link("add", ifname=name, kind="bridge"), _EXISTS)
    _note("link", name)
    _quiet_ipv6(name)
    set_up(name)
    return name


def attach(link: str, bridge: str) -> None:
    """Plug a host link into a bridge (``ip link set LINK master BRIDGE``)."""
    _host_link(link)
    _host_link(bridge)

    def work(ipr: "IPRoute") -> None:
        found = ipr.link("get", index=_index(ipr, bridge))[0]
        if found.get(("linkinfo", "kind")) != "bridge":
            raise LabError(f"{bridge} is not a bridge: make one with net.add_bridge().")
        ipr.link("set", index=_index(ipr, link), master=found["index"])

    netlink(None, f"attach {link} to {bridge}", work)


def _set_state(link: str, namespace: str | None, state: str) -> None:
    if namespace is None:
        _host_link(link)
    else:
        require_lab(namespace, "network namespace")
        _require_link(link, namespace)
    netlink(namespace, f"set {link} {state}",
             lambda ipr: ipr.link("set", index=_index(ipr, link), state=state))


def set_up(link: str, namespace: str | None = None) -> None:
    """Bring a link up (``ip link set LINK up``), on the host or in a namespace."""
    _set_state(link, namespace, "up")


def preload() -> None:
    """Import pyroute2 now (it takes about 0.15 s), so processes forked later have it."""
    import pyroute2  # noqa: F401


def set_down(link: str, namespace: str | None = None) -> None:
    """Take a link down; a veth carries nothing unless both of its ends are up."""
    _set_state(link, namespace, "down")


def is_up(link: str, namespace: str | None = None) -> bool:
    """Is the link switched on (UP in ``ip link``)? Its carrier is another matter."""
    _require_link(link, namespace)
    return netlink(namespace, f"read {link}", lambda ipr: bool(
        ipr.link("get", index=_index(ipr, link))[0]["flags"] & _IFF_UP))


def delete_link(link: str, namespace: str | None = None) -> None:
    """Delete a link; deleting one end of a veth pair deletes the other too."""
    if namespace is None:
        _host_link(link)
    else:
        require_lab(namespace, "network namespace")
        _require_link(link, namespace)
    netlink(namespace, f"delete {link}", lambda ipr: ipr.link("del", index=_index(ipr, link)))
    if namespace is None:
        ownership.forget_made("links", link)


def plug(namespace: str, bridge: str, address: str, inside: str = "eth0") -> str:
    """Connect a namespace to a bridge as Docker connects a container to docker0.

    A veth pair with one end (``inside``) made in the namespace and the other
    plugged into the bridge; both ends, and the namespace's lo, up; the
    address on the inside end. Returns the host end's name. (The steps of
    add_veth, attach, set_up and add_address, on one socket per side: each
    socket into a namespace costs a few milliseconds, and containers start often.)
    """
    iface = parse_address(address)
    _host_link(bridge)  # refuse before anything is made
    require_lab(namespace, "network namespace")
    inside = _check_link_name(inside)
    host_end = ownership.owned_name("v", random_bytes=5)  # labv + 10 hex digits: one per container

    def host_side(ipr: "IPRoute") -> None:
        switch = ipr.link("get", index=_index(ipr, bridge))[0]
        if switch.get(("linkinfo", "kind")) != "bridge":
            raise LabError(f"{bridge} is not a bridge: make one with net.add_bridge().")
        ipr.link("add", ifname=host_end, kind="veth", peer={"ifname": inside, "net_ns_fd": fd})
        ipr.link("set", index=_index(ipr, host_end), master=switch["index"], state="up")

    def inside_side(ipr: "IPRoute") -> None:
        ipr.link("set", index=_index(ipr, "lo"), state="up")
        index = _index(ipr, inside)
        ipr.link("set", index=index, state="up")
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)

    fd = os.open(namespace_path(namespace), os.O_RDONLY)
    try:
        netlink(None, f"plug {namespace} into {bridge}", host_side,
                 {17: f"{namespace} already has a link named {inside}: plug it in once."})
    finally:
        os.close(fd)
    _note("link", host_end)
    _quiet_ipv6(host_end)
    netlink(namespace, f"switch on {inside} with {iface}", inside_side)
    return host_end


# -- addresses and routes ---------------------------------------------------------

def parse_address(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """``'10.203.0.2/24'`` -> an interface address; bad input gets one sentence."""
    if "/" not in str(text):
        raise LabError(f"{text!r} has no prefix length: write it as address/prefix, such as "
                       "10.203.0.2/24 (the /24 says which neighbours share the link).")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise LabError(f"{text!r} is not an IP address with a prefix length: write it like "
                       "10.203.0.2/24.") from None
    if iface.ip.is_global:
        raise LabError(f"{iface.ip} is a public internet address: inside the lab use a "
                       f"private range such as {LAB_SUBNET}.")
    return iface


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise LabError(f"{text!r} is not an IP address: write it like 10.203.0.3.") from None


def add_address(namespace: str, link: str, address: str) -> None:
    """Give a link inside a lab namespace an address, such as ``10.203.0.2/24``.

    The kernel adds the route to the link's subnet by itself. Addresses are
    never set on the host: that would give it a route into the lab.
    """
    iface = parse_address(address)
    require_lab(namespace, "network namespace")
    _require_link(link, namespace)
    netlink(namespace, f"add {iface} to {link}", lambda ipr: ipr.addr(
        "add", index=_index(ipr, link), address=str(iface.ip), prefixlen=iface.network.prefixlen),
        {17: f"{link} in namespace {namespace} already has the address {iface}."})


def add_route(namespace: str, destination: str, via: str | None = None,
              link: str | None = None) -> None:
    """Add a route inside a lab namespace: ``destination`` (a network or ``'default'``)
    through the gateway ``via``, or straight out of ``link``."""
    require_lab(namespace, "network namespace")
    if via is None and link is None:
        raise LabError("A route needs a gateway (via=...) or a link (link=...) to leave by.")
    try:
        network = ipaddress.ip_network("0.0.0.0/0" if destination == "default" else destination)
    except ValueError:
        raise LabError(f"{destination!r} is not a network: write it like 10.203.9.0/24 "
                       "(no host bits set), or 'default'.") from None
    spec: dict[str, Any] = {"dst": str(network)}
    if via is not None:
        spec["gateway"] = str(parse_ip(via))
    if link is not None:
        _require_link(link, namespace)

    def work(ipr: "IPRoute") -> None:
        if link is not None:
            spec["oif"] = _index(ipr, link)
        ipr.route("add", **spec)

    netlink(namespace, f"add a route to {network}", work, {
        101: f"The gateway {via} is not on any subnet namespace {namespace} is connected to: "
             "a gateway must be a neighbour on one of its links.",
        17: f"Namespace {namespace} already has a route to {network}."})


def route_to(address: str, namespace: str | None = None) -> str:
    """Which way a packet to ``address`` would go (``ip route get``) - nothing is sent."""
    target = str(parse_ip(address))

    def work(ipr: "IPRoute") -> str:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            found = ipr.route("get", dst=target)[0]
        except NetlinkError as err:
            return f"unreachable: {describe_errno(err.code)}"
        names = {link["index"]: link.get("ifname") for link in ipr.link("dump")}
        via = f" via {found.get('gateway')}" if found.get("gateway") else ""
        return (f"{_RTN_NAMES.get(found['type'], '')}{target}{via} dev {names.get(found.get('oif'))}"
                f" src {found.get('prefsrc')}")

    return netlink(namespace, f"look up a route to {target}", work)


@dataclass(frozen=True)
class Route:
    """One entry of a namespace's main IPv4 routing table."""

    destination: str  # "10.203.0.0/24" or "default"
    via: str | None  # the gateway, if any
    link: str | None  # the link packets leave by
    automatic: bool  # added by the kernel when an address was set


def route_entries(namespace: str | None = None) -> list[Route]:
    """The main IPv4 routing table of ``namespace`` (None: the host), as ``ip route`` lists it."""
    def work(ipr: "IPRoute") -> list[Route]:
        names = {link["index"]: link.get("ifname") for link in ipr.link("dump")}
        return [Route(f"{r.get('dst')}/{r['dst_len']}" if r.get("dst") else "default",
                      r.get("gateway"), names.get(r.get("oif")), r["proto"] == _RTPROT_KERNEL)
                for r in ipr.route("dump", family=socket.AF_INET) if r.get("table") == _MAIN_TABLE]

    if namespace is not None:
        namespace_path(namespace)
    return netlink(namespace, "list the routes", work)


# -- what each side sees ------------------------------------------------------------

@dataclass(frozen=True)
class End:
    """The other end of a veth: a link name and the namespace it is in (None: the host)."""

    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.name} {_where(self.namespace)}"


@dataclass(frozen=True)
class Link:
    """One link as a namespace sees it - a row of ``ip addr``."""

    namespace: str | None
    index: int
    name: str
    kind: str
    up: bool
    carrier: bool
    mac: str
    addresses: tuple[str, ...]
    master: str | None
    peer: End | None  # where the other end of a veth is

    @property
    def state(self) -> str:
        if not self.up:
            return "DOWN"
        return "UP" if self.carrier or self.kind == "loopback" else "UP, no carrier"


@dataclass
class _Place:
    """Raw netlink answers from one namespace, before peers are matched up."""

    namespace: str | None
    links: list[dict[str, Any]]
    addresses: dict[int, list[str]]
    nsids: dict[int, str | None]  # the ids this namespace gives the others


def _read_place(namespace: str | None, others: Sequence[str | None]) -> _Place:
    """Dump one namespace's links and addresses, and the ids it knows the others by."""
    from pyroute2.netlink.exceptions import NetlinkError

    with _rtnl(namespace) as ipr:
        links = [{"index": m["index"], "name": m.get("ifname"), "flags": m["flags"],
                  "kind": m.get(("linkinfo", "kind")), "mac": m.get("address") or "",
                  "master": m.get("master"), "link": m.get("link"),
                  "link_netnsid": m.get("link_netnsid")} for m in ipr.link("dump")]
        addresses: dict[int, list[str]] = {}
        for m in ipr.addr("dump"):
            addresses.setdefault(m["index"], []).append(f"{m.get('address')}/{m['prefixlen']}")
        nsids: dict[int, str | None] = {}
        for other in others:
            if other == namespace:
                continue
            try:
                fd = os.open("/proc/self/ns/net" if other is None else namespace_path(other),
                             os.O_RDONLY)
            except (LabError, OSError):
                continue  # removed meanwhile: nothing can point at it any more
            try:
                nsid = ipr.get_netnsid(fd=fd)["nsid"]
            except NetlinkError:  # EINVAL: the file of a namespace being removed, no namespace now
                continue
            finally:
                os.close(fd)
            if nsid != _NO_NSID:
                nsids[nsid] = other
    return _Place(namespace, links, addresses, nsids)


def _places(required: Sequence[str]) -> dict[str | None, _Place]:
    """Read the host, the ``required`` namespaces, and every other lab namespace still there.

    The others only name the far ends of veths. One that another notebook
    removes while we read it is skipped, not an error.
    """
    everyone: list[str | None] = [None, *sorted(set(lab_namespaces()) | set(required))]

    def work() -> dict[str | None, _Place]:
        places = {}
        for ns in everyone:
            try:
                places[ns] = _read_place(ns, everyone)
            except Exception as err:  # noqa: BLE001 - gone meanwhile, or not a namespace at all
                if ns is None or ns in required:
                    raise LabError(f"Could not read the links {_where(ns)}: {err}.") from None
        return places

    return _on_worker(work)


def _peer(link: dict[str, Any], place: _Place, places: dict[str | None, _Place]) -> End | None:
    """Match a veth with its other end: the peer's index, in the namespace its nsid names."""
    if link["kind"] != "veth" or link["link"] is None:
        return None
    nsid = link["link_netnsid"]
    if nsid is None:
        other = place
    elif place.nsids.get(nsid, "") in places:
        other = places[place.nsids[nsid]]
    else:  # a namespace with no name in /run/netns, such as a container's own
        return End(f"(unnamed, nsid {nsid})", f"link {link['link']}")
    name = next((p["name"] for p in other.links if p["index"] == link["link"]), f"link {link['link']}")
    return End(other.namespace, name)


def _links_of(place: _Place, places: dict[str | None, _Place]) -> list[Link]:
    names = {link["index"]: link["name"] for link in place.links}
    return [Link(place.namespace, link["index"], link["name"],
                 "loopback" if link["kind"] is None and link["name"] == "lo" else link["kind"] or "device",
                 bool(link["flags"] & _IFF_UP), bool(link["flags"] & _IFF_LOWER_UP), link["mac"],
                 tuple(place.addresses.get(link["index"], [])), names.get(link["master"]),
                 _peer(link, place, places))
            for link in place.links]


def links(namespace: str | None = None) -> list[Link]:
    """Every link ``namespace`` (None: the host) has, with where each veth's other end is."""
    if namespace is not None:
        namespace_path(namespace)
    places = _places([namespace] if namespace is not None else [])
    return _links_of(places[namespace], places)


def topology(namespaces: Sequence[str] | None = None) -> dict[str | None, list[Link]]:
    """The links of ``namespaces`` (all the lab's by default), and under None the host links
    that join them: the outer ends of their veths, and the bridges those are plugged into."""
    chosen = list(lab_namespaces() if namespaces is None else namespaces)
    for name in chosen:
        namespace_path(name)
    places = _places(chosen)
    found = {ns: _links_of(places[ns], places) for ns in chosen}
    host = _links_of(places[None], places)
    ends = [link for link in host if link.peer is not None and link.peer.namespace in chosen]
    bridges = {link.master for link in ends}
    found[None] = ends + [link for link in host if link.name in bridges]
    return found


def made_here(forget: bool = False) -> list[tuple[str, str]]:
    """What this process made, oldest first: ("namespace" | "link", name); ``forget`` empties the record."""
    made = list(_made)
    if forget:
        _made.clear()
    return made
