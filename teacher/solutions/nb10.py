"""Notebook 10 (the full container): a page on a published port, a small container, two by name,
and a prediction of which defense stops add_key."""
from __future__ import annotations

import time
import urllib.request

from labsupport import container
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.kernel.errors import LabError

PAGE = "mkdir -p /www && echo 'hello from ex10' > /www/index.html && exec httpd -f -p 80 -h /www"


def _running(name: str) -> bool:
    try:
        return container.state(name).get("status") == "running"
    except LabError:
        return False


def _serve_page() -> None:
    if not _running("ex10-web"):
        container.run("busybox", ["sh", "-c", PAGE], name="ex10-web", publish=["127.0.0.1:8090:80"])
    for _ in range(100):  # httpd listens a moment after its exec
        try:
            urllib.request.urlopen("http://127.0.0.1:8090/", timeout=1)
            return
        except OSError:
            time.sleep(0.05)


def solve(k: int) -> None:
    if k == 1:
        _serve_page()
    elif k == 2:
        container.run("busybox", ["sleep", "3600"], name="ex10-small", memory="32M", pids=10)
    elif k == 3:
        _serve_page()
        container.run("busybox", ["sleep", "3600"], name="ex10-db")
    elif k == 4:
        # add_key needs no capability and no device: only the seccomp filter takes the call away.
        (exercise_dir("10") / "prediction.txt").write_text("seccomp\n")
