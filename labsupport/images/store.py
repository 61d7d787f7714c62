"""The image store: blobs named by their sha256, layer trees, images and their names.

Content addressing is what lets two images share a layer: a layer is named by
the sha256 of its tar, so the same bytes are stored once however many images
stack on them. Everything lives under /var/lib/labsupport/images (lab-owned):

    blobs/sha256/<hex>    layer tars (uncompressed) and image configs, by digest
    layers/<hex>/         each layer unpacked, in overlayfs' own format
    refs/<name>:<tag>     a name pointing at an image id
    tmp/                  work in progress; renamed into place only when complete
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from labsupport import ownership
from labsupport.kernel.errors import LabError

ROOT = ownership.WORK_DIR / "images"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


def blobs_dir() -> Path:
    return ROOT / "blobs" / "sha256"


def layers_dir() -> Path:
    return ROOT / "layers"


def refs_dir() -> Path:
    return ROOT / "refs"


#: Half-finished image imports and builds (the store renames only complete ones out of it).
STAGING_DIR = ownership.WORK_DIR / "images" / "tmp"
ownership.add_scratch(STAGING_DIR)


def staging_dir() -> Path:
    return STAGING_DIR  # clean() empties it


def ensure() -> Path:
    """The store's directories, readable by root alone: a layer holds an image's files as they
    are, setuid programs and secrets included (Docker's /var/lib/docker is closed the same way)."""
    for d in (blobs_dir(), layers_dir(), refs_dir(), staging_dir()):
        d.mkdir(parents=True, exist_ok=True)
    ROOT.chmod(0o700)
    return ROOT


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_hex_id(text: str) -> bool:
    return bool(_HEX.match(text))


def strip_algorithm(digest: str) -> str:
    """``sha256:ab..`` -> ``ab..``; anything else is refused (the lab verifies only sha256)."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not _HEX.match(hexpart):
        raise LabError(f"The digest {digest!r} is not a sha256 digest: the archive is not one the lab can verify.")
    return hexpart


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the store's lock: a removal must not collect a layer an import is just adding."""
    ensure()
    with open(ROOT / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging(purpose: str) -> Iterator[Path]:
    """A scratch directory inside the store, removed whatever happens.

    Inside the store, so that finished pieces reach their place by rename()
    (same filesystem): a half-done import never shows up as a layer.
    """
    ensure()
    path = Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=staging_dir()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def put_blob(data: bytes) -> str:
    """Store bytes under their digest (once) and return the hex digest."""
    hexd = sha256_hex(data)
    target = blobs_dir() / hexd
    if not target.exists():
        ensure()
        tmp = target.with_name(f".{hexd}.{os.getpid()}")
        tmp.write_bytes(data)
        tmp.rename(target)
    return hexd


def blob_path(hexd: str) -> Path:
    path = blobs_dir() / hexd
    if not path.is_file():
        raise LabError(f"The blob sha256:{hexd[:12]} is missing from the store: re-import or rebuild the image.")
    return path


def layer_path(hexd: str) -> Path:
    return layers_dir() / hexd


def parse_ref(ref: str) -> tuple[str, str]:
    """``name`` or ``name:tag`` -> (name, tag), tag defaulting to ``latest``."""
    name, _, tag = ref.partition(":")
    tag = tag or "latest"
    if not _NAME.match(name) or not _TAG.match(tag):
        raise LabError(f"{ref!r} is not an image name the lab accepts: use lower-case letters, digits, "
                       "'.', '_' or '-', optionally with ':tag'.")
    return name, tag


def set_ref(name: str, tag: str, image_id: str) -> None:
    ensure()
    target = refs_dir() / f"{name}:{tag}"
    tmp = target.with_name(f".{name}:{tag}.{os.getpid()}")
    tmp.write_text(image_id)
    tmp.rename(target)


def refs() -> dict[str, str]:
    """Every ``name:tag`` and the image id it points at."""
    if not refs_dir().is_dir():
        return {}
    return {p.name: p.read_text().strip() for p in sorted(refs_dir().iterdir()) if not p.name.startswith(".")}


def drop_ref(name: str, tag: str) -> None:
    (refs_dir() / f"{name}:{tag}").unlink(missing_ok=True)


# -- images ------------------------------------------------------------------
# An image is its config (OCI image-spec JSON) - its id is that blob's sha256 -
# plus the layers the config lists by digest. A name is only a pointer to an id.

@dataclass(frozen=True)
class ImageConfig:
    """What one image can set for the process that runs from it - and nothing more."""

    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    exposed_ports: list[int] = field(default_factory=list)

    def to_oci(self) -> dict[str, Any]:
        return {"Cmd": list(self.cmd), "Env": [f"{k}={v}" for k, v in self.env.items()],
                "WorkingDir": self.workdir,
                "ExposedPorts": {f"{p}/tcp": {} for p in self.exposed_ports}}

    @classmethod
    def from_oci(cls, raw: dict[str, Any] | None) -> "ImageConfig":
        raw = raw or {}
        env = dict(item.partition("=")[::2] for item in raw.get("Env") or [])
        ports = sorted(int(p.split("/")[0]) for p in (raw.get("ExposedPorts") or {}))
        return cls(list(raw.get("Cmd") or []) or list(raw.get("Entrypoint") or []), env,
                   raw.get("WorkingDir") or "/", ports)


@dataclass(frozen=True)
class Image:
    """An image in the store: ``layers`` are its layer directories, bottom first."""

    name: str
    tag: str
    id: str
    diff_ids: list[str]
    config: ImageConfig
    history: list[str]

    @property
    def layers(self) -> list[Path]:
        return [layer_path(d) for d in self.diff_ids]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    def __str__(self) -> str:
        return f"{self.ref} ({self.id[:12]}, {len(self.diff_ids)} layers)"


def config_json(config: ImageConfig, diff_ids: list[str], history: list[str]) -> bytes:
    """The OCI image config for these layers, as canonical bytes (so equal images get equal ids)."""
    doc = {"architecture": "amd64", "os": "linux", "config": config.to_oci(),
           "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
           "history": [{"created_by": h} for h in history]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def parse_config(raw: bytes) -> tuple[ImageConfig, list[str], list[str]]:
    """(config, diff_ids, history) out of an OCI config blob; refuses one that is not."""
    try:
        doc = json.loads(raw)
        diff_ids = [strip_algorithm(d) for d in doc["rootfs"]["diff_ids"]]
        history = [h.get("created_by", "") for h in doc.get("history") or [] if not h.get("empty_layer")]
        return ImageConfig.from_oci(doc.get("config")), diff_ids, history
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise LabError(f"The image config is not valid OCI image JSON ({err}): the archive was refused.") from None


def load(image_id: str, name: str = "", tag: str = "") -> Image:
    config, diff_ids, history = parse_config(blob_path(image_id).read_bytes())
    return Image(name, tag, image_id, diff_ids, config, history)


def _find_id(ref: str) -> tuple[str, str, str]:
    """(image id, name, tag) for a name, name:tag, full id, sha256:id or an id prefix of 12+."""
    known = refs()
    wanted = ref.removeprefix("sha256:")
    if re.fullmatch(r"[0-9a-f]{12,64}", wanted):
        for full_ref, image_id in known.items():
            if image_id.startswith(wanted):
                name, _, tag = full_ref.partition(":")
                return image_id, name, tag
    if ":" in ref or re.fullmatch(r"[a-z0-9][a-z0-9._-]*", ref):
        name, tag = parse_ref(ref)
        if f"{name}:{tag}" in known:
            return known[f"{name}:{tag}"], name, tag
    raise LabError(f"No image named {ref}: `python -m labsupport image ls` lists them.")


def get(ref: str) -> Image:
    image_id, name, tag = _find_id(ref)
    return load(image_id, name, tag)


def list_images() -> list[Image]:
    return [load(image_id, *full_ref.split(":", 1)) for full_ref, image_id in refs().items()]


def _used_layers(mount_options: list[str]) -> set[str]:
    used = set()
    for options in mount_options:
        used.update(re.findall(r"/layers/([0-9a-f]{64})", options))
    return used


def remove(ref: str, mount_options: list[str]) -> list[str]:
    """Drop a name (or every name of an id) and collect what no image uses any more.

    ``mount_options`` are the option strings of the lab's overlay mounts: a
    layer that a running container stacks on is kept, and its image refused.
    Returns the removed names.
    """
    image_id, name, tag = _find_id(ref)
    with locked():
        by_id = image_id.startswith(ref.removeprefix("sha256:"))
        names = [r for r, i in refs().items() if i == image_id] if by_id else [f"{name}:{tag}"]
        remaining = {i for r, i in refs().items() if r not in names}
        if image_id not in remaining:
            busy = _used_layers(mount_options) & set(load(image_id).diff_ids)
            in_use = busy - {d for i in remaining for d in load(i).diff_ids}
            if in_use:
                raise LabError(f"{ref} is used by a mounted container root: stop the container first.")
        for full_ref in names:
            drop_ref(*full_ref.split(":", 1))
        collect_garbage()
    return names


def collect_garbage() -> None:
    """Delete blobs and layers that no named image uses (call with the lock held)."""
    keep: set[str] = set()
    for image_id in set(refs().values()):
        keep.add(image_id)
        keep.update(load(image_id).diff_ids)
    for directory in (layers_dir(), blobs_dir()):
        for entry in directory.iterdir() if directory.is_dir() else []:
            if is_hex_id(entry.name) and entry.name not in keep:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
