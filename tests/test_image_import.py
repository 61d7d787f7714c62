"""Importing image archives: round trips work, and every malicious archive is refused cleanly.

The malicious archives are built here, with correct digests, so that only the
check under test can stop them. After each refusal the store must be exactly
as before (no layer, no blob, no name, nothing in its tmp/) and nothing may
exist where the archive aimed outside it.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Callable

import pytest

from labsupport import images, ownership
from labsupport.images import layers, store
from labsupport.kernel.errors import LabError


@pytest.fixture()
def scratch():
    path = ownership.temp_dir("image-import")
    yield path
    shutil.rmtree(path)




def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
           link: str = "", devmajor: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, link, len(data), 0o644
    info.devmajor = devmajor
    tar.addfile(info, io.BytesIO(data) if data else None)


def layer_tar(build: Callable[[tarfile.TarFile], None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buffer.getvalue()


def _config(layer_tars: list[bytes]) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                       "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_sha(t)}" for t in layer_tars]}}).encode()


def docker_archive(path: Path, layer_tars: list[bytes], config: bytes | None = None) -> Path:
    """A `docker save` archive around these layer tars, with every digest right."""
    config = config or _config(layer_tars)
    with tarfile.open(path, "w") as tar:
        _entry(tar, f"{_sha(config)}.json", data=config)
        for t in layer_tars:
            _entry(tar, f"{_sha(t)}/layer.tar", data=t)
        manifest = [{"Config": f"{_sha(config)}.json", "RepoTags": ["labevil:1"],
                     "Layers": [f"{_sha(t)}/layer.tar" for t in layer_tars]}]
        _entry(tar, "manifest.json", data=json.dumps(manifest).encode())
    return path


def oci_archive(path: Path, layer_blobs: list[bytes], config: bytes, skip: int | None = None) -> Path:
    """An OCI layout with these (compressed) layer blobs; ``skip`` leaves one blob out."""
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": f"sha256:{_sha(config)}", "size": len(config)},
                           "layers": [{"digest": f"sha256:{_sha(b)}", "size": len(b),
                                       "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
                                      for b in layer_blobs]}).encode()
    index = {"schemaVersion": 2, "manifests": [{"digest": f"sha256:{_sha(manifest)}", "size": len(manifest)}]}
    with tarfile.open(path, "w") as tar:
        _entry(tar, "oci-layout", data=b'{"imageLayoutVersion":"1.0.0"}')
        _entry(tar, "index.json", data=json.dumps(index).encode())
        for number, blob in enumerate([config, manifest, *layer_blobs]):
            if number - 2 != skip:
                _entry(tar, f"blobs/sha256/{_sha(blob)}", data=blob)
    return path


def _store_state() -> set[str]:
    store.ensure()
    return {str(p.relative_to(store.ROOT)) for d in (store.blobs_dir(), store.layers_dir(), store.refs_dir(),
                                                     store.staging_dir()) for p in d.iterdir()}


def _refused(archive: Path, match: str) -> str:
    before = _store_state()
    with pytest.raises(LabError, match=match) as caught:
        images.import_archive(archive)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(".")
    assert _store_state() == before
    return message


def _escape_target() -> Path:
    """Where the escapes below aim: the store's own top directory, which outlives a failed import."""
    return store.ROOT / "labescaped"


# -- round trips ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_an_exported_image_imports_as_the_same_image_with_its_whiteouts(fmt: str, name: str, scratch: Path) -> None:
    images.build_busybox_base()
    original = images.build_image(name, [images.add_files({"/app/x": "1"}), images.remove_files(["/etc/hosts"])])
    archive = images.export_archive(name, scratch / "image.tar", format=fmt)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert ("index.json" in names) if fmt == "oci" else ("manifest.json" in names)
    assert any(n.endswith("/layer.tar") for n in names) == (fmt == "docker")
    images.remove(name)
    assert not original.layers[-1].exists()
    again = images.import_archive(archive)
    assert (again.name, again.id, again.diff_ids) == (name, original.id, original.diff_ids)
    assert layers.whiteouts(again.layers[-1]) == ["etc/hosts"]
    assert (again.layers[1] / "app/x").read_text() == "1"


