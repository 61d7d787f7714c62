"""Notebook 01 (chroot): build a root by hand, give it names, run a program in it, and predict
whether the escape needs a capability."""
from __future__ import annotations

import labsupport as lab
from labsupport.course.exercises.nb01_chroot import my_root
from labsupport.course.predictions import predict
from labsupport.process import Child

#: Programs this notebook's solutions leave running.
running: list[Child] = []


def solve(k: int) -> None:
    root = my_root()
    if k == 1:
        root.mkdir(parents=True, exist_ok=True)
        lab.build_from_programs(root, ["ls", "sleep"])
    elif k == 2:
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc/group").write_text("root:x:0:\n")
    elif k == 3:
        running.append(lab.start(["sleep", "600"], root=root))
    elif k == 4:
        predict("01", 4, "it still escapes: root is root")
