"""Notebook 09 (images): a three-layer image, a whiteout found, two images sharing a runtime."""
from __future__ import annotations

import os

from labsupport import images
from labsupport.course.exercises.workdir import exercise_dir

RUNTIME = images.add_files({"/opt/runtime/run.sh": "#!/bin/sh\necho runtime 1.0\n"})


def _app(name: str) -> images.Step:
    return images.add_files({f"/app/{name}.txt": f"the {name} app\n"})


def solve(k: int) -> None:
    images.build_busybox_base()
    if k == 1:
        images.build_image("ex09-app", [RUNTIME, _app("main")], cmd=["cat", "/app/main.txt"])
    elif k == 2:
        box = exercise_dir("09") / "box"
        merged = images.prepare_rootfs("busybox", box)
        os.remove(merged / "etc/os-release")
        (exercise_dir("09") / "whiteout.txt").write_text(f"{box / 'upper/etc/os-release'}\n")
    elif k == 3:
        for name in ("a", "b"):
            images.build_image(f"ex09-{name}", [RUNTIME, _app(name)])
