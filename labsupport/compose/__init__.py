"""Several containers as one application, described in one small TOML file (``docker compose``).

One image holds one environment; a service made of a web app, a database and
a queue needs several, started in order, finding each other by name, and
scaled one service at a time. A compose file says that once::

    [services.kv]
    image = "lab-kv"

    [services.web]
    image = "lab-web"
    replicas = 3
    depends_on = ["kv"]

``up(text, project="demo")`` starts the containers ``demo-kv-1``,
``demo-web-1`` .. ``demo-web-3``; inside the project each is also reachable
by its service's name (``kv``, ``web``: the runtime writes both names into
/etc/hosts). There is no state file: each container's state.json records its
project, service and the service's definition, so ``ps``, ``scale`` and
``down`` - from any notebook or the CLI - read the running containers themselves.
"""
from __future__ import annotations

import errno
import os
import re
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

from labsupport import container
from labsupport.container import runtime, shim, store
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (requirements.txt pins it)
    import tomli as tomllib

SERVICE_KEYS = {"image", "command", "replicas", "publish", "cpu_shares", "cpus", "memory", "pids",
                "depends_on", "environment"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,15}$")


@dataclass(frozen=True)
class Service:
    """One service of a compose file: what each of its replicas is run with."""

    name: str
    image: str
    command: list[str] = field(default_factory=list)
    replicas: int = 1
    publish: list[str] = field(default_factory=list)
    cpu_shares: int | None = None
    cpus: float | None = None
    memory: str | None = None
    pids: int | None = None
    depends_on: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)


# -- reading a compose file ---------------------------------------------------------

def _text(source: Union[str, os.PathLike]) -> str:
    """A path to a .toml file, or the file's text itself."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                            and source.endswith(".toml")):
        try:
            return Path(source).read_text()
        except OSError as err:
            raise LabError(f"Cannot read the compose file {source}: {err.strerror}.") from None
    return str(source)


def _typed(service: str, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise LabError(f"In [services.{service}], {key} must be {what}, not {value!r}.")
    return value


def _string_list(service: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LabError(f"In [services.{service}], {key} must be a list of strings, e.g. {key} = [\"a\", \"b\"].")
    return list(value)


def _service(name: str, raw: Any) -> Service:
    if not _NAME.match(name):
        raise LabError(f"{name!r} is not a usable service name: use up to 16 lowercase letters, digits, '_' or '-'.")
    if not isinstance(raw, dict):
        raise LabError(f"services.{name} must be a table: write [services.{name}] and its keys below it.")
    unknown = sorted(set(raw) - SERVICE_KEYS)
    if unknown:
        raise LabError(f"[services.{name}] has the unknown key {unknown[0]!r}: the keys are "
                       f"{', '.join(sorted(SERVICE_KEYS))}.")
    if "image" not in raw:
        raise LabError(f"[services.{name}] names no image: add image = \"...\".")
    replicas = _typed(name, "replicas", raw.get("replicas", 1), int, "a whole number")
    if replicas < 1:
        raise LabError(f"[services.{name}] asks for {replicas} replicas: a service runs at least one "
                       "(take it out of the file to run none).")
    publish = _string_list(name, "publish", raw.get("publish", []))
    if publish and replicas > 1:
        raise LabError(f"[services.{name}] publishes a host port from {replicas} replicas, but one host "
                       "port can belong to one container only: put a proxy service in front of it.")
    environment = _typed(name, "environment", raw.get("environment", {}), dict, "a table of strings")
    return Service(
        name=name, image=_typed(name, "image", raw["image"], str, "an image name"),
        command=_string_list(name, "command", raw.get("command", [])), replicas=replicas,
        publish=publish,
        cpu_shares=_typed(name, "cpu_shares", raw["cpu_shares"], int, "a whole number (1024 is the default)")
        if "cpu_shares" in raw else None,
        cpus=float(_typed(name, "cpus", raw["cpus"], (int, float), "a number of cores")) if "cpus" in raw else None,
        memory=_typed(name, "memory", raw["memory"], str, "a size such as \"64M\"") if "memory" in raw else None,
        pids=_typed(name, "pids", raw["pids"], int, "a whole number") if "pids" in raw else None,
        depends_on=_string_list(name, "depends_on", raw.get("depends_on", [])),
        environment={str(k): str(v) for k, v in environment.items()})


def start_order(services: dict[str, Service]) -> list[Service]:
    """Each service after those it depends on (a depth-first walk that notices a circle)."""
    ordered: list[Service] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if any(s.name == name for s in ordered):
            return
        if name in visiting:
            circle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise LabError(f"The services depend on each other in a circle ({circle}): one of them "
                           "must start first, so drop one depends_on.")
        visiting.append(name)
        for needed in services[name].depends_on:
            if needed not in services:
                raise LabError(f"[services.{name}] depends on {needed!r}, which the file does not "
                               f"define: the services are {', '.join(sorted(services))}.")
            visit(needed)
        visiting.pop()
        ordered.append(services[name])

    for name in sorted(services):
        visit(name)
    return ordered


def parse(source: Union[str, os.PathLike]) -> list[Service]:
    """A compose file (path or text) as its services in start order; bad input is one sentence."""
    try:
        raw = tomllib.loads(_text(source))
    except tomllib.TOMLDecodeError as err:
        raise LabError(f"The compose file is not valid TOML ({err}): compare it with the example "
                       "in labsupport.compose.") from None
    if set(raw) - {"services"}:
        raise LabError(f"The compose file has the unknown top-level key {sorted(set(raw) - {'services'})[0]!r}: "
                       "everything goes under [services.NAME].")
    if not isinstance(raw.get("services"), dict) or not raw["services"]:
        raise LabError("The compose file defines no service: add at least one [services.NAME] table.")
    return start_order({name: _service(name, body) for name, body in raw["services"].items()})


# -- the running project ------------------------------------------------------------

def members(project: str, service: str | None = None) -> list[dict[str, Any]]:
    """The project's containers (any status), by service and replica number."""
    found = [c for c in store.list_containers() if c.get("project") == project
             and (service is None or c.get("service") == service)]
    return sorted(found, key=lambda c: (c.get("service", ""), c.get("replica", 0)))


