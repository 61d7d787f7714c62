"""SysV and POSIX IPC through libc: the calls notebook 03 makes, and nothing about namespaces.

Python has none of shmget, shmat, msgget, msgsnd or mq_open, so they are thin
ctypes calls on the gateway's one libc handle; each failure is a
``KernelError`` sentence. Which IPC namespace they act in is decided by the
caller (labsupport.namespaces.ipc runs them in a child that joined one).
"""
from __future__ import annotations

import ctypes
import errno
import os

from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError

_libc, _librt = syscalls.LIBC, syscalls.LIBRT

_libc.shmat.restype = ctypes.c_void_p
_libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.shmdt.argtypes = [ctypes.c_void_p]
_librt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]

# <sys/ipc.h>, <fcntl.h>
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_NOWAIT = 0o4000
IPC_RMID = 0
_MODE = 0o600
_SHM_SIZE = 4096
_MSG_TYPE = 1


class _Message(ctypes.Structure):
    """struct msgbuf: a type, then the text (our messages fit in 256 bytes)."""

    _fields_ = [("mtype", ctypes.c_long), ("mtext", ctypes.c_char * 256)]


_WHY = {errno.EEXIST: "it already exists in this IPC namespace: pick another key or name",
        errno.ENOENT: "there is no such object in this IPC namespace",
        errno.EINVAL: "the key, name or size is not valid (a POSIX name is /name, with no other slash)"}


def _fail(call: str, subject: str) -> LabError:
    err = ctypes.get_errno()
    return syscalls.fail(call, err, subject, _WHY.get(err))


def _key_text(key: int) -> str:
    return f"{key:#010x}"


def make_shm(key: int, text: str) -> int:
    ident = _libc.shmget(ctypes.c_int(key), ctypes.c_size_t(_SHM_SIZE), IPC_CREAT | IPC_EXCL | _MODE)
    if ident == -1:
        raise _fail("shmget", f"key {_key_text(key)}")
    if text:
        address = _libc.shmat(ident, None, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise _fail("shmat", f"key {_key_text(key)}")
        data = text.encode()[:_SHM_SIZE - 1]
        ctypes.memmove(address, data + b"\0", len(data) + 1)
        _libc.shmdt(ctypes.c_void_p(address))
    return ident


def read_shm(key: int) -> str:
    ident = _libc.shmget(ctypes.c_int(key), ctypes.c_size_t(0), 0)
    if ident == -1:
        raise _fail("shmget", f"key {_key_text(key)}")
    address = _libc.shmat(ident, None, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        raise _fail("shmat", f"key {_key_text(key)}")
    try:
        return ctypes.string_at(address).decode(errors="replace")
    finally:
        _libc.shmdt(ctypes.c_void_p(address))


def make_msg(key: int, text: str) -> int:
    ident = _libc.msgget(ctypes.c_int(key), IPC_CREAT | IPC_EXCL | _MODE)
    if ident == -1:
        raise _fail("msgget", f"key {_key_text(key)}")
    if text:
        data = text.encode()[:255]
        message = _Message(_MSG_TYPE, data)
        if _libc.msgsnd(ident, ctypes.byref(message), ctypes.c_size_t(len(data)), IPC_NOWAIT) == -1:
            raise _fail("msgsnd", f"key {_key_text(key)}")
    return ident


def make_mqueue(name: str, text: str) -> None:
    fd = _librt.mq_open(name.encode(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, _MODE, None)
    if fd == -1:
        raise _fail("mq_open", name)
    try:
        if text and _librt.mq_send(fd, text.encode(), ctypes.c_size_t(len(text.encode())), 0) == -1:
            raise _fail("mq_send", name)
    finally:
        _librt.mq_close(fd)


def remove(kind: str, name: str, ident: int) -> None:
    if kind == "mqueue":
        if _librt.mq_unlink(name.encode()) == -1:
            raise _fail("mq_unlink", name)
        return
    control = {"shm": _libc.shmctl, "msg": _libc.msgctl, "sem": _libc.semctl}[kind]
    args = (ident, IPC_RMID, None) if kind != "sem" else (ident, 0, IPC_RMID)
    if control(*args) == -1:
        raise _fail(f"{kind}ctl(IPC_RMID)", f"id {ident}")
