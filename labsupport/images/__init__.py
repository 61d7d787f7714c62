"""Images: layers stacked by overlayfs, named by digest, built and imported offline.

The public face other modules use (the container runtime among them)::

    images.build_busybox_base()          # the shared base, built once
    images.get("web:1") -> Image         # .name .id .layers (bottom first) .config
    images.prepare_rootfs(ref, box_dir)  # overlay mounted at box_dir/rootfs
    images.release_rootfs(box_dir)
    images.commit(box_dir, "mine:1")     # the container's changes as one more layer
    images.import_archive(path) / images.export_archive(ref, path, format="oci")
"""
from __future__ import annotations

import os
from pathlib import Path

from labsupport.images import build, overlay, store
from labsupport.images.build import (
    Step,
    add_files,
    add_packages,
    add_programs,
    build_busybox_base,
    build_image,
    remove_files,
)
from labsupport.images.importer import export_archive, import_archive
from labsupport.images.store import Image, ImageConfig, get, list_images
from labsupport.kernel.errors import LabError

#: Which image a container directory was prepared from (what commit builds on).
_IMAGE_FILE = "image-id"

__all__ = ["Image", "ImageConfig", "Step", "add_files", "add_packages", "add_programs",
           "build_busybox_base", "build_image", "commit", "export_archive", "get", "import_archive",
           "list_images", "prepare_rootfs", "release_rootfs", "remove", "remove_files"]


def remove(ref: str) -> list[str]:
    """Remove an image's name (by id: all its names); layers no image uses are deleted.

    An image whose layers a mounted container root still stacks on is refused.
    """
    return store.remove(ref, overlay.lab_overlay_options())


def prepare_rootfs(ref: str, container_dir: str | os.PathLike) -> Path:
    """Mount image ``ref`` for one container: upper/ and work/ in ``container_dir``, merged at ./rootfs."""
    image = get(ref)
    merged = overlay.mount(Path(container_dir), image.layers).merged
    (Path(container_dir) / _IMAGE_FILE).write_text(image.id)
    return merged


def commit(container_dir: str | os.PathLike, ref: str) -> Image:
    """Save a container's changes (its upper/) as a new image: its image plus one layer."""
    try:
        image_id = (Path(container_dir) / _IMAGE_FILE).read_text().strip()
    except FileNotFoundError:
        raise LabError(f"{container_dir} was not prepared by images.prepare_rootfs: nothing to commit.") from None
    return build.commit(Path(container_dir), ref, store.load(image_id))


def release_rootfs(container_dir: str | os.PathLike) -> None:
    """Unmount what :func:`prepare_rootfs` mounted (the container's upper/ stays until its dir goes)."""
    overlay.unmount(Path(container_dir))
