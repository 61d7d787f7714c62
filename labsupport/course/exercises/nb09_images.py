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
                                 f"changing only the permission bits of {TARGET}",
                                 ko=f"{TARGET}의 권한 비트만 바꾼 뒤 upper 디렉터리가 차지하는 "
                                    "바이트 수")
    if isinstance(guess, Verdict):
        return guess
    box = _copy_box()
    if overlay.mount_at(box / "rootfs") is None:
        return hint(f"Nothing is mounted at {box / 'rootfs'}: mount the busybox image with the "
                    f"container directory {box}.",
                    ko=f"{box / 'rootfs'}에 마운트된 것이 없습니다: 컨테이너 디렉터리 {box}로 "
                       "busybox 이미지를 마운트하세요.")
    upper = box / "upper" / TARGET.lstrip("/")
    lower = [layer / TARGET.lstrip("/") for layer in images.get("busybox").layers
             if (layer / TARGET.lstrip("/")).is_file()]
    if not lower:
        return hint(f"The busybox image holds no {TARGET}: build the base again (the notebook's "
                    "first cell).",
                    ko=f"busybox 이미지에 {TARGET}이(가) 없습니다: 베이스를 다시 "
                       "빌드하세요(노트북의 첫 셀).")
    if not upper.exists():
        return hint(f"Your container's upper directory holds no {TARGET} yet: change its "
                    "permission bits through the mounted root, as a process inside would.",
                    ko=f"컨테이너의 upper 디렉터리에 아직 {TARGET}이(가) 없습니다: 안의 프로세스가 "
                       "하듯이, 마운트된 루트를 통해 권한 비트를 바꾸세요.")
    mine, theirs = os.lstat(upper), os.lstat(lower[-1])
    if stat.S_IMODE(mine.st_mode) == stat.S_IMODE(theirs.st_mode):
        return hint(f"{TARGET} in your upper directory has the same permission bits as the "
                    "image's: the exercise changes only the mode, nothing else.",
                    ko=f"upper 디렉터리의 {TARGET}의 권한 비트가 이미지의 것과 같습니다: 이 연습은 "
                       "모드만 바꾸고, 다른 것은 바꾸지 않습니다.")
    if upper.read_bytes() != lower[-1].read_bytes():
        return hint(f"{TARGET}'s content changed too: change only its permission bits (remove "
                    "the box and mount it again to start over).",
                    ko=f"{TARGET}의 내용도 바뀌었습니다: 권한 비트만 바꾸세요(처음부터 다시 하려면 "
                       "박스를 지우고 다시 마운트하세요).")
    used = layers.tree_bytes(box / "upper")
    metacopy = Path("/sys/module/overlay/parameters/metacopy").read_text().strip()
    return passed(predictions.beside(
        guess, f"after one chmod the upper directory holds {used / 1024:.0f} KiB; {TARGET} in the "
        f"image is {theirs.st_size / 1024:.0f} KiB (overlay metacopy={metacopy})") + " Without "
        "metacopy, overlayfs copies the whole file up before it changes even one bit of its inode: "
        "a container that chmods a large file pays for all of it, once per container.",
                  ko=predictions.beside(
                      guess, f"chmod 한 번 뒤 upper 디렉터리가 {used / 1024:.0f} KiB를 차지합니다; "
                             f"이미지 속 {TARGET}은(는) {theirs.st_size / 1024:.0f} "
                             f"KiB입니다(overlay metacopy={metacopy})", "ko")
                     + " metacopy가 없으면 overlayfs는 inode의 비트 하나를 바꾸기 전에도 파일 "
                       "전체를 위로 복사(copy-up)합니다: 큰 파일을 chmod하는 컨테이너는 그 크기 "
                       "전부를, 컨테이너마다 한 번씩 치릅니다.")