def test_a_fifo_is_fine_and_an_opaque_directory_keeps_its_mark(name: str, scratch: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        _entry(tar, "run/pipe", tarfile.FIFOTYPE)
        _entry(tar, "etc/", tarfile.DIRTYPE)
        _entry(tar, "etc/.wh..wh..opq")
        _entry(tar, "etc/only", data=b"alone")
    image = images.import_archive(docker_archive(scratch / "a.tar", [layer_tar(build)]), name=name)
    top = image.layers[0]
    assert stat.S_ISFIFO(os.lstat(top / "run/pipe").st_mode)
    assert layers.is_opaque(top / "etc") and not (top / "etc/.wh..wh..opq").exists()


def test_a_gzipped_outer_archive_and_gzip_layers_import(name: str, scratch: Path) -> None:
    tar = layer_tar(lambda t: _entry(t, "hello", data=b"hi"))
    plain = oci_archive(scratch / "a.tar", [gzip.compress(tar)], _config([tar]))
    (scratch / "a.tar.gz").write_bytes(gzip.compress(plain.read_bytes()))
    image = images.import_archive(scratch / "a.tar.gz", name=name)
    assert (image.layers[0] / "hello").read_bytes() == b"hi"


# -- malicious layers ----------------------------------------------------------------

MALICIOUS = {
    "dot-dot": (lambda t: _entry(t, "../../../labescaped", data=b"x"), "climbs out"),  # staging/import-*/<layer>
    "absolute": (lambda t: _entry(t, str(store.ROOT / "labescaped"), data=b"x"), "absolute path"),
    "symlink-out": (lambda t: _entry(t, "up", tarfile.SYMTYPE, link="../../../../.."), "symlink pointing outside"),
    "through-relative-symlink": (lambda t: (_entry(t, "dir", tarfile.SYMTYPE, link="."),
                                            _entry(t, "dir/labescaped", data=b"x")), "through the symlink"),
    "through-absolute-symlink": (lambda t: (_entry(t, "store", tarfile.SYMTYPE, link=str(store.ROOT)),
                                            _entry(t, "store/labescaped", data=b"x")), "through the symlink"),
    "hardlink-out": (lambda t: _entry(t, "passwd", tarfile.LNKTYPE, link="../../../../../etc/passwd"), "climbs out"),
    "hardlink-absolute": (lambda t: _entry(t, "passwd", tarfile.LNKTYPE, link="/etc/passwd"), "absolute path"),
    "char-device": (lambda t: _entry(t, "dev/mem", tarfile.CHRTYPE, devmajor=1), "device node"),
    "block-device": (lambda t: _entry(t, "dev/vda", tarfile.BLKTYPE, devmajor=254), "device node"),
}


@pytest.mark.parametrize("python", ["with-data-filter", "like-python-3.10"])
@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_a_malicious_layer_is_refused_and_leaves_nothing(case: str, python: str, scratch: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if python == "like-python-3.10":  # Ubuntu 22.04's tarfile has no data filter: our checks alone
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    build, why = MALICIOUS[case]
    good = layer_tar(lambda t: _entry(t, "fine", data=b"ok"))
    archive = docker_archive(scratch / "evil.tar", [good, layer_tar(build)])
    _refused(archive, why)
    assert not _escape_target().exists()
    assert not (scratch / "labescaped").exists()


def test_a_hard_link_to_a_symlink_is_refused(scratch: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        _entry(tar, "shadow", tarfile.SYMTYPE, link="/etc/shadow")
        _entry(tar, "copy", tarfile.LNKTYPE, link="shadow")
    _refused(docker_archive(scratch / "evil.tar", [layer_tar(build)]), "not a regular file")


# -- broken or tampered archives -------------------------------------------------------------

def test_a_layer_that_does_not_match_its_diff_id_is_refused(scratch: Path) -> None:
    honest = layer_tar(lambda t: _entry(t, "app", data=b"honest"))
    swapped = layer_tar(lambda t: _entry(t, "app", data=b"evil!!"))
    archive = docker_archive(scratch / "tampered.tar", [honest])
    # Rewrite the archive with the swapped layer under the honest layer's name.
    with tarfile.open(archive) as src, tarfile.open(scratch / "evil.tar", "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            _entry(out, member.name, data=swapped if member.name.endswith("layer.tar") else data)
    _refused(scratch / "evil.tar", "does not match its digest")


def test_a_blob_that_does_not_match_its_name_is_refused(scratch: Path) -> None:
    tar = layer_tar(lambda t: _entry(t, "a", data=b"a"))
    config = _config([tar])
    archive = oci_archive(scratch / "a.tar", [gzip.compress(tar)], config)
    with tarfile.open(archive) as src, tarfile.open(scratch / "evil.tar", "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            _entry(out, member.name, data=data.replace(b'"/bin/sh"', b'"/bin/xx"') if data == config else data)
    _refused(scratch / "evil.tar", "does not match its digest")


def test_a_missing_blob_is_refused(scratch: Path) -> None:
    tar = layer_tar(lambda t: _entry(t, "a", data=b"a"))
    _refused(oci_archive(scratch / "a.tar", [gzip.compress(tar)], _config([tar]), skip=0), "blob is missing")


def test_a_truncated_archive_is_refused(scratch: Path) -> None:
    tar = layer_tar(lambda t: _entry(t, "big", data=os.urandom(200_000)))
    archive = docker_archive(scratch / "a.tar", [tar])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    _refused(archive, "truncated or corrupt|lacks")


def test_a_corrupt_gzip_layer_with_right_digests_is_refused(scratch: Path) -> None:
    tar = layer_tar(lambda t: _entry(t, "a", data=b"a" * 1000))
    blob = bytearray(gzip.compress(tar))
    blob[20:40] = b"\x00" * 20
    _refused(oci_archive(scratch / "a.tar", [bytes(blob)], _config([tar])), "truncated or corrupt")


def test_a_corrupt_layer_tar_with_right_digests_is_refused(scratch: Path) -> None:
    tar = layer_tar(lambda t: _entry(t, "a", data=b"a" * 2000))
    broken = tar[:700]  # a header, then half a file
    _refused(docker_archive(scratch / "a.tar", [broken]), "truncated or corrupt")


def test_a_file_that_is_no_image_archive_is_refused(scratch: Path) -> None:
    (scratch / "notes.txt").write_text("not a tar at all")
    _refused(scratch / "notes.txt", "truncated or corrupt")
    with tarfile.open(scratch / "empty.tar", "w") as tar:
        _entry(tar, "readme", data=b"hi")
    _refused(scratch / "empty.tar", "neither index.json")


# -- bombs: an archive is anyone's data, so its size is capped before it is trusted -------------

def _zero_layer(size: int) -> bytes:
    return layer_tar(lambda tar: _entry(tar, "zeros", data=bytes(size)))


def test_a_gzip_bomb_is_refused_before_it_fills_memory(monkeypatch: pytest.MonkeyPatch, name: str,
                                                       scratch: Path) -> None:
    tar = _zero_layer(64 << 20)               # 64 MiB of zeros ...
    blob = gzip.compress(tar, compresslevel=9)
    assert len(blob) < 1 << 20                # ... in well under a megabyte of gzip
    archive = oci_archive(scratch / "bomb.tar", [blob], _config([tar]))
    monkeypatch.setattr(layers, "MAX_LAYER_BYTES", 16 << 20)
    _refused(archive, "unpacks to more than 16 MiB")
    monkeypatch.setattr(layers, "MAX_LAYER_BYTES", 1 << 30)  # the limit off: it inflates in full
    assert images.import_archive(archive, name=f"{name}:bomb").diff_ids


def test_a_layer_of_too_many_entries_or_claimed_bytes_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                 name: str, scratch: Path) -> None:
    many = layer_tar(lambda tar: [_entry(tar, f"f{n}") for n in range(300)])
    archive = docker_archive(scratch / "many.tar", [many])
    monkeypatch.setattr(layers, "MAX_LAYER_ENTRIES", 100)
    _refused(archive, "more than 100 entries")
    big = layer_tar(lambda tar: [_entry(tar, f"big{n}", data=bytes(6 << 20)) for n in range(3)])
    archive = docker_archive(scratch / "big.tar", [big])
    monkeypatch.setattr(layers, "MAX_LAYER_BYTES", 16 << 20)  # 18 MiB of files, 16 allowed
    _refused(archive, "MiB")
    monkeypatch.setattr(layers, "MAX_LAYER_ENTRIES", 500_000)
    monkeypatch.setattr(layers, "MAX_LAYER_BYTES", 1 << 30)  # the limits off: both import
    assert images.import_archive(scratch / "many.tar", name=f"{name}:many").diff_ids
