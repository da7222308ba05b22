"""Writing and hashing files: the one atomic write and the one file hash every part of kgemb uses."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(
    path: str | os.PathLike[str], data: bytes | Callable[[BinaryIO], Any], *, fsync: bool = False
) -> None:
    """Write ``data`` (bytes, or a function that writes to the open binary file) to a temporary name beside
    ``path``, then rename it over ``path``: readers never see half a file, and a failure leaves no temporary file.
    ``fsync`` also flushes the file to disk before the rename (for files a resumed run relies on)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
