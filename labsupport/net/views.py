"""What each side of a network namespace sees: ``ip addr``, ``ip route``, ``ss`` - and a picture.

Isolation is easiest to believe from both sides at once, so every view here
takes a namespace name, or None for the host, and the notebook shows them
next to each other. The data comes from ``net`` (netlink, read now); this
module only lays it out as tables a notebook shows as HTML and a terminal as
text, and draws the lab's namespaces, veths and bridges with matplotlib.
"""
from __future__ import annotations

from typing import Any, Sequence

from labsupport import net
from labsupport.kernel.tables import Table
from labsupport.net import run as netrun


def _title(namespace: str | None) -> str:
    return "the host" if namespace is None else f"namespace {namespace}"


def _connection(link: net.Link) -> str:
    parts = [f"other end: {link.peer}"] if link.peer else []
    if link.master:
        parts.append(f"plugged into {link.master}")
    return "\n".join(parts) or "-"


def show(namespace: str | None = None) -> Table:
    """A namespace's links, like ``ip addr`` run inside it (None: the host's own)."""
    rows = [(link.index, link.name, link.kind, link.state, link.mac,
             "\n".join(link.addresses) or "-", _connection(link))
            for link in net.links(namespace)]
    return Table(["#", "link", "kind", "state", "MAC address", "addresses", "connected to"], rows,
                 f"Links of {_title(namespace)} ({len(rows)})")


def routes(namespace: str | None = None) -> Table:
    """A namespace's IPv4 routing table, like ``ip route``: which way each destination leaves."""
    rows = [(r.destination, r.via or "-", r.link or "-",
             "the kernel, for an address" if r.automatic else "added")
            for r in net.route_entries(namespace)]
    return Table(["destination", "via", "leaves by", "made by"], rows,
                 f"Routes of {_title(namespace)} ({len(rows)})")


def route_lookups(address: str, namespaces: Sequence[str | None]) -> Table:
    """The same ``ip route get`` in several namespaces side by side - a look-up; nothing is sent."""
    return Table(["asked in", f"the way to {address}"],
                 [(_title(ns), net.route_to(address, ns)) for ns in namespaces],
                 "ip route get: a look-up, nothing is sent")


def listening(namespace: str | None = None) -> list[tuple[str, str]]:
    """TCP sockets listening in ``namespace``: (address:port, program), as ``ss -ltnp`` shows them.

    ``ss`` is the host's own program, run joined to the namespace - it reads
    the sockets of whichever namespace it is in.
    """
    out = netrun.run_in(namespace, ["ss", "-H", "-l", "-t", "-n", "-p"]).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        program = fields[5].split('"')[1] if len(fields) > 5 and '"' in fields[5] else "?"
        found.append((fields[3], program))
    return found


def listening_table(namespaces: Sequence[str | None], port: int | None = None) -> Table:
    """Who listens on which TCP port (only ``port``, if given), in each namespace side by side."""
    rows = [(_title(ns), "\n".join(f"{addr}  ({prog})" for addr, prog in listening(ns)
                                   if port is None or addr.endswith(f":{port}")) or "-")
            for ns in namespaces]
    what = "any port" if port is None else f"port {port}"
    return Table(["in", f"listening on {what} (ss -ltnp)"], rows, "Who listens where")


def draw(namespaces: Sequence[str] | None = None,
         title: str = "The lab's network, read from the kernel just now") -> Any:
    """A matplotlib figure: each namespace (all the lab's by default) with its links, the
    host with the bridges that join them, and a line for each veth."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    found = net.topology(namespaces)
    spaces = [ns for ns in found if ns is not None]
    width = max(3.2 * len(spaces), 6.4)
    fig, ax = plt.subplots(figsize=(width * 0.9 + 1, 4.6))
    ax.set_xlim(0, width)
    ax.set_ylim(0, 5)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    ax.add_patch(FancyBboxPatch((0.1, 0.1), width - 0.2, 1.9, boxstyle="round,pad=0.02",
                                fc="#eeeeee", ec="#777777"))
    ax.text(0.25, 0.2, "the host (its own network namespace)", fontsize=9, color="#444444")
    anchors: dict[tuple[str | None, str], float] = {}
    column = width / max(len(spaces), 1)
    for i, ns in enumerate(spaces):
        x0 = i * column + 0.15
        ax.add_patch(FancyBboxPatch((x0, 2.7), column - 0.3, 2.0, boxstyle="round,pad=0.02",
                                    fc="#dbe9f6", ec="#3b6ea5"))
        ax.text(x0 + 0.1, 4.6, f"netns {ns}", fontsize=9, va="top", weight="bold", color="#1f3f66")
        for j, link in enumerate(found[ns]):
            first = link.addresses[0] if link.addresses else ""
            ax.text(x0 + 0.1, 4.25 - 0.3 * j, f"{link.name} {link.state}  {first}",
                    fontsize=8, va="top", family="monospace")
        ends = [link for link in found[ns] if link.kind != "loopback"]
        for j, link in enumerate(ends):
            anchors[(ns, link.name)] = x0 + (j + 1) * (column - 0.3) / (len(ends) + 1)
    ports: dict[str, list[float]] = {}
    for link in found[None]:
        if link.kind == "bridge" or link.peer is None:
            continue
        x = anchors.get((link.peer.namespace, link.peer.name), width / 2)
        ax.plot([x, x], [2.7, 1.45], color="#3b6ea5", lw=2)
        ax.text(x + 0.05, 2.2, "veth", fontsize=7, color="#3b6ea5")
        ax.text(x, 1.4, link.name, fontsize=7, ha="center", va="top", family="monospace",
                bbox={"fc": "white", "ec": "#3b6ea5", "pad": 1.5})
        if link.master:
            ports.setdefault(link.master, []).append(x)
    for k, bridge in enumerate(link for link in found[None] if link.kind == "bridge"):
        xs = ports.get(bridge.name) or [width / 2]
        y = 0.75 - 0.3 * (k % 2)
        for x in xs:
            ax.plot([x, x], [1.15, y + 0.12], color="#c06000", lw=1.5)
        ax.add_patch(FancyBboxPatch((min(xs) - 0.6, y - 0.12), max(xs) - min(xs) + 1.2, 0.24,
                                    boxstyle="round,pad=0.02", fc="#ffd9a8", ec="#c06000"))
        ax.text((min(xs) + max(xs)) / 2, y, f"bridge {bridge.name}, no address", fontsize=8,
                ha="center", va="center")
    plt.close(fig)
    return fig
