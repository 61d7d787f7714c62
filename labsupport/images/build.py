"""Build images offline, layer by layer: a base, a runtime, an app.

Each step fills an empty directory; the directory becomes a layer named by
the sha256 of its tar. A step that produces the same bytes as one already in
the store adds nothing to the disk - which is why images are built as a
stack rather than one big tree: the base is shared by every image on it,
and changing the app rebuilds only the app's layer.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

from labsupport.images import layers, store
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.namespaces import rootfs

#: Documentation in packages: left out of package layers, as slim images do.
_SKIPPED_PACKAGE_DIRS = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/lintian/")


@dataclass(frozen=True)
class Step:
    """One layer to build: what ``docker image history`` shows, and how to fill the directory."""

    created_by: str
    fill: Callable[[Path], None]


def _copy_host_file(tree: Path, host_path: Path, keep_symlink: bool = False) -> None:
    """Copy a host file to the same path inside ``tree``; a symlink's content, unless ``keep_symlink``.

    ldd names the loader by a symlink (/lib64/ld-linux-x86-64.so.2) whose target
    would be missing in the layer: programs need the content.
    """
    inside = tree / host_path.relative_to("/")
    inside.parent.mkdir(parents=True, exist_ok=True)
    if keep_symlink and host_path.is_symlink():
        inside.unlink(missing_ok=True)
        inside.symlink_to(os.readlink(host_path))
    else:
        shutil.copy2(host_path.resolve(), inside)


def add_files(files: Mapping[str, str | bytes | Path], mode: int = 0o644) -> Step:
    """A layer of files given as {path in the image: text, bytes, or a host file to copy}."""
    def fill(tree: Path) -> None:
        for path, content in files.items():
            inside = tree / path.lstrip("/")
            inside.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copy2(content, inside)
            else:
                inside.write_bytes(content.encode() if isinstance(content, str) else content)
                inside.chmod(mode)
    return Step(f"lab: files {' '.join(sorted(files))}", fill)


def add_programs(programs: Sequence[str]) -> Step:
    """A layer of host programs and every shared library they load (what ``ldd`` lists)."""
    def fill(tree: Path) -> None:
        for program in programs:
            path = rootfs.find_program(program)
            for host_file in [path, *rootfs.shared_libraries(path)]:
                _copy_host_file(tree, host_file)
    return Step(f"lab: programs {' '.join(programs)}", fill)


def package_files(package: str) -> list[Path]:
    """Files and symlinks an installed Debian package put on the host (``dpkg -L``)."""
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if out.returncode != 0:
        raise LabError(f"The Debian package {package!r} is not installed here: pick one `dpkg -l` lists.")
    paths = [Path(line) for line in out.stdout.splitlines() if line.startswith("/")]
    return [p for p in paths if not str(p).startswith(_SKIPPED_PACKAGE_DIRS)
            and (p.is_symlink() or p.is_file())]


def add_packages(packages: Sequence[str]) -> Step:
    """A layer of the files of installed Debian packages (without their documentation)."""
    def fill(tree: Path) -> None:
        for package in packages:
            for host_file in package_files(package):
                _copy_host_file(tree, host_file, keep_symlink=True)
    return Step(f"lab: packages {' '.join(packages)}", fill)


def remove_files(paths: Sequence[str]) -> Step:
    """A layer that deletes files of the layers below: one whiteout (a 0/0 char device) per path.

    The bytes stay in the lower layer - every image on it still has them -
    which is why deleting in a later layer never makes an image smaller.
    """
    def fill(tree: Path) -> None:
        for path in paths:
            inside = tree / path.lstrip("/")
            inside.parent.mkdir(parents=True, exist_ok=True)
            os.mknod(inside, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    return Step(f"lab: remove {' '.join(paths)}", fill)


def commit_layer(tree: Path) -> str:
    """Turn a filled directory (inside the store's tmp) into a layer; returns its digest.

    Call with the store lock held. A layer with the same digest already
    there is kept, and this tree is dropped with its staging directory.
    """
    tar = layers.tar_bytes(tree)
    digest = store.sha256_hex(tar)
    target = store.layer_path(digest)
    if not target.is_dir():
        tree.rename(target)
    store.put_blob(tar)
    return digest


def save_image(name: str, tag: str, config: store.ImageConfig, diff_ids: list[str],
               history: list[str]) -> store.Image:
    """Write the image's config blob and point ``name:tag`` at it (lock held)."""
    image_id = store.put_blob(store.config_json(config, diff_ids, history))
    store.set_ref(name, tag, image_id)
    return store.Image(name, tag, image_id, diff_ids, config, history)


def build_image(ref: str, steps: Sequence[Step], base: str | None = "busybox",
                cmd: list[str] | None = None, env: dict[str, str] | None = None,
                workdir: str | None = None, exposed_ports: list[int] | None = None) -> store.Image:
    """Build ``ref`` as the layers of ``base`` plus one layer per step; settings override the base's."""
    name, tag = store.parse_ref(ref)
    below = store.get(base) if base else None
    config = below.config if below else store.ImageConfig()
    config = replace(config, env={**config.env, **(env or {})},
                     **{k: v for k, v in (("cmd", cmd), ("workdir", workdir),
                                          ("exposed_ports", exposed_ports)) if v is not None})
    diff_ids = list(below.diff_ids) if below else []
    history = list(below.history) if below else []
    with store.staging("build") as scratch, store.locked():
        for number, step in enumerate(steps):
            tree = scratch / str(number)
            tree.mkdir()
            step.fill(tree)
            diff_ids.append(commit_layer(tree))
            history.append(step.created_by)
        return save_image(name, tag, config, diff_ids, history)


def commit(container_dir: Path, ref: str, image: store.Image) -> store.Image:
    """``docker commit``: the container's upper directory becomes one more layer on its image.

    An upper directory already *is* a layer in overlayfs' format - copy-ups,
    new files, whiteouts - so committing is copying it and naming it by digest.
    """
    upper = Path(container_dir) / "upper"
    if not upper.is_dir():
        raise LabError(f"{container_dir} holds no container root (no upper/): prepare one first.")
    running = processes_in_root(Path(container_dir) / "rootfs")
    if running:
        raise LabError(f"A process still runs in {container_dir} (PID {running[0]}): stop the container "
                       "before committing it - a running one could swap a file for a link while it is copied.")
    step = Step(f"lab: commit of {Path(container_dir).name}", lambda tree: layers.copy_tree(upper, tree))
    return build_image(ref, [step], base=image.id)


def processes_in_root(root: Path) -> list[int]:
    """Every process whose root directory is ``root`` - also one that pivoted into it in another
    mount namespace, where the host's path means nothing: the directory itself is compared."""
    try:
        wanted = os.stat(root)
    except FileNotFoundError:
        return []
    found = []
    for pid in hoststate.processes():
        try:
            theirs = os.stat(f"/proc/{pid}/root")
        except OSError:
            continue  # gone, or a kernel thread
        if (theirs.st_dev, theirs.st_ino) == (wanted.st_dev, wanted.st_ino):
            found.append(pid)
    return found


def _busybox_tree(tree: Path) -> None:
    shutil.copytree(rootfs.busybox_root(), tree, symlinks=True, dirs_exist_ok=True)
    (tree / rootfs._STAMP).unlink()


def build_busybox_base(name: str = "busybox") -> store.Image:
    """The base every lab image stands on: the busybox root as one layer. Built once."""
    try:
        image = store.get(name)
        if all(p.is_dir() for p in image.layers):
            return image
    except LabError:
        pass
    return build_image(name, [Step(f"lab: busybox root ({rootfs.BUSYBOX})", _busybox_tree)], base=None,
                       cmd=["/bin/sh"], env={"PATH": "/bin:/sbin:/usr/bin:/usr/sbin"})