@exercise("09", 2, "Find the whiteout")
def find_the_whiteout() -> Verdict:
    box = exercise_dir("09") / "box"
    if overlay.mount_at(box / "rootfs") is None:
        return hint(f"Nothing is mounted at {box / 'rootfs'}: mount the busybox image there "
                    "(the container directory is the exercise's box).",
                    ko=f"{box / 'rootfs'}에 마운트된 것이 없습니다: busybox 이미지를 그곳에 "
                       "마운트하세요(컨테이너 디렉터리는 이 연습의 박스입니다).")
    answer = exercise_dir("09") / "whiteout.txt"
    if not answer.is_file():
        return hint(f"Delete /etc/os-release inside the mounted root, then write into {answer} the "
                    "host path of what the deletion left behind.",
                    ko="마운트된 루트 안에서 /etc/os-release를 지우고, 삭제가 남긴 것의 호스트 "
                       f"경로를 {answer}에 적으세요.")
    named = Path(answer.read_text().strip())
    try:
        st = os.lstat(named)
    except FileNotFoundError:
        return hint(f"{named} does not exist. Which of the overlay's directories takes every change?",
                    ko=f"{named}은(는) 존재하지 않습니다. overlay의 디렉터리 중 모든 변경을 받아 "
                       "내는 것은 어느 것일까요?")
    if not layers.is_whiteout(st):
        return hint(f"{named} exists but is not a whiteout. How does overlayfs mark a deleted file?",
                    ko=f"{named}은(는) 있지만 화이트아웃이 아닙니다. overlayfs는 지운 파일을 어떻게 "
                       "표시할까요?")
    if not named.is_relative_to(box / "upper"):
        return hint(f"{named} is a whiteout, but not the one in your box's writable directory.",
                    ko=f"{named}은(는) 화이트아웃이지만, 내 박스의 쓰기 가능한 디렉터리에 있는 것이 "
                       "아닙니다.")
    hidden = named.relative_to(box / "upper")
    lower = [p for p in images.get("busybox").layers if (p / hidden).exists()]
    if not lower:
        return hint(f"That whiteout hides /{hidden}, which no busybox layer holds.",
                    ko=f"그 화이트아웃은 /{hidden}을(를) 가리는데, 그 파일은 어느 busybox "
                       "레이어에도 없습니다.")
    return passed(f"{named} is a character device 0/0 hiding /{hidden}; the layer {lower[0].name[:12]} "
                  "still holds the file, untouched - deleting never shrinks the layers below.",
                  ko=f"{named}은(는) /{hidden}을(를) 가리는 문자 장치 0/0입니다. 레이어 "
                     f"{lower[0].name[:12]}에는 파일이 손대지 않은 채 그대로 있습니다 - 삭제해도 "
                     "아래 레이어는 절대 줄어들지 않습니다.")


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
        return hint("Build both ex09-a and ex09-b first, on the busybox base.",
                    ko="먼저 busybox 베이스 위에 ex09-a와 ex09-b를 둘 다 빌드하세요.")
    if first.diff_ids[0] != base.diff_ids[0] or second.diff_ids[0] != base.diff_ids[0]:
        return hint("Both images should stand on the busybox base layer, stored once.",
                    ko="두 이미지 모두 한 번만 저장된 busybox 베이스 레이어 위에 서 있어야 합니다.")
    libraries = {image.name: _library(image) for image in (first, second)}
    missing = [name for name, content in libraries.items() if content is None]
    if missing:
        return hint(f"{missing[0]} holds no file at {LIBRARY}: each app needs its library "
                    "at that very path.",
                    ko=f"{missing[0]}의 {LIBRARY} 경로에 파일이 없습니다: 각 앱은 바로 그 경로에 "
                       "자기 라이브러리가 있어야 합니다.")
    if libraries["ex09-a"] == libraries["ex09-b"]:
        return hint(f"Both images hold the same {LIBRARY}: the apps need two different versions.",
                    ko=f"두 이미지의 {LIBRARY}가 똑같습니다: 두 앱에는 서로 다른 버전이 필요합니다.")
    if not first.config.cmd or not second.config.cmd:
        return hint("Give each image a command that uses (prints) its library.",
                    ko="각 이미지에 자기 라이브러리를 사용하는(출력하는) 명령을 주세요.")
    said = {image.name: _run_image(image) for image in (first, second)}
    for name, content in libraries.items():
        own = content.decode(errors="replace").strip()
        if own not in said[name]:
            return hint(f"{name}'s command printed {said[name][:60]!r}, not its own library "
                        f"({own[:40]!r}): does it read {LIBRARY}?",
                        ko=f"{name}의 명령이 출력한 것은 {said[name][:60]!r}(으)로, 자기 "
                           f"라이브러리({own[:40]!r})가 아닙니다: 그 명령이 {LIBRARY}를 읽나요?")
    return passed(f"ex09-a says {said['ex09-a'][:40]!r}, ex09-b says {said['ex09-b'][:40]!r}: one "
                  f"path, {LIBRARY}, two versions, on one host - each image carries its own, and "
                  "the base below both is stored once. Before containers, two such apps needed two "
                  "machines, or one of them rebuilt.",
                  ko=f"ex09-a는 {said['ex09-a'][:40]!r}, ex09-b는 {said['ex09-b'][:40]!r}(이)라고 "
                     f"합니다: 같은 경로 {LIBRARY}, 두 버전, 한 호스트 - 각 이미지가 자기 것을 들고 "
                     "있고, 둘 아래의 베이스는 한 번만 저장됩니다. 컨테이너가 없던 시절에는 이런 "
                     "두 앱을 위해 머신 두 대가 필요하거나, 둘 중 하나를 다시 빌드해야 했습니다.")


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
