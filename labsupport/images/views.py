"""What notebook 09 shows: the overlay's layers side by side, layer stacks, sharing, history.

Every view reads the real store and the real mount - nothing is drawn from
assumptions - so a learner who changes something sees it in the next figure.
"""
from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from labsupport import ownership
from labsupport.images import layers, overlay, store
from labsupport.kernel.tables import Table


def _kind(path: Path) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ""
    if layers.is_whiteout(st):
        return "whiteout 0/0"
    if stat.S_ISLNK(st.st_mode):
        return f"-> {os.readlink(path)}"
    if stat.S_ISDIR(st.st_mode):
        return "dir (opaque)" if layers.is_opaque(path) else "dir"
    return f"file {st.st_size} B"


def overlay_diagram(container_dir: Path, lower: list[Path], paths: list[str]) -> Figure:
    """A grid: one row per directory (merged, upper, each lower), one column per path."""
    ov = overlay.layout(Path(container_dir), lower)
    rows = [("merged (what the container sees)", ov.merged), ("upper (writable)", ov.upper)]
    rows += [(f"lower {i + 1}: {p.name[:12]} (read-only)", p) for i, p in reversed(list(enumerate(lower)))]
    fig, ax = plt.subplots(figsize=(2.2 * len(paths) + 3.2, 0.75 * len(rows) + 0.8))
    colours = {"whiteout 0/0": "#f4b6b6", "": "#ffffff"}
    for r, (label, base) in enumerate(rows):
        y = len(rows) - r - 1
        ax.text(-0.1, y + 0.5, label, ha="right", va="center", fontsize=9)
        for c, rel in enumerate(paths):
            kind = _kind(base / rel)
            face = "#cfe3f7" if r == 0 and kind else colours.get(kind, "#d9f2d9" if r == 1 else "#eeeeee")
            ax.add_patch(plt.Rectangle((c, y + 0.08), 0.95, 0.84, facecolor=face, edgecolor="#555555"))
            ax.text(c + 0.475, y + 0.5, kind or ("hidden / absent" if r == 0 else "-"),
                    ha="center", va="center", fontsize=8)
    for c, rel in enumerate(paths):
        ax.text(c + 0.475, len(rows) + 0.1, "/" + rel, ha="center", va="bottom", fontsize=9, family="monospace")
    ax.axhline(len(rows) - 1, color="#333333", linewidth=2)
    ax.set_xlim(-0.1, len(paths))
    ax.set_ylim(0, len(rows) + 0.5)
    ax.axis("off")
    ax.set_title("overlayfs: merged = upper over the lower layers (whiteouts hide, upper wins)", fontsize=10)
    fig.tight_layout()
    return fig


def _colour(digest: str) -> str:
    return f"#{int(digest[:6], 16) | 0x808080:06x}"  # pale, and the same for the same layer


def _size(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size / 1024:.0f} KiB"


def layer_stack(images: list[store.Image]) -> Figure:
    """Each image as a stack of boxes, bottom layer first; one colour per layer digest."""
    fig, ax = plt.subplots(figsize=(3.0 * len(images) + 1, 0.9 * max(len(i.diff_ids) for i in images) + 1.2))
    for x, image in enumerate(images):
        for y, (digest, created_by) in enumerate(zip(image.diff_ids, image.history + [""] * 99)):
            size = layers.tree_bytes(store.layer_path(digest))
            ax.add_patch(plt.Rectangle((x * 3, y), 2.6, 0.9, facecolor=_colour(digest), edgecolor="#333333"))
            ax.text(x * 3 + 1.3, y + 0.45, f"{digest[:12]}  {_size(size)}\n{created_by[5:40]}",
                    ha="center", va="center", fontsize=8)
        ax.text(x * 3 + 1.3, -0.3, image.ref, ha="center", va="top", fontsize=10, family="monospace")
    ax.set_xlim(-0.2, 3 * len(images))
    ax.set_ylim(-0.8, max(len(i.diff_ids) for i in images) + 0.2)
    ax.axis("off")
    ax.set_title("Images as layer stacks (same colour and digest = the same bytes on disk)", fontsize=10)
    fig.tight_layout()
    return fig


