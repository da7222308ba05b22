"""Writing and hashing files: the one atomic write and the one file hash every part of kgemb uses."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from kgemb.errors import InputError


def write_atomic(
    path: str | os.PathLike[str], data: bytes | Callable[[BinaryIO], Any], *, fsync: bool = False
) -> None:
    """Write ``data`` (bytes, or a function that writes to the open binary file) to a temporary name beside
    ``path``, then rename it over ``path``: readers never see half a file, and a failure leaves no temporary file.
    ``fsync`` also flushes the file to disk before the rename (for files a resumed run relies on)."""
    path = Path(path)
    mode = _output_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600; the result follows the umask like any tool's output
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _output_mode(path: Path) -> int:
    """Permissions for a new ``path``: those of the file it replaces, else 0666 less the umask."""
    with contextlib.suppress(OSError):
        st = path.stat()
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def check_output(path: str | os.PathLike[str], what: str = "OUTPUT", *, folder: bool = False) -> Path:
    """``path`` if kgemb may write it: absent, or a regular file (``folder``: a folder). A device, FIFO or socket
    would be replaced by a regular file, so it is refused with an :class:`InputError` naming ``what``."""
    path = Path(path)
    try:
        st = path.stat()
    except (
        FileNotFoundError,
        NotADirectoryError,
    ):  # absent (whether its folder can be made is checked later)
        return path
    except OSError as exc:
        raise InputError(
            f"{what} {path} cannot be used ({exc.strerror or exc}); choose another path"
        ) from None
    if folder and stat.S_ISDIR(st.st_mode):
        return path
    if not folder and stat.S_ISREG(st.st_mode):
        return path
    kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
    wanted = "a folder or a new name" if folder else "a regular file or a new name"
    raise InputError(f"{what} {path} is {kind}; kgemb writes only {wanted}: choose another path")


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], what: str = "output") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a job's output) for the block, through ``.NAME.lock`` beside it.

    A second holder is refused at once with an :class:`InputError` naming the first (process id, host, command);
    the operating system releases the lock when the holder dies, even by ``kill -9``, so a lock never goes stale."""
    path = Path(path)
    lock_path = path.parent / f".{path.name}.lock"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise InputError(
                f"{what} {path} is in use by another kgemb run ({holder}); wait for it to finish, "
                "or choose another output"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the file may have been removed by the previous holder between our open and our lock
            if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"process {holder['pid']} on {holder['host']}: {holder['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "process unknown"
