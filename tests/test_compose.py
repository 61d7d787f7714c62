"""Compose and scale out on the real kernel: a web app, redis and beanstalkd in their own
containers, a round-robin proxy, and a core shared by cpu weight - each seen from the servers
themselves (inside) and from the host (state, cgroups, published port)."""
from __future__ import annotations

import importlib.util
import socket
from collections import Counter
from pathlib import Path

import pytest

from labsupport import cgroups, compose, container
from labsupport.compose import scaleout, services
from labsupport.container import store
from labsupport.course import grading
from labsupport.kernel.errors import LabError

REPO = Path(__file__).resolve().parent.parent
BUSY = '["sh", "-c", "while :; do :; done"]'


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stack(port: int, replicas: int = 3) -> str:
    return f"""
[services.kv]
image = "lab-kv"
memory = "64M"

[services.queue]
image = "lab-queue"

[services.web]
image = "lab-web"
replicas = {replicas}
depends_on = ["kv", "queue"]

[services.proxy]
image = "lab-proxy"
depends_on = ["web"]
publish = ["127.0.0.1:{port}:80"]
"""


@pytest.fixture(scope="module", autouse=True)
def built_images() -> None:
    services.ensure_images()


@pytest.fixture
def project():
    """A project name of the test's own, brought down whatever happens."""
    yield "tc11"
    compose.down("tc11")


def _hosts(name: str) -> str:
    return container.exec_in(name, ["cat", "/etc/hosts"]).stdout


def test_stack_finds_by_name_spreads_counts_and_scales(project: str) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    compose.up(_stack(port), project=project)
    assert len(scaleout.wait_listening(project, "web", 8000)) == 3
    members = {m["name"]: m for m in compose.members(project)}
    assert sorted(members) == ["tc11-kv-1", "tc11-proxy-1", "tc11-queue-1",
                               "tc11-web-1", "tc11-web-2", "tc11-web-3"]
    assert all(m["status"] == "running" for m in members.values())
    # Names: the service alias points at the container the host's state gives that service.
    assert f"{members['tc11-kv-1']['address']} tc11-kv-1 kv" in _hosts("tc11-web-1").splitlines()
    # The limit is in the host's cgroup file.
    kv_group = cgroups.open_group(members["tc11-kv-1"]["cgroup"])
    assert kv_group.usage().memory_limit_bytes == 64 << 20

    first = scaleout.fetch(url)
    assert "visits=1 event=1" in first
    counts = scaleout.spread(url, 8) + Counter([scaleout.served_by(first)])
    assert counts == Counter({"tc11-web-1": 3, "tc11-web-2": 3, "tc11-web-3": 3})
    # Inside: redis and beanstalkd themselves, asked in their own containers.
    assert "redis_version:" in services.redis_command("tc11-kv-1", "INFO", "server")
    assert services.redis_get_int("tc11-kv-1", "visits") == 9
    stats = services.queue_stats("tc11-queue-1")
    assert stats["total-jobs"] == "9" and stats["current-jobs-ready"] == "9"

    compose.scale(project, "web", 4)
    assert len(scaleout.wait_listening(project, "web", 8000)) == 4
    assert "tc11-web-4 web" in _hosts("tc11-proxy-1")
    assert scaleout.spread(url, 8) == Counter({f"tc11-web-{n}": 2 for n in range(1, 5)})

    removed = [members[n]["id"] for n in ("tc11-web-3",)]
    compose.scale(project, "web", 2)
    assert [m["name"] for m in compose.members(project, "web")] == ["tc11-web-1", "tc11-web-2"]
    assert not store.container_dir(removed[0]).exists()
    assert "tc11-web-3" not in _hosts("tc11-proxy-1")
    assert scaleout.spread(url, 4) == Counter({"tc11-web-1": 2, "tc11-web-2": 2})
    assert services.redis_get_int("tc11-kv-1", "visits") == 21

    gone = compose.down(project)
    assert sorted(gone) == ["tc11-kv-1", "tc11-proxy-1", "tc11-queue-1", "tc11-web-1", "tc11-web-2"]
    assert compose.members(project) == []
    with pytest.raises(LabError, match="did not answer"):
        scaleout.fetch(url, wait=0.5)