def sharing(images: list[store.Image]) -> tuple[int, int]:
    """(bytes if every image kept its own copy of its layers, bytes the store really holds)."""
    alone = sum(layers.tree_bytes(p) for i in images for p in i.layers)
    unique = {d for i in images for d in i.diff_ids}
    return alone, sum(layers.tree_bytes(store.layer_path(d)) for d in unique)


def sharing_chart(images: list[store.Image]) -> Figure:
    alone, shared = sharing(images)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bars = ax.bar(["each image alone", "content-addressed store"], [alone / 2**20, shared / 2**20],
                  color=["#bbbbbb", "#4c8bd6"])
    ax.bar_label(bars, fmt="%.2f MiB")
    ax.set_ylim(0, alone / 2**20 * 1.15)
    ax.set_ylabel("MiB of layer content")
    ax.set_title(f"{len(images)} images: {(alone - shared) / 2**20:.2f} MiB saved by sharing layers", fontsize=10)
    fig.tight_layout()
    return fig


def history(image: store.Image) -> Table:
    """What ``docker image history`` shows: one row per layer, newest first."""
    rows = [(d[:12], _size(layers.tree_bytes(store.layer_path(d))), h)
            for d, h in zip(image.diff_ids, image.history + [""] * len(image.diff_ids))]
    return Table(["layer (sha256)", "size", "created by"], rows[::-1], f"history of {image.ref}")


def layer_changes(image: store.Image) -> Table:
    """Like ``git log --stat``: what each layer adds, changes and deletes over those below."""
    visible: set[str] = set()
    rows = []
    for digest, created_by in zip(image.diff_ids, image.history + [""] * len(image.diff_ids)):
        tree = store.layer_path(digest)
        added, changed, deleted = [], [], []
        for rel in layers.walk(tree):
            if layers.is_whiteout(os.lstat(tree / rel)):
                deleted.append(rel)
                visible.discard(rel)
            elif not (tree / rel).is_dir() or (tree / rel).is_symlink():
                (changed if rel in visible else added).append(rel)
                visible.add(rel)
        rows.append((digest[:12], created_by, len(added), ", ".join(changed[:4]) or "-",
                     ", ".join(deleted[:4]) or "-"))
    return Table(["layer", "created by", "files added", "files changed", "files deleted (whiteouts)"],
                 rows, f"{image.ref}: each layer as a change set over the ones below")


def upper_table(container_dir: Path) -> Table:
    """What a container changed: every entry of its upper directory."""
    upper = Path(container_dir) / "upper"
    rows = [("/" + rel, _kind(upper / rel)) for rel in layers.walk(upper)]
    return Table(["path", "in upper"], rows, f"{upper} - the container's own layer")


def archive_listing(path: Path) -> Table:
    with tarfile.open(path) as tar:
        rows = [(m.name, m.size) for m in tar.getmembers()]
    return Table(["entry", "bytes"], rows, f"{path.name}")


def store_blobs() -> Table:
    """The store's blobs, each checked: is its name really the sha256 of its bytes?"""
    rows = []
    for blob in sorted(store.blobs_dir().iterdir()):
        rows.append((blob.name[:16] + "...", blob.stat().st_size, store.sha256_file(blob) == blob.name))
    return Table(["blob (named by sha256)", "bytes", "name == sha256(content)"], rows, str(store.blobs_dir()))


def clean_up_notebook(prefix: str, scratch: Path, exercises: Path) -> None:
    """Unmount what the notebook and its exercises mounted, drop the notebook's images and scratch.

    The busybox base stays (other notebooks stand on it), and so does the
    learner's exercise work - only its mounts go.
    """
    for mount in ownership.lab_mounts():  # deepest first
        if mount.fstype == "overlay" and any(Path(mount.mountpoint).is_relative_to(r) for r in (scratch, exercises)):
            overlay.unmount(Path(mount.mountpoint).parent)
    for ref in list(store.refs()):
        if ref.startswith(prefix):
            store.remove(ref, overlay.lab_overlay_options())
    if ownership.is_lab_path(scratch):
        shutil.rmtree(scratch, ignore_errors=True)
