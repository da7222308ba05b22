"""Persistent on-disk caches: text vectors keyed by (encoder fingerprint, role, text), and file digests.

One SQLite database in WAL mode, so several processes can read and write it at once; vectors are raw float32
blobs. A repeated text is looked up, never encoded again, across runs and processes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgemb.files import file_sha256

log = logging.getLogger(__name__)

CACHE_FILE = "embeddings.sqlite3"
_CHUNK = 500  # keys per SELECT ... IN (...), under SQLite's parameter limit
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    fingerprint TEXT NOT NULL, role TEXT NOT NULL, digest BLOB NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (fingerprint, role, digest)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS file_digests (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
"""


def default_cache_dir() -> Path:
    """``$KGEMB_CACHE_DIR``, else ``$XDG_CACHE_HOME/kgemb``, else ``~/.cache/kgemb``."""
    if os.environ.get("KGEMB_CACHE_DIR"):
        return Path(os.environ["KGEMB_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kgemb"


def text_digest(text: str) -> bytes:
    """The 16-byte key of a text (BLAKE2b), so a 1 MB text does not become a 1 MB key."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbeddingCache:
    """Vectors on disk, keyed by (fingerprint, role, text digest); safe for concurrent processes."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path / CACHE_FILE, timeout=60.0, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        with self._db:
            self._db.executescript(_SCHEMA)

    def get(self, fingerprint: str, role: str, digests: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``digests`` (a miss is simply absent; a failing database reads as misses)."""
        found: dict[bytes, np.ndarray] = {}
        try:
            self._get(fingerprint, role, list(digests), dim, found)
        except sqlite3.Error as exc:
            log.warning("kgemb: reading the embedding cache %s failed (%s); encoding instead", self.path, exc)
        return found

    def _get(self, fingerprint: str, role: str, digests: list[bytes], dim: int, found: dict) -> None:
        with self._lock:
            for start in range(0, len(digests), _CHUNK):
                chunk = list(digests[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT digest, vector FROM vectors WHERE fingerprint = ? AND role = ? AND digest IN ({marks})",
                    [fingerprint, role, *chunk],
                )
                for digest, blob in rows:
                    if len(blob) == dim * 4:  # a row of another size is not ours: treat as a miss
                        found[digest] = np.frombuffer(blob, dtype=np.float32)

    def put(self, fingerprint: str, role: str, digests: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store vectors (one transaction); a key another process stored first is left as it is.

        A write that fails (disk full, database locked for a minute) is logged and skipped: the vectors are
        still returned to the caller, they are only not remembered.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [(fingerprint, role, d, v.tobytes()) for d, v in zip(digests, vectors, strict=True)]
        try:
            with self._lock, self._db:
                self._db.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            log.warning("kgemb: writing to the embedding cache %s failed (%s); continuing", self.path, exc)

    def file_sha256(self, path: Path) -> str:
        """SHA-256 of a file, remembered by (path, size, mtime) so a large weight file is hashed once."""
        stat = path.stat()
        key = str(path.resolve())
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, sha256 FROM file_digests WHERE path = ?", [key]
            ).fetchone()
        if row and row[0] == stat.st_size and row[1] == stat.st_mtime_ns:
            return row[2]
        digest = file_sha256(path)
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?)",
                [key, stat.st_size, stat.st_mtime_ns, digest],
            )
        return digest

    def count(self, fingerprint: str | None = None) -> int:
        """Number of cached vectors, for one fingerprint or all."""
        sql, args = "SELECT COUNT(*) FROM vectors", []
        if fingerprint is not None:
            sql, args = sql + " WHERE fingerprint = ?", [fingerprint]
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


def open_cache(cache: bool, cache_dir: str | os.PathLike[str] | None) -> EmbeddingCache | None:
    """The cache to use, or None when turned off; a cache that cannot be opened is skipped with a warning."""
    if not cache:
        return None
    try:
        return EmbeddingCache(cache_dir)
    except (OSError, sqlite3.Error) as exc:
        where = cache_dir or default_cache_dir()
        log.warning(
            "kgemb: the embedding cache at %s cannot be used (%s); encoding without it. "
            "Set KGEMB_CACHE_DIR to a writable folder, or pass cache=False.",
            where,
            exc,
        )
        return None
