"""Notebook 11 (compose and scale out): four web replicas weighed; a project of kv, queue, 3 web
replicas and a proxy, 30 visits, then web scaled down to 1; two busy containers, one with twice
the other's cpu_shares."""
from __future__ import annotations

from labsupport import compose
from labsupport.compose import scaleout, services
from labsupport.course.exercises.nb11_compose import (
    CPU_PROJECT,
    FIT_PROJECT,
    FIT_REPLICAS,
    PROJECT,
    PROXY_PORT,
    VISITS,
)
from labsupport.course.predictions import predict

STACK = f"""
[services.kv]
image = "lab-kv"

[services.queue]
image = "lab-queue"

[services.web]
image = "lab-web"
replicas = 3
depends_on = ["kv", "queue"]

[services.proxy]
image = "lab-proxy"
depends_on = ["web"]
publish = ["127.0.0.1:{PROXY_PORT}:80"]
"""

FIT = f"""
[services.web]
image = "lab-web"
replicas = {FIT_REPLICAS}
"""

BURNERS = """
[services.light]
image = "busybox"
command = ["sh", "-c", "while :; do :; done"]
cpu_shares = 512

[services.heavy]
image = "busybox"
command = ["sh", "-c", "while :; do :; done"]
cpu_shares = 1024
"""


def solve(k: int) -> None:
    if k == 1:
        predict("11", 1, "about 10 MiB a replica: a Python process; hundreds would fit")
        services.ensure_images()
        compose.up(FIT, project=FIT_PROJECT)
        scaleout.wait_listening(FIT_PROJECT, "web", 8000)
    elif k == 2:
        predict("11", 2, "the count stays: it lives in redis, not in the replicas")
        services.ensure_images()
        compose.up(STACK, project=PROJECT)
        scaleout.wait_listening(PROJECT, "web", 8000)
        scaleout.spread(f"http://127.0.0.1:{PROXY_PORT}/", VISITS)
        compose.scale(PROJECT, "web", 1)
    elif k == 3:
        compose.up(BURNERS, project=CPU_PROJECT)
