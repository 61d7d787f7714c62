"""A layer: a directory tree, and the tar that carries it between machines.

On disk a layer is kept in overlayfs' own format, so it can be a ``lowerdir``
as it is: a deleted file is a *whiteout* - a character device 0/0 - and a
directory that hides everything below it carries the xattr
``trusted.overlay.opaque=y``. In a tar (OCI image-spec, ``docker save``) the
same facts travel as empty files named ``.wh.<name>`` and ``.wh..wh..opq``,
because a tar that needs mknod to unpack would need root and a trusting
reader. This module converts between the two, and unpacks a tar from anyone
without letting it write outside its directory.
"""
from __future__ import annotations

import gzip
import io
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

from labsupport.kernel.errors import LabError

#: The most one layer may unpack to, and the most entries it may hold. An archive is anyone's
#: data: 4 MiB of gzip inflates to 4 GiB of zeros, and a tar header may claim a 64 GiB sparse
#: file. LAB_IMAGE_MAX_BYTES raises the size for a learner who imports a big image on purpose.
MAX_LAYER_BYTES = int(os.environ.get("LAB_IMAGE_MAX_BYTES", 2 << 30))
MAX_LAYER_ENTRIES = 500_000

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs marks a deleted file with a character device numbered 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def walk(tree: Path) -> list[str]:
    """Every path below ``tree``, relative and sorted (parents before children)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        rel = os.path.relpath(dirpath, tree)
        for name in sorted(dirnames + filenames):
            found.append(name if rel == "." else f"{rel}/{name}")
    return sorted(found)


def whiteouts(tree: Path) -> list[str]:
    """The paths this layer deletes from the layers below it."""
    return [rel for rel in walk(tree) if is_whiteout(os.lstat(tree / rel))]


def tree_bytes(tree: Path) -> int:
    """Bytes of file content in a tree (apparent sizes; hard links counted once)."""
    seen, total = set(), 0
    for rel in walk(tree):
        st = os.lstat(tree / rel)
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def copy_tree(source: Path, dest: Path) -> None:
    """Copy an overlay upper directory into ``dest`` (empty) as a layer: whiteouts and opaque marks kept.

    Not shutil.copytree: it would try to read a whiteout device, and copy2
    would carry overlayfs' private xattrs (trusted.overlay.origin) along.
    """
    for rel in walk(source):
        src, dst = source / rel, dest / rel
        st = os.lstat(src)
        if is_whiteout(st):
            os.mknod(dst, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISDIR(st.st_mode):
            dst.mkdir()
            if is_opaque(src):
                os.setxattr(dst, OPAQUE_XATTR, b"y")
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(src, dst)
        else:
            continue  # a socket or fifo a container made: not image content
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, stat.S_IMODE(st.st_mode))


def _marker(name: str, like: tarfile.TarInfo) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = like.mtime, 0o644
    return info


def write_tar(tree: Path, out: BinaryIO) -> None:
    """Pack a layer tree as an OCI layer tar, whiteouts as ``.wh.`` files.

    Owner names and times are left out and entries sorted, so the same tree
    gives the same bytes - and so the same digest - wherever and whenever it
    is packed (as reproducible builds do with SOURCE_DATE_EPOCH).
    """
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in walk(tree):
            path = tree / rel
            info = tar.gettarinfo(str(path), arcname=rel)
            info.uname = info.gname = ""
            info.mtime = 0  # named by content, not by build time: the same step gives the same layer
            if is_whiteout(os.lstat(path)):
                parent, name = posixpath.split(rel)
                tar.addfile(_marker(posixpath.join(parent, WHITEOUT + name), info))
                continue
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if info.isdir() and is_opaque(path):
                tar.addfile(_marker(f"{rel}/{OPAQUE}", info))


def tar_bytes(tree: Path) -> bytes:
    buffer = io.BytesIO()
    write_tar(tree, buffer)
    return buffer.getvalue()


# -- unpacking a tar from anyone ---------------------------------------------

def first_line(err: BaseException) -> str:
    """tarfile explains a failed open with one line per method tried: keep the first."""
    return str(err).strip().splitlines()[0].rstrip(":") if str(err).strip() else type(err).__name__


def _refuse(name: str, why: str) -> LabError:
    return LabError(f"The layer entry {name!r} {why}: the archive was refused and nothing was kept.")


def _clean_name(name: str) -> str:
    """The entry's path relative to the layer, or a refusal if it would leave it."""
    if name.startswith("/"):
        raise _refuse(name, "is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(name, "climbs out of its directory with '..'")
    return "/".join(parts)


def _parent(dest: Path, rel: str, name: str, create: bool = True) -> Path:
    """The entry's parent directory, made on the way - never through a symlink.

    This is the check that stops "a symlink in one entry, then a file written
    through it in a later one": every step is lstat()ed, and a link is refused
    rather than followed.
    """
    current = dest
    for part in rel.split("/")[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if not create:
                raise _refuse(name, "names a path that does not exist in the layer") from None
            current.mkdir(mode=0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(name, f"would be written through the symlink {current.relative_to(dest)}")
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(name, f"lies below {current.relative_to(dest)}, which is not a directory")
    return current


def _clear(path: Path) -> None:
    """Make room for an entry that replaces an earlier one of the same name."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _second_opinion(member: tarfile.TarInfo, rel: str, dest: Path) -> None:
    """Ask tarfile's own "data" filter too, where this Python has it (3.12, 3.11.4+).

    It refuses absolute symlinks outright; an image's ``/bin/sh -> /bin/busybox``
    is normal (it is read inside the container's root), so such a link is
    shown to the filter as the relative link it means.
    """
    check = getattr(tarfile, "data_filter", None)
    if check is None or not (member.isreg() or member.isdir() or member.islnk() or member.issym()):
        return
    shown = member
    if member.issym() and member.linkname.startswith("/"):
        shown = member.replace(linkname=posixpath.relpath(member.linkname, "/" + posixpath.dirname(rel)),
                               deep=False)
    try:
        check(shown, str(dest))
    except tarfile.FilterError as err:
        raise _refuse(member.name, f"was refused by tarfile's data filter ({err})") from None


def _symlink_stays_inside(member: tarfile.TarInfo, rel: str) -> None:
    target = member.linkname
    if target.startswith("/"):
        return  # read relative to the container's root, and never followed while unpacking
    if posixpath.normpath(posixpath.join(posixpath.dirname(rel), target)).split("/")[0] == "..":
        raise _refuse(member.name, f"is a symlink pointing outside the layer ({target})")


def _hardlink_source(member: tarfile.TarInfo, dest: Path) -> Path:
    source_rel = _clean_name(member.linkname)
    if not source_rel:
        raise _refuse(member.name, "is a hard link to the layer's root")
    source = _parent(dest, source_rel, member.name, create=False) / posixpath.basename(source_rel)
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise _refuse(member.name, f"is a hard link to {source_rel}, which is not in the layer") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(member.name, f"is a hard link to {source_rel}, which is not a regular file")
    return source


def _whiteout(dest: Path, rel: str, name: str) -> None:
    parent = _parent(dest, rel, name)
    base = posixpath.basename(rel)
    if base == OPAQUE:
        os.setxattr(parent, OPAQUE_XATTR, b"y", follow_symlinks=False)
        return
    hidden = base[len(WHITEOUT):]
    if hidden in ("", ".", ".."):
        raise _refuse(name, "is a whiteout without a name")
    _clear(parent / hidden)
    os.mknod(parent / hidden, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, rel: str) -> None:
    if member.ischr() or member.isblk():
        raise _refuse(member.name, "is a device node (only the kernel's whiteouts may be devices)")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk() or member.isfifo()):
        raise _refuse(member.name, "has a type the lab does not unpack")
    if member.issym():
        _symlink_stays_inside(member, rel)
    source = _hardlink_source(member, dest) if member.islnk() else None
    path = _parent(dest, rel, member.name) / posixpath.basename(rel)
    _second_opinion(member, rel, dest)
    if member.isdir() and path.is_dir() and not path.is_symlink():
        pass  # a directory named again: keep it, take the new mode below
    else:
        _clear(path)
        if member.isdir():
            path.mkdir(mode=0o700)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            os.link(source, path, follow_symlinks=False)
            return
        elif member.isfifo():
            os.mkfifo(path)
        else:
            _copy_content(tar, member, path)
    os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def _copy_content(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    source = tar.extractfile(member)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out)


def unpack(fileobj: BinaryIO, dest: Path) -> None:
    """Unpack a layer tar (plain or gzip) into the empty directory ``dest``, checking every entry.

    Whiteout files become overlayfs whiteouts. Any entry that would land
    outside ``dest``, or a device node, refuses the whole layer.
    """
    entries = size = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
            for member in tar:
                entries += 1
                size += member.size
                if entries > MAX_LAYER_ENTRIES or size > MAX_LAYER_BYTES:
                    raise LabError(f"A layer holds more than {MAX_LAYER_ENTRIES:,} entries or "
                                   f"{MAX_LAYER_BYTES >> 20:,} MiB of files: the archive was refused "
                                   "(set LAB_IMAGE_MAX_BYTES to allow a bigger image).")
                rel = _clean_name(member.name)
                if not rel:
                    continue  # the layer's own root, "./"
                if posixpath.basename(rel).startswith(WHITEOUT):
                    _whiteout(dest, rel, member.name)
                else:
                    _write_member(tar, member, dest, rel)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise LabError(f"A layer is truncated or corrupt ({first_line(err)}): the archive was refused; "
                       "make or download it again.") from None
