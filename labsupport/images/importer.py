"""Images as archives: the OCI image layout and ``docker save``, both ways.

An archive is one tar holding JSON that names blobs by digest:

* OCI image layout: ``oci-layout``, ``index.json`` -> manifest blob ->
  config blob + layer blobs (gzip tars), all under ``blobs/sha256/<hex>``.
* ``docker save``: ``manifest.json`` lists the config file and the layer tars.

Importing trusts nothing in it: every blob is checked against its digest,
each layer against the config's ``diff_ids`` (the sha256 of the unpacked
tar), and each layer entry by :func:`layers.unpack`. All work happens in a
staging directory inside the store; only a complete, verified image is
renamed into place, so a refused archive leaves nothing behind.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import zlib
from pathlib import Path
from typing import Any

from labsupport.images import layers, store
from labsupport.kernel.errors import LabError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
NAME_ANNOTATION = "io.containerd.image.name"


class _Archive:
    """The regular files of the outer tar, by name; nothing of it is ever written to disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, mode="r:*")
            self.files = {os.path.normpath(m.name).lstrip("/"): m for m in self.tar.getmembers() if m.isreg()}
        except FileNotFoundError:
            raise LabError(f"There is no file {path}: give the path of an image archive.") from None
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise LabError(f"{path} is not a tar archive, or is truncated or corrupt ({layers.first_line(err)}): "
                           "make or copy the archive again.") from None

    def read(self, name: str) -> bytes:
        member = self.files.get(os.path.normpath(name).lstrip("/"))
        if member is None:
            raise LabError(f"The archive {self.path.name} lacks {name}: a blob is missing, so it was refused.")
        if member.size > layers.MAX_LAYER_BYTES:
            raise _too_big(name)
        try:
            return self.tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise LabError(f"{self.path} is truncated or corrupt ({layers.first_line(err)}): "
                           "make or copy the archive again.") from None

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError:
            raise LabError(f"{name} in {self.path.name} is not valid JSON: the archive was refused.") from None

    def blob(self, digest: str) -> bytes:
        """A blob of an OCI layout, verified against its digest."""
        hexd = store.strip_algorithm(digest)
        return verified(self.read(f"blobs/sha256/{hexd}"), hexd, f"blob {hexd[:12]}")

    def close(self) -> None:
        self.tar.close()


def verified(data: bytes, hexd: str, what: str) -> bytes:
    actual = store.sha256_hex(data)
    if actual != hexd:
        raise LabError(f"The {what} does not match its digest (sha256:{actual[:12]} instead of "
                       f"sha256:{hexd[:12]}): the archive was altered or damaged, so it was refused.")
    return data


def _too_big(what: str) -> LabError:
    return LabError(f"The {what} unpacks to more than {layers.MAX_LAYER_BYTES >> 20:,} MiB: the archive "
                    "was refused (a gzip bomb, or set LAB_IMAGE_MAX_BYTES to allow a bigger image).")


def _uncompressed(data: bytes, what: str) -> bytes:
    """A gzip layer inflated a megabyte at a time, stopped as soon as it outgrows the limit."""
    if data[:2] != b"\x1f\x8b":
        return data
    out: list[bytes] = []
    total = 0
    try:
        while data:  # one gzip member after another (concatenated gzip is still gzip)
            inflate = zlib.decompressobj(wbits=31)
            while data:
                chunk = inflate.decompress(data, 1 << 20)
                data = inflate.unconsumed_tail
                total += len(chunk)
                if total > layers.MAX_LAYER_BYTES:
                    raise _too_big(what)
                out.append(chunk)
                if inflate.eof:
                    break
            if not inflate.eof:
                raise EOFError("the gzip stream ends early")
            data = inflate.unused_data
    except (OSError, EOFError, zlib.error) as err:
        raise LabError(f"The {what} is truncated or corrupt gzip ({layers.first_line(err)}): "
                       "the archive was refused.") from None
    return b"".join(out)


def _first(items: Any, what: str) -> dict[str, Any]:
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise LabError(f"The archive's {what} lists no image: it was refused.")
    return items[0]


def _read_oci(archive: _Archive) -> tuple[bytes, list[bytes], str]:
    """(config, layer blobs, name) of the first image in an OCI layout."""
    descriptor = _first(archive.json("index.json").get("manifests"), "index.json")
    manifest = json.loads(archive.blob(descriptor["digest"]))
    if "manifests" in manifest:  # a nested index (several platforms): take its first image
        descriptor = {**_first(manifest["manifests"], "nested index"), "annotations": descriptor.get("annotations")}
        manifest = json.loads(archive.blob(descriptor["digest"]))
    annotations = descriptor.get("annotations") or {}
    name = annotations.get(NAME_ANNOTATION) or annotations.get(REF_ANNOTATION) or ""
    config = archive.blob(manifest["config"]["digest"])
    return config, [archive.blob(layer["digest"]) for layer in manifest["layers"]], name


