"""Programs inside network namespaces: ``ip netns exec``, and what the lab runs there.

A program joins a namespace with setns() before it starts, and from then on
every socket it opens is that namespace's: its own loopback, its own port 80,
only the links and routes in there. The lab's runner does the joining, so
each program carries the lab's marker and dies with the notebook's kernel;
this module also keeps every child it starts, so removing a namespace (or
the clean-up cell) stops and collects them - none is left as a zombie.

On top of that, the three programs notebook 06 needs, each a busybox applet:
``httpd`` (a web server serving one page), ``ping`` and ``wget``. The host
itself only ever talks to 127.0.0.0/8; everything else is asked from inside
a lab namespace, which has no way off the machine.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from labsupport import net, ownership, process
from labsupport.kernel import hoststate, syscalls
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.namespaces import rootfs

_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp

_children: dict[int, process.Child] = {}
_roots: list[Path] = []  # scratch roots of the web servers started here


# -- starting, finding and stopping ------------------------------------------------

def start_in(namespace: str | None, argv: Sequence[str], env: dict[str, str] | None = None,
             **isolation: Any) -> process.Child:
    """Start a program that first joins ``namespace`` (None: stays on the host).

    Other isolation options of the runner (``root=``, ``namespaces=`` ...)
    pass through; the namespace is joined before any new one is made.
    """
    if not argv:
        raise LabError("No command given: pass a list such as ['ip', 'addr'].")
    iso = process.Isolation.make(**isolation)
    if namespace is not None:
        # The runner joins (kind, namespace file) pairs; a named netns is such a file.
        iso = replace(iso, enter=iso.enter + (("net", str(net.namespace_path(namespace))),))
    child = process.Child([os.fspath(a) for a in argv], iso, process.command_env(env))
    _children[child.pid] = child
    return child


def run_in(namespace: str | None, argv: Sequence[str], timeout: float = 30,
           **isolation: Any) -> process.CommandResult:
    """Run a program to its end inside ``namespace`` (``ip netns exec``): exit code and output."""
    child = start_in(namespace, argv, **isolation)
    try:
        code = child.wait(timeout)
    finally:
        _children.pop(child.pid, None)
    outcome = child.outcome()
    if outcome is not None and outcome[0] == "error":
        raise outcome[1]
    return process.CommandResult(code, child.stdout, child.stderr, child.pid,
                                 time.monotonic() - child.started)


def _netns_id(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # gone, or a zombie, which has no namespaces left
        return None
    return st.st_dev, st.st_ino


def in_namespace(pid: int, namespace: str) -> bool:
    """Is process ``pid`` inside ``namespace``? Then its /proc/PID/ns/net is the same file."""
    return _netns_id(f"/proc/{pid}/ns/net") == _netns_id(net.namespace_path(namespace))


def processes_in(namespace: str) -> list[int]:
    """PIDs of the processes living in ``namespace`` (``ip netns pids``)."""
    want = _netns_id(net.namespace_path(namespace))
    return sorted(p for p in hoststate.processes() if _netns_id(f"/proc/{p}/ns/net") == want)


def has_exited(pid: int) -> bool:
    """True once ``pid`` is gone, or a zombie waiting to be collected."""
    return hoststate.process_state(pid) in ("", "Z", "X")


def stop_process(pid: int) -> None:
    """Stop a program of the lab's: collect it if this process started it, else SIGKILL it."""
    child = _children.pop(pid, None)
    if child is not None:
        child.stop()
    elif pid in ownership.lab_processes():
        os.kill(pid, signal.SIGKILL)
    else:
        raise LabError(f"Process {pid} was not started by the lab: it was left alone.")


def stop_processes_in(namespace: str) -> list[int]:
    """Stop every lab program in ``namespace``, and collect those of ours that ended already."""
    for pid in [p for p in _children if has_exited(p)]:
        _children.pop(pid).stop()
    inside = processes_in(namespace)
    lab = set(ownership.lab_processes()) if inside else set()  # a scan of every process: only if needed
    stopped = [pid for pid in inside if pid in _children or pid in lab]
    for pid in stopped:
        stop_process(pid)
    return stopped


def remove_namespace(name: str) -> None:
    """Stop the lab's programs in a namespace, delete its veths, then the namespace itself.

    Its veth pairs would die with it anyway, but only when the kernel gets
    round to freeing the namespace (about a second later): deleting them
    first takes their host ends away at once.
    """
    path = net.namespace_path(name)
    net.require_lab(name, "network namespace")
    stop_processes_in(name)
    net.netlink(name, "delete the veths", net.delete_veths)
    try:
        syscalls.umount(path, syscalls.MNT_DETACH)
    except LabError:
        pass  # a file that lost its mount: removing it is all that is left to do
    path.unlink(missing_ok=True)
    ownership.forget_made("netns", name)


def wait_until_ready(child: process.Child, ready: Callable[[], bool], what: str,
                     timeout: float = 10) -> None:
    """Wait until ``ready()``; if the program ends first, raise its own last words."""
    deadline = time.monotonic() + timeout
    while not ready():
        if has_exited(child.pid):
            _children.pop(child.pid, None)
            child.wait(5)
            said = (child.stderr.strip().splitlines() or [f"exit code {child.returncode}"])[-1]
            raise LabError(f"{what} did not start: {said.removeprefix('error: ').rstrip('.')}.")
        if time.monotonic() > deadline:
            stop_process(child.pid)
            raise LabError(f"{what} was not ready after {timeout:.0f} s, and was stopped.")
        time.sleep(0.01)


