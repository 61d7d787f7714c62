"""Notebook 09 (images): one chmod's copy-up predicted and measured, a whiteout found, and two
images that carry two versions of one library at one path."""
from __future__ import annotations

import os

from labsupport import images
from labsupport.course.exercises.nb09_images import COPY_BOX, LIBRARY, TARGET
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.course.predictions import predict


def _app(version: str) -> list[images.Step]:
    return [images.add_files({LIBRARY: f"libdemo {version}\n",
                              "/app/run.sh": f"#!/bin/sh\necho app needs: $(cat {LIBRARY})\n"})]


def solve(k: int) -> None:
    images.build_busybox_base()
    if k == 1:
        predict("09", 1, "a few bytes: only the mode changes")
        merged = images.prepare_rootfs("busybox", exercise_dir("09") / COPY_BOX)
        os.chmod(merged / TARGET.lstrip("/"), 0o700)
    elif k == 2:
        box = exercise_dir("09") / "box"
        merged = images.prepare_rootfs("busybox", box)
        os.remove(merged / "etc/os-release")
        (exercise_dir("09") / "whiteout.txt").write_text(f"{box / 'upper/etc/os-release'}\n")
    elif k == 3:
        for name, version in (("a", "1.0"), ("b", "2.0")):
            images.build_image(f"ex09-{name}", _app(version), cmd=["/bin/sh", "/app/run.sh"])