def _read_docker(archive: _Archive) -> tuple[bytes, list[bytes], str]:
    """(config, layer tars, name) of the first image of a ``docker save`` archive."""
    entry = _first(archive.json("manifest.json"), "manifest.json")
    found = re.search(r"[0-9a-f]{64}", entry["Config"])
    if not found:
        raise LabError(f"The config {entry['Config']!r} is not named by its digest: it cannot be verified.")
    config = verified(archive.read(entry["Config"]), found.group(0), "image config")
    tags = entry.get("RepoTags") or [""]
    return config, [archive.read(name) for name in entry["Layers"]], tags[0]


def _lab_ref(archive_name: str, override: str | None, image_id: str) -> tuple[str, str]:
    if override:
        return store.parse_ref(override)
    if not archive_name:
        return "imported", image_id[:12]
    short = archive_name.rsplit("/", 1)[-1]  # docker.io/library/alpine:3 -> alpine:3
    try:
        return store.parse_ref(short)
    except LabError:
        raise LabError(f"The archive names its image {archive_name!r}, which the lab cannot use: "
                       "give one with --name.") from None


def import_archive(path: str | os.PathLike, name: str | None = None) -> store.Image:
    """Import an OCI layout or ``docker save`` archive; every digest and layer entry is checked."""
    if name:
        store.parse_ref(name)  # refuse a bad name before any work
    archive = _Archive(Path(path))
    try:
        if "index.json" in archive.files:
            config, blobs, archive_name = _read_oci(archive)
        elif "manifest.json" in archive.files:
            config, blobs, archive_name = _read_docker(archive)
        else:
            raise LabError(f"{path} has neither index.json (OCI) nor manifest.json (docker save): "
                           "it is not an image archive.")
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise LabError(f"The archive's manifest is malformed ({err!r}): it was refused.") from None
    finally:
        archive.close()
    image_config, diff_ids, history = store.parse_config(config)
    if len(diff_ids) != len(blobs):
        raise LabError(f"The image config lists {len(diff_ids)} layers but the manifest {len(blobs)}: refused.")
    with store.staging("import") as scratch:
        tars = []
        for number, (blob, diff_id) in enumerate(zip(blobs, diff_ids)):
            tar = verified(_uncompressed(blob, f"layer {number + 1}"), diff_id, f"layer {number + 1}")
            if not store.layer_path(diff_id).is_dir():
                tree = scratch / diff_id
                if not tree.is_dir():
                    tree.mkdir(mode=0o755)
                    layers.unpack(io.BytesIO(tar), tree)
            tars.append(tar)
        with store.locked():
            for diff_id, tar in zip(diff_ids, tars):
                if not store.layer_path(diff_id).is_dir():
                    (scratch / diff_id).rename(store.layer_path(diff_id))
                store.put_blob(tar)
            image_id = store.put_blob(config)
            ref_name, tag = _lab_ref(archive_name, name, image_id)
            store.set_ref(ref_name, tag, image_id)
    return store.Image(ref_name, tag, image_id, diff_ids, image_config, history)


# -- export ------------------------------------------------------------------

def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _write_oci(tar: tarfile.TarFile, image: store.Image, config: bytes) -> None:
    _add(tar, "oci-layout", _dumps({"imageLayoutVersion": "1.0.0"}))
    _add(tar, f"blobs/sha256/{image.id}", config)
    layer_descriptors = []
    for diff_id in image.diff_ids:
        blob = gzip.compress(store.blob_path(diff_id).read_bytes(), mtime=0)
        hexd = store.sha256_hex(blob)
        _add(tar, f"blobs/sha256/{hexd}", blob)
        layer_descriptors.append({"mediaType": OCI_LAYER_GZIP, "digest": f"sha256:{hexd}", "size": len(blob)})
    manifest = _dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layer_descriptors,
                       "config": {"mediaType": OCI_CONFIG, "digest": f"sha256:{image.id}", "size": len(config)}})
    manifest_hex = store.sha256_hex(manifest)
    _add(tar, f"blobs/sha256/{manifest_hex}", manifest)
    _add(tar, "index.json", _dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": f"sha256:{manifest_hex}", "size": len(manifest),
                       "annotations": {REF_ANNOTATION: image.tag, NAME_ANNOTATION: image.ref}}]}))


def _write_docker(tar: tarfile.TarFile, image: store.Image, config: bytes) -> None:
    _add(tar, f"{image.id}.json", config)
    for diff_id in image.diff_ids:
        _add(tar, f"{diff_id}/layer.tar", store.blob_path(diff_id).read_bytes())
    _add(tar, "manifest.json", _dumps([{"Config": f"{image.id}.json", "RepoTags": [image.ref],
                                        "Layers": [f"{d}/layer.tar" for d in image.diff_ids]}]))
    _add(tar, "repositories", _dumps({image.name: {image.tag: image.diff_ids[-1]}}))


def export_archive(ref: str, path: str | os.PathLike, format: str = "oci") -> Path:
    """Write an image as an OCI layout (``format="oci"``) or ``docker save`` archive."""
    writers = {"oci": _write_oci, "docker": _write_docker}
    if format not in writers:
        raise LabError(f"Unknown archive format {format!r}: use 'oci' or 'docker'.")
    image = store.get(ref)
    config = store.blob_path(image.id).read_bytes()
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        writers[format](tar, image, config)
    partial.rename(path)
    return path