# -- a web server, ping and wget ----------------------------------------------------

def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets ``pid`` holds (its fds that read ``socket:[N]``)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def listening_on(pid: int, port: int) -> bool:
    """Does process ``pid`` itself hold a TCP socket listening on ``port``?

    /proc/PID/net/tcp lists the sockets of the whole namespace the process is
    in, so the socket's inode must also be one of the process's own fds:
    another server there may hold that port already.
    """
    try:
        mine = _socket_inodes(pid)
        tables = [Path(f"/proc/{pid}/net/{t}").read_text() for t in ("tcp", "tcp6")]
    except OSError:
        return False
    for line in "\n".join(tables).splitlines():
        fields = line.split()
        if (len(fields) > 9 and fields[3] == _TCP_LISTEN and fields[9] in mine
                and int(fields[1].rsplit(":", 1)[1], 16) == port):
            return True
    return False


def serve_page(namespace: str, page: str, port: int = 80) -> process.Child:
    """busybox httpd in ``namespace``, chrooted into a fresh busybox root, serving ``page`` as /.

    Returns once it listens. A second server on the same port *in the same
    namespace* cannot bind, and says so in one sentence.
    """
    net.namespace_path(namespace)
    root = rootfs.new_busybox_root("netweb")
    _roots.append(root)
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text(page)
    child = start_in(namespace, ["httpd", "-f", "-p", str(port), "-h", "/www"], root=root)
    try:
        wait_until_ready(child, lambda: listening_on(child.pid, port),
                         f"The web server on port {port} in {namespace}")
    except LabError as err:
        if "in use" in str(err):
            raise LabError(f"Port {port} is already taken in namespace {namespace}: one listener "
                           f"per port per namespace - another namespace has a port {port} of "
                           "its own.") from None
        raise
    return child


def ping(address: str, namespace: str | None, count: int = 1) -> process.CommandResult:
    """busybox ping from inside a namespace; from the host, only its own loopback."""
    target = net.parse_ip(address)
    if namespace is None and not target.is_loopback:
        raise LabError("The lab pings only from inside its namespaces, or the host's own "
                       "127.0.0.1: from the host, that address would be routed off the machine.")
    return run_in(namespace, ["busybox", "ping", "-c", str(count), "-W", "2", str(target)],
                  timeout=10 + 2 * count)


def http_get(url: str, namespace: str | None = None, timeout: float = 5) -> str:
    """Fetch ``url`` from inside a namespace (busybox wget), or from the host - 127.0.0.0/8 only.

    From the host, proxy settings in the environment are ignored, so the
    request really goes to the loopback and nowhere else.
    """
    try:
        target = ipaddress.ip_address(urlsplit(url).hostname or "")
    except ValueError:
        raise LabError(f"{url!r} does not name an IP address: the lab fetches by address, such "
                       "as http://127.0.0.1:8080/ or http://10.203.0.3/.") from None
    if namespace is not None:
        # No -T: busybox 1.35's wget crashes with it; the runner's time-out ends it instead.
        got = run_in(namespace, ["busybox", "wget", "-q", "-O", "-", url], timeout=timeout)
        if not got.ok:
            raise LabError(f"Nothing answered at {url} from inside {namespace}"
                           f"{': ' + got.stderr.strip() if got.stderr.strip() else ''}.")
        return got.stdout
    if not target.is_loopback:
        raise LabError(f"From the host the lab fetches only from 127.0.0.0/8, not {target}: "
                       "ask from inside a namespace (namespace=...), or publish the port on "
                       "127.0.0.1.")
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as answer:
            return answer.read().decode(errors="replace")
    except OSError as err:
        raise LabError(f"Nothing answered at {url}: {getattr(err, 'reason', err)}.") from None


# -- the clean-up cell -------------------------------------------------------------------

def clean_up(namespaces: Sequence[str] = ()) -> Table:
    """Remove what this process made with ``net`` and here, and the named ``namespaces``.

    Programs first (web servers, port proxies), then the namespaces (their
    veths go with them), then host links: those made here, and bridges the
    removed namespaces were plugged into that have no port left - so a bridge
    made in an earlier, restarted kernel goes too.
    """
    made = net.made_here(forget=True)
    existing = set(net.lab_namespaces())
    gone_ns = [ns for ns in dict.fromkeys([*(n for k, n in made if k == "namespace"), *namespaces])
               if ns in existing]
    bridges = {link.name for link in net.topology(gone_ns)[None] if link.kind == "bridge"}
    stopped = [pid for ns in gone_ns for pid in stop_processes_in(ns)]
    for pid in list(_children):
        stopped.append(pid)
        stop_process(pid)
    for ns in gone_ns:
        remove_namespace(ns)
    host = net.links(None)
    names, in_use = {link.name for link in host}, {link.master for link in host}
    gone_links = [name for kind, name in reversed(made) if kind == "link" and name in names]
    gone_links += sorted(b for b in bridges - in_use - set(gone_links) if b in names)
    for name in gone_links:
        net.delete_link(name)
    roots = [root for root in _roots if root.exists()]
    for root in roots:
        rootfs.remove_root(root)
    _roots.clear()
    return Table(["what", "removed"], [
        ("programs still running", ", ".join(map(str, sorted(stopped))) or "none"),
        ("network namespaces (the veths in them went too)", "\n".join(gone_ns) or "none"),
        ("links on the host", "\n".join(gone_links) or "none"),
        ("scratch roots", "\n".join(str(r.parent) for r in roots) or "none")], "Clean up")