def _check_project(project: str) -> str:
    if not _NAME.match(project):
        raise LabError(f"{project!r} is not a usable project name: use up to 16 lowercase letters, "
                       "digits, '_' or '-'.")
    return project


def _require_free(publish: str) -> None:
    mapping = runtime.Publish.parse(publish)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((mapping.host_address, mapping.host_port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise LabError(f"The host port {mapping.host_address}:{mapping.host_port} is in use "
                               "already: pick another one in the file's publish.") from None
            raise LabError(f"Cannot publish on {mapping.host_address}:{mapping.host_port}: "
                           f"{err.strerror}.") from None


def _start_replica(project: str, service: Service, number: int) -> str:
    """create, record project/service/definition in state.json (the runtime's hosts file reads
    them for the service alias), start."""
    cid = container.create(service.image, service.command, name=f"{project}-{service.name}-{number}",
                           publish=service.publish, memory=service.memory, cpus=service.cpus,
                           pids=service.pids, env=service.environment, cpu_shares=service.cpu_shares)
    store.write_state(store.container_dir(cid), project=project, service=service.name,
                        replica=number, definition=asdict(service))
    try:
        container.start(cid)
    except BaseException:
        container.remove(cid, force=True)
        raise
    return cid


def up(source: Union[str, os.PathLike], project: str) -> Table:
    """Start every service of the file, in depends_on order; on any failure nothing stays up."""
    _check_project(project)
    services = parse(source)
    if members(project):
        raise LabError(f"The project {project!r} is up already: `down` it first, or give another "
                       "project name.")
    for service in services:
        for mapping in service.publish:
            _require_free(mapping)
    try:
        for service in services:
            for number in range(1, service.replicas + 1):
                _start_replica(project, service, number)
    except BaseException:
        down(project)
        raise
    return ps(project)


def down(project: str) -> list[str]:
    """Stop and remove every container of the project, last started first; returns their names."""
    gone = []
    for member in reversed(sorted(members(project), key=lambda c: c.get("created", 0))):
        container.remove(member["id"], force=True)
        gone.append(member["name"])
    shim.refresh_hosts()
    return gone


def scale(project: str, service: str, replicas: int) -> Table:
    """Run ``replicas`` copies of one service: start the missing ones, remove the highest numbers."""
    running = members(project, service)
    if not running:
        raise LabError(f"The project {project!r} has no service {service!r} up: "
                       f"`ps(\"{project}\")` lists what runs.")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise LabError(f"Scale {service} to 1 or more replicas, not {replicas!r} (`down` stops a project).")
    definition = Service(**running[0]["definition"])
    if definition.publish and replicas > 1:
        raise LabError(f"{service} publishes a host port, which one replica only can hold: "
                       "scale the service behind the proxy instead.")
    numbers = [c["replica"] for c in running]
    for number in range(max(numbers) + 1, max(numbers) + 1 + replicas - len(running)):
        _start_replica(project, definition, number)
    for extra in running[replicas:]:
        container.remove(extra["id"], force=True)
    if len(running) > replicas:
        shim.refresh_hosts()
    return ps(project)


def ps(project: str) -> Table:
    rows = [(c["name"], c.get("service"), c.get("image"), c.get("status"), c.get("address", ""),
             ", ".join(f"{a}:{h}->{p}" for a, h, p in c.get("publish", [])),
             c["definition"].get("cpu_shares") or "", c["definition"].get("memory") or "")
            for c in members(project)]
    return Table(["container", "service", "image", "status", "address", "ports", "cpu shares", "memory"],
                 rows, f"compose project {project!r}")
