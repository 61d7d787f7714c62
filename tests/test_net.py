"""Network namespaces, veths, a bridge, two port-80 servers and a published port - from both sides.

Every test reads the kernel twice: through the lab's own functions and
through an independent view - iproute2 (``ip``), /proc/net, the host's
routing table - and checks the host gained nothing it should not have.
Traffic only ever goes to 127.0.0.0/8 or to addresses inside lab namespaces.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import labsupport
from labsupport import net, ownership
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.namespaces import ipc
from labsupport.net import publish as portproxy
from labsupport.net import run as netrun
from labsupport.net import views as netview
from labsupport.process import residue


@pytest.fixture()
def made() -> Iterator[None]:
    """Whatever a test builds with the net modules is removed after it, even when it fails."""
    yield
    netrun.clean_up()


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def _host_routes_and_addresses() -> tuple[str, str, str]:
    """The host's view of itself by iproute2: every route of every table, and every address."""
    return (_ip("-4", "route", "show", "table", "all"), _ip("-6", "route", "show", "table", "all"),
            _ip("-o", "addr", "show"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _host_listens(port: int) -> bool:
    """Is anything listening on 127.0.0.1:port in the host's namespace? (/proc/net/tcp)"""
    wanted = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(line.split()[1] == wanted and line.split()[3] == "0A" for line in lines)


def _pair(bridge_stem: str = "br") -> tuple[str, str, str]:
    """Two namespaces, red 10.203.0.2 and blue 10.203.0.3, plugged into one new bridge."""
    red, blue = net.create_namespace("red"), net.create_namespace("blue")
    bridge = net.add_bridge(bridge_stem)
    net.plug(red, bridge, "10.203.0.2/24")
    net.plug(blue, bridge, "10.203.0.3/24")
    return red, blue, bridge


#: Devices a kernel puts in every new namespace once the tunnel modules are loaded (tunl0, sit0 ...).
_FALLBACK_TUNNELS = {"ipip", "sit", "ip6tnl", "gre", "gretap", "erspan", "ip6gre", "vti", "vti6"}


def test_a_new_namespace_has_only_lo_and_it_is_down(made: None) -> None:
    host_links = hoststate.links()
    ns = net.create_namespace("t")
    inside = [link for link in net.links(ns) if link.kind not in _FALLBACK_TUNNELS]
    assert [(link.name, link.kind, link.state) for link in inside] == [("lo", "loopback", "DOWN")]
    shown = _ip("-n", ns, "-o", "link", "show", "up")  # iproute2 opens /run/netns/NAME itself
    assert shown == ""  # not one link up
    assert ": lo:" in _ip("-n", ns, "-o", "link", "show", "lo")
    assert ns in _ip("netns", "list")
    assert hoststate.links() == host_links

    assert not netrun.ping("127.0.0.1", ns).ok  # even its own loopback is unreachable
    net.set_up("lo", ns)
    assert netrun.ping("127.0.0.1", ns).ok
    assert net.is_up("lo", ns) and "lo" in hoststate.links()


def test_a_veth_end_moved_into_a_namespace_leaves_the_host(made: None) -> None:
    ns = net.create_namespace("t")
    a, b = net.add_veth("ta", "tb")
    assert {a, b} <= hoststate.links()
    assert net.move_link(b, ns, "eth1") == "eth1"
    assert a in hoststate.links() and b not in hoststate.links()
    ends = {link.name: link for link in net.links(ns)}
    assert ends["eth1"].peer == net.End(None, a)
    assert next(link for link in net.links(None) if link.name == a).peer == net.End(ns, "eth1")
    assert "eth1@" in _ip("-n", ns, "-o", "link", "show", "eth1")

    net.delete_link(a)  # one end deleted: the other goes with it, across the namespaces
    assert [link.name for link in net.links(ns) if link.kind not in _FALLBACK_TUNNELS] == ["lo"]


def test_a_running_process_s_namespace_gets_a_name_and_outlives_it(made: None) -> None:
    box = netrun.start_in(None, ["sleep", "60"], namespaces=["net"])
    deadline = time.monotonic() + 5
    while os.readlink(f"/proc/{box.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        assert time.monotonic() < deadline, "the box never got its own namespace"
        time.sleep(0.01)
    named = net.attach_namespace(box.pid, "box")
    assert netrun.in_namespace(box.pid, named) and named in _ip("netns", "list")
    bridge = net.add_bridge("br")
    net.plug(named, bridge, "10.203.0.5/24")
    box.stop()
    inside = [link.name for link in net.links(named) if link.kind not in _FALLBACK_TUNNELS]
    assert inside == ["lo", "eth0"]  # it outlived its process
    with pytest.raises(LabError, match="There is no process"):
        net.attach_namespace(box.pid, "gone")


def test_a_bridge_joins_two_namespaces_and_the_host_gains_no_address_or_route(made: None) -> None:
    routes_and_addresses = _host_routes_and_addresses()
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    red, blue, bridge = _pair()

    assert netrun.ping("10.203.0.3", red).ok and netrun.ping("10.203.0.2", blue).ok
    for ns in (red, blue):  # inside: only lo and eth0, the other end on the host
        inside = {link.name: link for link in net.links(ns) if link.kind not in _FALLBACK_TUNNELS}
        assert sorted(inside) == ["eth0", "lo"]
        assert inside["eth0"].peer is not None and inside["eth0"].peer.namespace is None
    host = {link.name: link for link in net.links(None)}
    ports = {name for name, link in host.items() if link.master == bridge}
    assert len(ports) == 2 and host[bridge].kind == "bridge"
    assert all(host[p].addresses == () for p in ports | {bridge})

    assert _host_routes_and_addresses() == routes_and_addresses
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forwarding
    assert bridge not in net.route_to("10.203.0.3")  # the host has no way in
    assert "unreachable" in net.route_to(net.FAR_AWAY, red)  # and red has no way out


def test_a_route_leads_to_an_address_behind_a_neighbour(made: None) -> None:
    red, blue, _ = _pair()
    net.add_address(blue, "lo", "10.203.9.3/32")
    assert "unreachable" in net.route_to("10.203.9.3", red)
    net.add_route(red, "10.203.9.0/24", via="10.203.0.3")
    assert "via 10.203.0.3 dev eth0" in net.route_to("10.203.9.3", red)
    assert "10.203.9.0/24 via 10.203.0.3 dev eth0" in _ip("-n", red, "route", "show")
    assert netrun.ping("10.203.9.3", red).ok


def test_two_servers_on_port_80_each_answer_with_their_own_page(made: None) -> None:
    host_80 = [addr for addr, _ in netview.listening(None) if addr.endswith(":80")]
    red, blue, _ = _pair()
    red_web = netrun.serve_page(red, "red page\n")
    blue_web = netrun.serve_page(blue, "blue page\n")

    assert os.readlink(f"/proc/{red_web.pid}/ns/net") != os.readlink(f"/proc/{blue_web.pid}/ns/net")
    assert netrun.listening_on(red_web.pid, 80) and netrun.listening_on(blue_web.pid, 80)
    # Each answers on its own address, asked across the bridge from the other namespace ...
    assert netrun.http_get("http://10.203.0.3/", red) == "blue page\n"
    assert netrun.http_get("http://10.203.0.2/", blue) == "red page\n"
    # ... and on its own loopback, asked from inside.
    assert netrun.http_get("http://127.0.0.1/", blue) == "blue page\n"
    assert netrun.http_get("http://127.0.0.1/", red) == "red page\n"

    with pytest.raises(LabError, match="Port 80 is already taken in namespace"):
        netrun.serve_page(red, "a second red server\n")
    assert [addr for addr, _ in netview.listening(None) if addr.endswith(":80")] == host_80


def test_a_published_port_answers_on_loopback_and_stops_after_unpublish(made: None) -> None:
    red, blue, _ = _pair()
    netrun.serve_page(red, "red page\n")
    netrun.serve_page(blue, "blue page\n")
    port = _free_port()
    published = portproxy.publish(blue, 80, port)

    assert netrun.http_get(published.url) == "blue page\n"
    assert _host_listens(port)  # the host's side: a socket on its own loopback
    assert netrun.in_namespace(published.pid, blue)  # the proxy itself sits in blue
    assert published in portproxy.published()
    assert ownership.MARKER_ENV.encode() in Path(f"/proc/{published.pid}/environ").read_bytes()

    portproxy.unpublish(port)
    with pytest.raises(LabError, match="Nothing answered"):
        netrun.http_get(published.url)
    assert netrun.has_exited(published.pid) and not _host_listens(port)
    assert all(p.host_port != port for p in portproxy.published())


def test_publishing_refuses_a_port_in_use_or_already_published(made: None) -> None:
    red, blue, _ = _pair()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(LabError, match="already in use by another program"):
            portproxy.publish(blue, 80, taken.getsockname()[1])
    port = _free_port()
    portproxy.publish(blue, 80, port)
    with pytest.raises(LabError, match=f"127.0.0.1:{port} is already published"):
        portproxy.publish(red, 80, port)
    with pytest.raises(LabError, match="only on the host's loopback"):
        portproxy.publish(red, 80, _free_port(), host_address="0.0.0.0")
    for bad in (0, 70000, "80"):
        with pytest.raises(LabError, match="is not a TCP port"):
            portproxy.publish(red, bad, _free_port())  # type: ignore[arg-type]
    with pytest.raises(LabError, match="Nothing is published"):
        portproxy.unpublish(_free_port())
    net.set_down("lo", red)
    with pytest.raises(LabError, match="loopback of namespace .* is down"):
        portproxy.publish(red, 80, _free_port())


@pytest.fixture()
def ns(made: None) -> str:
    return net.create_namespace("t")


BAD_INPUT: dict[str, tuple[Callable[[str], object], str]] = {
    "veth name too long": (lambda ns: net.add_veth("labveryverylongx", "eth0", ns), "at most 15"),
    "veth stem too long": (lambda ns: net.add_veth("veryverylong", "eth0", ns), "at most 8"),
    "peer name too long": (lambda ns: net.add_veth("tv", "eth0-far-too-long", ns), "at most 15"),
    "peer name taken inside": (lambda ns: net.add_veth("tv", "lo", ns),
                               "A link named lo already exists in namespace"),
    "address that does not parse": (lambda ns: net.add_address(ns, "lo", "10.203.0.300/24"),
                                    "not an IP address"),
    "address with no prefix": (lambda ns: net.add_address(ns, "lo", "10.203.0.2"), "no prefix length"),
    "public address": (lambda ns: net.add_address(ns, "lo", "8.8.8.8/24"), "public internet address"),
    "namespace that does not exist": (lambda ns: netview.show("labnosuchns"),
                                      "no network namespace named 'labnosuchns'"),
    "a host link that is not the lab's": (lambda ns: net.set_up("lo"), "not the lab's"),
    "gateway off every subnet": (lambda ns: net.add_route(ns, "10.203.9.0/24", via="10.203.99.1"),
                                 "not on any subnet"),
    "network with host bits": (lambda ns: net.add_route(ns, "10.203.9.3/24", link="lo"),
                               "not a network"),
    "fetch of a lab address from the host": (lambda ns: netrun.http_get("http://10.203.0.3/"),
                                             "only from 127.0.0.0/8"),
    "namespace that exists": (lambda ns: net.create_namespace(ns), "already exists"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_gets_one_plain_sentence(ns: str, case: str) -> None:
    call, fragment = BAD_INPUT[case]
    with pytest.raises(LabError) as caught:
        call(ns)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message and message.endswith(".") and "Traceback" not in message


def test_a_veth_name_that_exists_is_refused(ns: str) -> None:
    host_end, _ = net.add_veth("tv", "eth0", ns)
    with pytest.raises(LabError, match=f"A link named {host_end} already exists on the host"):
        net.add_veth(host_end, "eth1", ns)
    with pytest.raises(LabError, match="A link named eth0 already exists in namespace"):
        net.add_veth("tw", "eth0", ns)


def _whole_network() -> tuple[str, str, str, int, int, int]:
    """Everything at once: namespaces, bridge, veths, a web server and a published port."""
    red, blue, bridge = _pair()
    web = netrun.serve_page(blue, "blue page\n")
    proxy = portproxy.publish(blue, 80, _free_port())
    host_end = next(link.name for link in net.links(None) if link.master == bridge)
    return red, bridge, host_end, web.pid, proxy.pid, proxy.host_port


def test_the_residue_check_and_ownership_see_everything_left(made: None) -> None:
    before = residue.snapshot()
    red, bridge, host_end, web, proxy, _ = _whole_network()
    left = residue.residue(before, residue.snapshot())
    for line in (f"link: {bridge}", f"link: {host_end}", f"network namespace: {red}",
                 f"mount: nsfs nsfs on /run/netns/{red}"):
        assert line in left
    processes = " ".join(line for line in left if line.startswith("process:"))
    assert f"PID {web} " in processes and f"PID {proxy} " in processes
    assert {bridge, host_end} <= set(ownership.lab_links())
    assert red in ownership.lab_netns()
    assert {web, proxy} <= set(ownership.lab_processes())
    assert any(m.mountpoint == f"/run/netns/{red}" for m in ownership.lab_mounts())

    netrun.clean_up()
    assert residue.residue_since(before) == []


def _other_lab_work(mine: set[str]) -> list[str]:
    """What else of the lab's is live: a global clean would remove that too."""
    found = [f"process {p}" for p in ownership.lab_processes() if str(p) not in mine]
    found += [n for n in ownership.lab_links() + ownership.lab_netns() if n not in mine]
    found += [m.mountpoint for m in ownership.lab_mounts() if Path(m.mountpoint).name not in mine]
    found += [str(g) for g in ownership.lab_cgroups()] + ownership.lab_loop_devices()
    found += [str(o) for o in ipc.lab_objects()]
    for directory in (ownership.TEMP_DIR, ownership.HELD_NS_DIR):
        found += [e.name for e in directory.glob("*") if e.name not in mine] if directory.is_dir() else []
    return found


def test_labsupport_clean_removes_the_network_work(made: None) -> None:
    if _other_lab_work(set()):
        pytest.skip("other lab work is live on this host: a global clean would remove it too")
    before = residue.snapshot()
    red, bridge, host_end, web, proxy, port = _whole_network()
    # Checked again just before: something may have started meanwhile.
    mine = {*(name for _, name in net.made_here()), str(web), str(proxy),
            *(e.name for e in ownership.TEMP_DIR.glob(f"{ownership.PREFIX}-netweb-*"))}
    others = _other_lab_work(mine)
    if others:
        pytest.skip(f"other lab work is live on this host ({', '.join(others[:3])}): "
                    "a global clean would remove it too")
    report = labsupport.clean()
    assert bridge in report.removed["links"] and red in report.removed["network namespaces"]
    assert {str(web), str(proxy)} <= set(report.removed["processes"])
    assert red not in _ip("netns", "list") and not _host_listens(port)
    # A veth's host end goes with its namespace - by clean's hand, or the kernel's first.
    assert not {bridge, host_end} & hoststate.links()
    netrun.clean_up()  # collects the killed children, so no zombie is left
    assert residue.residue_since(before) == []