def test_busy_containers_share_a_core_by_cpu_shares(project: str) -> None:
    compose.up(f"""
[services.light]
image = "busybox"
command = {BUSY}
cpu_shares = 512

[services.heavy]
image = "busybox"
command = {BUSY}
cpu_shares = 1536
""", project=project)
    split = scaleout.cpu_split(project, seconds=2.0)
    assert split.shares == {"tc11-heavy-1": 1536, "tc11-light-1": 512}  # the host's cpu.shares files
    assert sum(split.cpu_seconds.values()) > 1.5  # the core was busy
    assert 2.4 < split.cpu_seconds["tc11-heavy-1"] / split.cpu_seconds["tc11-light-1"] < 3.6
    assert "tc11-light-1" in split.table().column("container")


@pytest.mark.parametrize("text, message", [
    ('[services.web]\nimage = "lab-web"\ndepends_on = ["db"]', "depends on 'db', which the file does not define"),
    ('[services.a]\nimage = "busybox"\ndepends_on = ["b"]\n[services.b]\nimage = "busybox"\ndepends_on = ["a"]',
     r"in a circle \(a -> b -> a\)"),
    ('[services.web]\nimage = "lab-web"\nreplica = 2', "unknown key 'replica'"),
    ('[services.web]\nimage = "lab-web"\nreplicas = 0', "asks for 0 replicas"),
    ('[services.web]\nimage = "lab-web"\nreplicas = 2\npublish = ["8080:80"]', "put a proxy service in front"),
    ('[services.web]\nimage = ["lab-web"]', "image must be an image name"),
    ('[services.web]\ncommand = ["true"]', "names no image"),
    ('version = "3"\n[services.web]\nimage = "lab-web"', "unknown top-level key 'version'"),
    ('[services.web\nimage = "lab-web"', "not valid TOML"),
    ('', "defines no service"),
])
def test_bad_compose_files_get_one_sentence(text: str, message: str) -> None:
    with pytest.raises(LabError, match=message) as caught:
        compose.parse(text)
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")


def test_a_port_in_use_or_a_project_up_twice_is_refused(project: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LabError, match=f"127.0.0.1:{port} is in use"):
            compose.up(_stack(port), project=project)
    assert compose.members(project) == []  # refused before anything started
    small = '[services.idle]\nimage = "busybox"\ncommand = ["sleep", "60"]'
    compose.up(small, project=project)
    with pytest.raises(LabError, match="is up already"):
        compose.up(small, project=project)
    with pytest.raises(LabError, match="1 or more replicas"):
        compose.scale(project, "idle", 0)
    with pytest.raises(LabError, match="no service 'web'"):
        compose.scale(project, "web", 2)
    with pytest.raises(LabError, match="between 2 and 262144"):
        container.create("busybox", ["true"], cpu_shares=1)
    assert [m["name"] for m in compose.members(project)] == ["tc11-idle-1"]


def test_notebook_11_exercises_fresh_solved_reset(exercises: Path) -> None:
    """The checks say 'not yet' on a fresh lab, pass after the teacher's solution, and reset
    returns the host to the start."""
    spec = importlib.util.spec_from_file_location("teacher_nb11", REPO / "teacher/solutions/nb11.py")
    solution = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(solution)  # type: ignore[union-attr]
    grading.reset("11")
    assert not [s for s in grading.grade("11") if s.passed]
    try:
        for k in (1, 2, 3):
            solution.solve(k)
        scores = grading.grade("11")
        assert [s.passed for s in scores] == [True, True, True], [s.message for s in scores]
    finally:
        done = grading.reset("11")
    assert "removed container ex11-fit-web-4" in done and "removed container ex11-cpu-heavy-1" in done
    assert "removed container ex11-web-1" in done, "exercise 2 ends with one web replica"
    assert not [c for c in container.list_containers() if c["name"].startswith("ex11")]


def test_the_cli_brings_a_file_up_scales_it_and_takes_it_down(project: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    def lab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labsupport", "compose", *args, "-p", project],
                              capture_output=True, text=True, timeout=120, cwd=REPO)

    file = tmp_path / "compose.toml"
    file.write_text('[services.kv]\nimage = "lab-kv"\n\n[services.web]\nimage = "lab-web"\n'
                    'depends_on = ["kv"]\n')
    assert lab("up", str(file)).returncode == 0
    assert {m["service"] for m in compose.members(project)} == {"kv", "web"}
    assert lab("scale", "web=2").returncode == 0
    assert len(compose.members(project, "web")) == 2
    assert f"{project}-web-2" in lab("ps").stdout
    wrong = lab("scale", "web")
    assert wrong.returncode == 2 and "SERVICE=N" in wrong.stderr and "Traceback" not in wrong.stderr
    assert lab("down").returncode == 0 and not compose.members(project)
