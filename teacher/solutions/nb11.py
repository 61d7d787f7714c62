"""Notebook 11 (compose and scale out): a project of kv, queue, 3 web replicas and a proxy;
30 visits through the proxy; two busy containers, one with twice the other's cpu_shares."""
from __future__ import annotations

from labsupport import compose
from labsupport.compose import scaleout, services
from labsupport.course.exercises.nb11_compose import CPU_PROJECT, PROJECT, PROXY_PORT, VISITS

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
        services.ensure_images()
        compose.up(STACK, project=PROJECT)
    elif k == 2:
        scaleout.spread(f"http://127.0.0.1:{PROXY_PORT}/", VISITS)
    elif k == 3:
        compose.up(BURNERS, project=CPU_PROJECT)
