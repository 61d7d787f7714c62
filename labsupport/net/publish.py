"""Publish a namespace's port on the host's loopback, as ``docker run -p 127.0.0.1:8080:80``.

The mechanism is a small proxy process, the lab's own docker-proxy:

1. it listens on 127.0.0.1:HOSTPORT while still in the host's network namespace;
2. it then joins the container's namespace with setns(). A socket keeps the
   namespace it was made in, so the listening socket stays on the host's
   loopback, while every socket made from now on is the container's;
3. for each connection it accepts, it opens one to 127.0.0.1:PORT *inside*
   the namespace and copies bytes both ways.

So the host needs no route into the lab's subnet, no forwarding and no
iptables rule, and no packet leaves the machine: both legs are loopback
traffic, one in each namespace. Docker does more: docker-proxy connects to
the container's address across docker0, and a DNAT rule in iptables usually
takes the packets before they even reach the proxy.

The proxy is started by the lab's runner, so it carries the lab's marker,
dies with the notebook kernel that started it, and ``clean`` kills it.
Published ports are found again by reading the proxies' command lines, as
``ps`` would show them - there is no state file to go stale.

Run alone, this module *is* the proxy::

    python -m labsupport.net.publish --listen 127.0.0.1:8080 --netns /run/netns/labred3f2a --connect 127.0.0.1:80
"""
from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from labsupport import net, ownership
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.net import run as netrun

_MODULE = "labsupport.net.publish"
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class Published:
    """One published port: where the host reaches it, and where it leads."""

    host_address: str
    host_port: int
    namespace: str
    inside_address: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.host_address}:{self.host_port}/"


def _port(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise LabError(f"The {what} {value!r} is not a TCP port: use a whole number from 1 to 65535.")
    return value


def _loopback(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise LabError(f"{address!r} is not an IP address: publish on 127.0.0.1.") from None
    if ip.version != 4 or not ip.is_loopback:
        raise LabError(f"The lab publishes only on the host's loopback (127.0.0.0/8), not on "
                       f"{ip}: nothing outside this machine should reach a lab server.")
    return str(ip)


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}",
                                     description="Relay 127.0.0.1:HOSTPORT on the host to a port "
                                                 "inside a network namespace.")
    parser.add_argument("--listen", required=True, help="host address:port, e.g. 127.0.0.1:8080")
    parser.add_argument("--netns", required=True, help="the namespace file, e.g. /run/netns/labred3f2a")
    parser.add_argument("--connect", required=True, help="address:port inside, e.g. 127.0.0.1:80")
    return parser


# -- managing proxies (in the notebook's process) ---------------------------------

def _read_proxy(pid: int) -> Published | None:
    """The port a proxy process publishes, read from its command line - or None if it is no proxy."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return None
    if _MODULE not in argv or argv.index(_MODULE) < 1 or argv[argv.index(_MODULE) - 1] != "-m":
        return None
    try:
        args = _parser().parse_args(argv[argv.index(_MODULE) + 1:])
        (host, host_port), (inside, port) = _split(args.listen), _split(args.connect)
    except (SystemExit, ValueError):
        return None
    return Published(host, host_port, Path(args.netns).name, inside, port, pid)


def published() -> list[Published]:
    """Every port the lab publishes right now (``docker port`` for all containers)."""
    found = [_read_proxy(pid) for pid in ownership.lab_processes() if not netrun.has_exited(pid)]
    return sorted((p for p in found if p), key=lambda p: (p.host_address, p.host_port))


def published_table() -> Table:
    """What ``published()`` found, one row per port: the host's side, and where it leads."""
    rows = [(f"{p.host_address}:{p.host_port}", f"{p.inside_address}:{p.port}", p.namespace, p.pid)
            for p in published()]
    return Table(["on the host", "leads to", "inside namespace", "proxy PID"], rows,
                 f"Published ports ({len(rows)})")


def _require_free(host: str, port: int) -> None:
    """Refuse a host port some program already listens on, before starting a proxy for it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise LabError(f"{host}:{port} is already in use by another program on this "
                               "host: pick another host port.") from None
            raise LabError(f"Cannot listen on {host}:{port}: {err.strerror}.") from None


def publish(namespace: str, port: int, host_port: int, host_address: str = "127.0.0.1") -> Published:
    """Make ``port`` inside ``namespace`` answer on ``host_address:host_port`` of the host.

    Returns once the proxy listens and has moved into the namespace.
    """
    port, host_port = _port(port, "port"), _port(host_port, "host port")
    host = _loopback(host_address)
    path = net.namespace_path(namespace)
    for p in published():
        if (p.host_address, p.host_port) == (host, host_port):
            raise LabError(f"{host}:{host_port} is already published (to port {p.port} of "
                           f"{p.namespace}): unpublish it first, or pick another host port.")
    if not net.is_up("lo", namespace):
        raise LabError(f"The loopback of namespace {namespace} is down, and the proxy reaches the "
                       f"server through it: bring it up with net.set_up('lo', {namespace!r}).")
    _require_free(host, host_port)
    argv = [sys.executable, "-m", _MODULE, "--listen", f"{host}:{host_port}",
            "--netns", str(path), "--connect", f"127.0.0.1:{port}"]
    child = netrun.start_in(None, argv, env={"PYTHONPATH": _PACKAGE_PARENT})
    # Ready once it sits in the namespace: it only moves there after it listens.
    netrun.wait_until_ready(child, lambda: netrun.in_namespace(child.pid, namespace),
                            f"The proxy for {host}:{host_port}")
    return Published(host, host_port, namespace, "127.0.0.1", port, child.pid)


def unpublish(host_port: int, host_address: str = "127.0.0.1") -> None:
    """Stop publishing ``host_address:host_port``: its proxy is stopped, the port closes."""
    host = _loopback(host_address)
    for p in published():
        if (p.host_address, p.host_port) == (host, host_port):
            netrun.stop_process(p.pid)
            return
    raise LabError(f"Nothing is published on {host}:{host_port}: "
                   "portproxy.published_table() lists what is.")


# -- the proxy itself (its own process) ----------------------------------------------

def _listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port))
    except OSError as err:
        raise LabError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def _enter(netns: str) -> None:
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(fd, syscalls.CLONE_NEWNET, netns)
    finally:
        os.close(fd)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until its end, then pass the end on (a half-close, not a hang-up)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass  # the other side hung up; the connection ends either way


async def _relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                 host: str, port: int) -> None:
    try:
        # Made after setns: this socket is the namespace's, so 127.0.0.1 is *its* loopback.
        inside_r, inside_w = await asyncio.open_connection(host, port)
    except OSError:
        client_w.close()  # nothing listens inside: the client sees the connection close
        return
    await asyncio.gather(_copy(client_r, inside_w), _copy(inside_r, client_w))
    inside_w.close()
    client_w.close()


async def _serve(listener: socket.socket, host: str, port: int) -> None:
    server = await asyncio.start_server(lambda r, w: _relay(r, w, host, port), sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """The proxy: listen on the host, move into the namespace, relay. Says nothing once running
    (its output goes to a pipe the notebook only reads when the proxy ends)."""
    args = _parser().parse_args(argv)
    try:
        listener = _listen(*_split(args.listen))
        _enter(args.netns)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    asyncio.run(_serve(listener, *_split(args.connect)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
