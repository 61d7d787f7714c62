"""Notebook 09 (images and layers): checks that read the image store and the learner's overlay.

The learner works in /var/lib/labsupport/exercises/09/ and names images ex09-*.
"""
from __future__ import annotations

import os
from pathlib import Path

from labsupport import images
from labsupport.course.exercises import Verdict, exercise, hint, passed, workdir
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.images import layers, overlay, store
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError


def _image(ref: str) -> store.Image | None:
    try:
        return images.get(ref)
    except LabError:
        return None


@exercise("09", 1, "An image with a layer of your own")
def image_with_an_extra_layer() -> Verdict:
    base, mine = _image("busybox"), _image("ex09-app")
    if base is None:
        return hint("There is no busybox base image yet: the notebook builds it in its first cells.")
    if mine is None:
        return hint("There is no image named ex09-app yet. Build it on the busybox base.")
    if mine.diff_ids[0] != base.diff_ids[0]:
        return hint("ex09-app does not stand on the busybox base: its bottom layer is another one.")
    if len(mine.diff_ids) < 3:
        return hint(f"ex09-app has {len(mine.diff_ids)} layer(s). The task asks for a runtime layer and "
                    "an app layer above the base - each step of a build is one layer.")
    if not mine.config.cmd or mine.config.cmd == base.config.cmd:
        return hint("ex09-app starts the base's own command. What does one image's config let you set?")
    return passed(f"ex09-app is {len(mine.diff_ids)} layers: {' | '.join(mine.history)}; it starts "
                  f"{' '.join(mine.config.cmd)}. The base layer is the very directory busybox uses.")


@exercise("09", 2, "Find the whiteout")
def find_the_whiteout() -> Verdict:
    box = exercise_dir("09") / "box"
    if overlay.mount_at(box / "rootfs") is None:
        return hint(f"Nothing is mounted at {box / 'rootfs'}: mount the busybox image there "
                    "(the container directory is the exercise's box).")
    answer = exercise_dir("09") / "whiteout.txt"
    if not answer.is_file():
        return hint(f"Delete /etc/os-release inside the mounted root, then write into {answer} the "
                    "host path of what the deletion left behind.")
    named = Path(answer.read_text().strip())
    try:
        st = os.lstat(named)
    except FileNotFoundError:
        return hint(f"{named} does not exist. Which of the overlay's directories takes every change?")
    if not layers.is_whiteout(st):
        return hint(f"{named} exists but is not a whiteout. How does overlayfs mark a deleted file?")
    if not named.is_relative_to(box / "upper"):
        return hint(f"{named} is a whiteout, but not the one in your box's writable directory.")
    hidden = named.relative_to(box / "upper")
    lower = [p for p in images.get("busybox").layers if (p / hidden).exists()]
    if not lower:
        return hint(f"That whiteout hides /{hidden}, which no busybox layer holds.")
    return passed(f"{named} is a character device 0/0 hiding /{hidden}; the layer {lower[0].name[:12]} "
                  "still holds the file, untouched - deleting never shrinks the layers below.")


@exercise("09", 3, "Two images, one runtime on disk")
def shared_runtime() -> Verdict:
    first, second = _image("ex09-a"), _image("ex09-b")
    if first is None or second is None:
        return hint("Build both ex09-a and ex09-b first.")
    common = 0
    for a, b in zip(first.diff_ids, second.diff_ids):
        if a != b:
            break
        common += 1
    if common < 2:
        return hint(f"ex09-a and ex09-b share {common} layer(s) from the bottom. The task wants the base "
                    "and a runtime layer shared; is your runtime layer built the same way in both?")
    if first.id == second.id or first.diff_ids == second.diff_ids:
        return hint("ex09-a and ex09-b are the same stack of layers. Give each an app of its own on top.")
    if first.diff_ids[-1] in second.diff_ids or second.diff_ids[-1] in first.diff_ids:
        return hint("One image carries the other's app as well: each app should sit on the shared "
                    "runtime, not on the other app.")
    from labsupport.images import views  # matplotlib: loaded only when this check runs

    alone, shared = views.sharing([first, second])
    return passed(f"They share {common} layers: {(alone - shared) / 1024:.0f} KiB are stored once instead "
                  "of twice - the reason a service is several small images on common layers.")


def reset() -> list[str]:
    """What notebook 09's exercises leave besides the exercise directory, removed (``reset 09``)."""
    from labsupport import images

    done = []
    box = workdir.EXERCISES_DIR / "09" / "box"
    if (box / "rootfs").exists() and any(m.mountpoint == str(box / "rootfs") for m in hoststate.mounts()):
        images.release_rootfs(box)
        done.append(f"unmounted {box / 'rootfs'}")
    for image in images.list_images():
        if image.name.startswith("ex09-"):
            done += [f"removed image {ref}" for ref in images.remove(image.ref)]
    return done
