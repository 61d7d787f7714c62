"""The network modules inside a real Jupyter kernel, where pyroute2's sync API cannot run.

A kernel's main thread runs an asyncio loop, so ``pyroute2.IPRoute()`` fails
there with "This event loop is already running". The first cell shows that
failure (so this test would notice if the kernel ever stopped being a
problem); the next cells build the whole network of notebook 06 through the
lab's functions, and the test checks it from outside the kernel while it
runs: ``ip netns``, the bridge's ports, the published port.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

from labsupport import net
from labsupport.kernel import hoststate
from labsupport.net import run as netrun
from labsupport.process import residue

REPO = Path(__file__).resolve().parent.parent

_RAW_PYROUTE2 = textwrap.dedent("""
    from pyroute2 import IPRoute
    try:
        IPRoute().close()
        print("sync IPRoute worked")
    except RuntimeError as err:
        print("sync IPRoute failed:", err)
""")

_BUILD = textwrap.dedent("""
    import json, threading
    from labsupport import net
    from labsupport.net import publish as portproxy, run as netrun, views as netview
    red, blue = net.create_namespace("kred"), net.create_namespace("kblue")
    bridge = net.add_bridge("kbr")
    net.plug(red, bridge, "10.203.0.2/24")
    net.plug(blue, bridge, "10.203.0.3/24")
    netrun.serve_page(red, "red page\\n")
    netrun.serve_page(blue, "blue page\\n")
    published = portproxy.publish(blue, 80, PORT)
    print(json.dumps({
        "main_thread": threading.current_thread() is threading.main_thread(),
        "red": red, "blue": blue, "bridge": bridge,
        "inside_red": [link.name for link in net.links(red) if link.kind in ("loopback", "veth")],
        "ping": netrun.ping("10.203.0.3", red).ok,
        "blue_from_red": netrun.http_get("http://10.203.0.3/", red),
        "red_from_blue": netrun.http_get("http://10.203.0.2/", blue),
        "published": netrun.http_get(published.url),
        "html": netview.show(red)._repr_html_(),
        "figure": type(netview.draw()).__name__,
    }))
""")


def _run(client: Any, code: str) -> str:
    """Execute one cell; return what it printed, or fail with the kernel's error."""
    printed: list[str] = []
    errors: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    client.execute_interactive(code, timeout=120, output_hook=collect)
    assert not errors, errors
    return "".join(printed)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _remove_what_a_failed_kernel_left(before: residue.HostState) -> None:
    """If a cell failed before its clean-up, the kernel's namespaces and bridge outlive it."""
    for name in sorted(hoststate.named_netns() - before.netns):
        if name.startswith(("labkred", "labkblue")):
            netrun.remove_namespace(name)
    for name in sorted(hoststate.links() - before.links):
        if name.startswith("labkbr"):
            net.delete_link(name)


def test_the_network_modules_work_inside_a_jupyter_kernel() -> None:
    before = residue.snapshot()
    port = _free_port()
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(REPO / "notebooks"),
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert "This event loop is already running" in _run(kc, _RAW_PYROUTE2)

        built = json.loads(_run(kc, _BUILD.replace("PORT", str(port))).strip().splitlines()[-1])
        assert built["main_thread"]
        assert built["inside_red"] == ["lo", "eth0"]
        assert built["ping"]
        assert (built["blue_from_red"], built["red_from_blue"]) == ("blue page\n", "red page\n")
        assert built["published"] == "blue page\n"
        assert "<table" in built["html"] and "eth0" in built["html"] and "10.203.0.2/24" in built["html"]
        assert built["figure"] == "Figure"

        # The other side, from outside the kernel: iproute2 and this test's own process.
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert built["red"] in listed and built["blue"] in listed
        ports = subprocess.run(["ip", "-o", "link", "show", "master", built["bridge"]],
                               capture_output=True, text=True).stdout
        assert len(ports.splitlines()) == 2
        assert netrun.http_get(f"http://127.0.0.1:{port}/") == "blue page\n"

        report = _run(kc, "print(netrun.clean_up())")
        assert built["red"] in report and built["bridge"] in report
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        _remove_what_a_failed_kernel_left(before)
    assert residue.residue_since(before) == []
