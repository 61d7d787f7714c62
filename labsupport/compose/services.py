"""The servers of notebook 11, one image each: a web app (the WAS), a key-value store (DB),
a message queue (MQ) - and the round-robin proxy that spreads requests over web replicas.

Why several images and not one: each server is one environment (its program,
its libraries, its command), replaced and scaled on its own. The two Python
images (web app, proxy) stand on one shared runtime image, so the interpreter's
layers are stored once. Everything is built offline from files already on
this host (the Debian packages ``./lab`` installed) and kept in the lab's
image store; a later call rebuilds only an image whose recipe changed.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from labsupport import images
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table

APPS = Path(__file__).resolve().parent / "apps"


def _debian_python() -> str:
    """The distribution's own interpreter (python3.11 on Debian 12, python3.10 on Ubuntu 22.04):
    its -minimal packages are on every lab host, whatever Python runs the lab itself."""
    system = Path("/usr/bin/python3")
    return system.resolve().name if system.exists() else f"python3.{sys.version_info.minor}"


@dataclass(frozen=True)
class Recipe:
    ref: str
    base: str
    steps: list[images.Step]
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    role: str = ""


def _package_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout:
        raise LabError(f"The Debian package {package!r} is not installed: run `sudo ./lab install` "
                       "(it installs the servers of notebook 11).")
    return out.stdout


def _versioned(step: images.Step, *packages: str) -> images.Step:
    """The step, its history line naming the packages' versions: an upgrade rebuilds the image."""
    versions = " ".join(f"{p}={_package_version(p)}" for p in packages)
    return dataclasses.replace(step, created_by=f"{step.created_by} ({versions})")


def _app(file: str) -> images.Step:
    source = APPS / file
    step = images.add_files({f"/app/{file}": source.read_text()})
    digest = images.store.sha256_hex(source.read_bytes())[:12]
    return dataclasses.replace(step, created_by=f"{step.created_by} (sha256 {digest})")


def recipes() -> list[Recipe]:
    """Bottom first: a recipe's base is built before it."""
    interpreter = _debian_python()
    runtime = [_versioned(images.add_programs([f"/usr/bin/{interpreter}"]), f"{interpreter}-minimal"),
               _versioned(images.add_packages([f"lib{interpreter}-minimal"]), f"lib{interpreter}-minimal")]
    python = [f"/usr/bin/{interpreter}", "-u"]
    return [
        Recipe("lab-python", "busybox", runtime, python, role="runtime: the interpreter + minimal stdlib"),
        Recipe("lab-web", "lab-python", [_app("visits.py")], [*python, "/app/visits.py"],
               {"PORT": "8000"}, [8000], "WAS: the web app, counts visits, queues events"),
        Recipe("lab-proxy", "lab-python", [_app("roundrobin.py")], [*python, "/app/roundrobin.py"],
               {"PORT": "80", "BACKEND": "web:8000"}, [80], "round-robin proxy in front of web"),
        Recipe("lab-kv", "busybox", [_versioned(images.add_programs(["redis-server"]), "redis-server")],
               ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "",
                "--appendonly", "no", "--dir", "/tmp"], ports=[6379], role="DB: redis key-value store"),
        Recipe("lab-queue", "busybox", [_versioned(images.add_programs(["beanstalkd"]), "beanstalkd")],
               ["beanstalkd", "-l", "0.0.0.0", "-p", "11300"], ports=[11300],
               role="MQ: beanstalkd message queue"),
    ]


def _current(recipe: Recipe) -> bool:
    """Built already from this very recipe: same base history plus the same steps, layers on disk."""
    try:
        image, base = images.get(recipe.ref), images.get(recipe.base)
    except LabError:
        return False
    wanted = list(base.history) + [s.created_by for s in recipe.steps]
    return (list(image.history) == wanted and image.config.cmd == recipe.cmd
            and all(p.is_dir() for p in image.layers))


def ensure_images() -> Table:
    """Build whichever of the images is missing or stale (the first time: a few seconds)."""
    images.build_busybox_base()
    rows = []
    for recipe in recipes():
        built = "cached"
        if not _current(recipe):
            images.build_image(recipe.ref, recipe.steps, base=recipe.base, cmd=recipe.cmd,
                               env=recipe.env or None, exposed_ports=recipe.ports or None)
            built = "built now"
        image = images.get(recipe.ref)
        rows.append((recipe.ref, recipe.role, recipe.base, len(image.diff_ids), built))
    return Table(["image", "role", "on top of", "layers", "this time"], rows,
                 "Notebook 11's images: one server each")


# -- asking a server from inside its own container ----------------------------------

def _ask_inside(container_name: str, port: int, lines: list[str]) -> str:
    """Send protocol lines to 127.0.0.1:PORT in the container (busybox nc), as a learner could."""
    from labsupport import container

    request = "".join(f"{line}\\r\\n" for line in lines)
    result = container.exec_in(container_name, ["sh", "-c", f"printf '{request}' | nc -w 3 127.0.0.1 {port}"])
    return result.stdout.replace("\r", "")


def redis_command(container_name: str, *words: str) -> str:
    """One redis command in its inline form (``GET visits``), then QUIT so redis hangs up.
    Returns a bulk reply's text (``$N`` dropped), else the reply line itself (``:17``, ``+OK``)."""
    lines = _ask_inside(container_name, 6379, [" ".join(words), "QUIT"]).splitlines()
    if lines and lines[0].startswith("$"):
        return "\n".join(lines[1:-1])
    return lines[0] if lines else ""


def redis_get_int(container_name: str, key: str) -> int:
    """An integer key's value, 0 when the key does not exist."""
    value = redis_command(container_name, "GET", key)
    return int(value) if value.isdigit() else 0


def queue_stats(container_name: str) -> dict[str, str]:
    """beanstalkd's ``stats`` (a small YAML mapping): current-jobs-ready, total-jobs, ..."""
    text = _ask_inside(container_name, 11300, ["stats", "quit"])
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()[1:]) if v}
