"""Notebook 09 (images and layers): checks that read the image store and the learner's overlay.

The learner works in /var/lib/labsupport/exercises/09/ and names images ex09-*. Exercise 1
measures the copy-up of one chmod beside the learner's prediction; exercise 3 runs the
learner's two images to see each use its own version of one library path.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from labsupport import images, ownership
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed, workdir
from labsupport.course.exercises.workdir import exercise_dir
from labsupport.images import layers, overlay, store
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.process import run_command

#: Exercise 1's container directory and the file whose mode it changes.
COPY_BOX = "copybox"
TARGET = "/bin/busybox"
#: The path both of exercise 3's apps need, each in another version.
LIBRARY = "/usr/lib/libdemo.so"


def _image(ref: str) -> store.Image | None:
    try:
        return images.get(ref)
    except LabError:
        return None


def _copy_box() -> Path:
    return exercise_dir("09") / COPY_BOX


@exercise("09", 1, "Predict what one chmod costs in a container's upper layer, then measure it")
def chmod_copies_up() -> Verdict:
    guess = predictions.required("09", 1, "for how many bytes the upper directory holds after "
                                 f"changing only the permission bits of {TARGET}")
    if isinstance(guess, Verdict):
        return guess
    box = _copy_box()
    if overlay.mount_at(box / "rootfs") is None:
        return hint(f"Nothing is mounted at {box / 'rootfs'}: mount the busybox image with the "
                    f"container directory {box}.")
    upper = box / "upper" / TARGET.lstrip("/")
    lower = [layer / TARGET.lstrip("/") for layer in images.get("busybox").layers
             if (layer / TARGET.lstrip("/")).is_file()]
    if not lower:
        return hint(f"The busybox image holds no {TARGET}: build the base again (the notebook's "
                    "first cell).")
    if not upper.exists():
        return hint(f"Your container's upper directory holds no {TARGET} yet: change its "
                    "permission bits through the mounted root, as a process inside would.")
    mine, theirs = os.lstat(upper), os.lstat(lower[-1])
    if stat.S_IMODE(mine.st_mode) == stat.S_IMODE(theirs.st_mode):
        return hint(f"{TARGET} in your upper directory has the same permission bits as the "
                    "image's: the exercise changes only the mode, nothing else.")
    if upper.read_bytes() != lower[-1].read_bytes():
        return hint(f"{TARGET}'s content changed too: change only its permission bits (remove "
                    "the box and mount it again to start over).")
    used = layers.tree_bytes(box / "upper")
    metacopy = Path("/sys/module/overlay/parameters/metacopy").read_text().strip()
    return passed(predictions.beside(
        guess, f"after one chmod the upper directory holds {used / 1024:.0f} KiB; {TARGET} in the "
        f"image is {theirs.st_size / 1024:.0f} KiB (overlay metacopy={metacopy})") + " Without "
        "metacopy, overlayfs copies the whole file up before it changes even one bit of its inode: "
        "a container that chmods a large file pays for all of it, once per container.")


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


def _library(image: store.Image) -> bytes | None:
    """The content of LIBRARY as the image's top-most layer holding it has it."""
    for layer in reversed(image.layers):
        path = layer / LIBRARY.lstrip("/")
        if os.path.lexists(path):
            st = os.lstat(path)
            return None if layers.is_whiteout(st) or not stat.S_ISREG(st.st_mode) else path.read_bytes()
    return None


def _run_image(image: store.Image) -> str:
    """Run the image's command in a root of its own, as a container would; its output."""
    box = ownership.temp_dir("ex09run")
    try:
        root = images.prepare_rootfs(image.ref, box)
        try:
            result = run_command(image.config.cmd, root=root, env=image.config.env,
                                 cwd=image.config.workdir or "/", timeout=10)
        finally:
            images.release_rootfs(box)
        return result.stdout.strip()
    finally:
        shutil.rmtree(box, ignore_errors=True)


@exercise("09", 3, "Two apps, one library path, two versions: the clash solved by images")
def dependency_clash() -> Verdict:
    first, second = _image("ex09-a"), _image("ex09-b")
    base = _image("busybox")
    if first is None or second is None or base is None:
        return hint("Build both ex09-a and ex09-b first, on the busybox base.")
    if first.diff_ids[0] != base.diff_ids[0] or second.diff_ids[0] != base.diff_ids[0]:
        return hint("Both images should stand on the busybox base layer, stored once.")
    libraries = {image.name: _library(image) for image in (first, second)}
    missing = [name for name, content in libraries.items() if content is None]
    if missing:
        return hint(f"{missing[0]} holds no file at {LIBRARY}: each app needs its library "
                    "at that very path.")
    if libraries["ex09-a"] == libraries["ex09-b"]:
        return hint(f"Both images hold the same {LIBRARY}: the apps need two different versions.")
    if not first.config.cmd or not second.config.cmd:
        return hint("Give each image a command that uses (prints) its library.")
    said = {image.name: _run_image(image) for image in (first, second)}
    for name, content in libraries.items():
        own = content.decode(errors="replace").strip()
        if own not in said[name]:
            return hint(f"{name}'s command printed {said[name][:60]!r}, not its own library "
                        f"({own[:40]!r}): does it read {LIBRARY}?")
    return passed(f"ex09-a says {said['ex09-a'][:40]!r}, ex09-b says {said['ex09-b'][:40]!r}: one "
                  f"path, {LIBRARY}, two versions, on one host - each image carries its own, and "
                  "the base below both is stored once. Before containers, two such apps needed two "
                  "machines, or one of them rebuilt.")


def reset() -> list[str]:
    """What notebook 09's exercises leave besides the exercise directory, removed (``reset 09``)."""
    from labsupport import images

    done = []
    for name in ("box", COPY_BOX):
        box = workdir.EXERCISES_DIR / "09" / name
        if (box / "rootfs").exists() and any(m.mountpoint == str(box / "rootfs")
                                             for m in hoststate.mounts()):
            images.release_rootfs(box)
            done.append(f"unmounted {box / 'rootfs'}")
    for image in images.list_images():
        if image.name.startswith("ex09-"):
            done += [f"removed image {ref}" for ref in images.remove(image.ref)]
    return done
