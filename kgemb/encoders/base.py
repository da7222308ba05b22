"""``TextEncoder``: the one ``encode`` call every backend shares (checks, de-duplication, cache, order, norm)."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kgemb.encoders.batching import resolve_threads
from kgemb.encoders.cache import EmbeddingCache, open_cache, text_digest
from kgemb.encoders.inputs import check_batch_size, check_role, clean_texts
from kgemb.errors import ConfigError

log = logging.getLogger("kgemb.encoders")

DEFAULT_MAX_CHARS = 50_000
_CHUNK = 4096  # texts per backend call: results are cached chunk by chunk, so an interruption keeps the rest

Progress = Callable[[int], None]


@dataclass
class EncodeReport:
    """What the last ``encode`` call did, so nothing is dropped silently (``encoder.last_report``)."""

    texts: int = 0  # texts given
    unique: int = 0  # distinct texts after cleaning (a repeated text is encoded once)
    cache_hits: int = 0  # distinct texts found in the on-disk cache
    encoded: int = 0  # distinct texts run through the model
    split: int = 0  # texts longer than one model pass, encoded as averaged windows (or first window only)
    truncated: int = 0  # texts cut to max_chars characters before encoding
    blank: int = 0  # empty or whitespace-only texts, encoded as ""
    surrogates: int = 0  # texts whose lone surrogates were replaced by U+FFFD

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return asdict(self)


class TextEncoder(ABC):
    """Turns texts into L2-normalised float32 vectors of size ``dim``; backends implement ``_encode_texts``.

    ``fingerprint`` names everything that changes the vectors (model, revision or file hash, pooling,
    dimension, dtype, prompts); the cache and saved models key on it.
    """

    dim: int
    fingerprint: str
    name: str = ""  # the spec given to load_encoder
    options: dict  # the options given to load_encoder
    roles_differ: bool = False  # False: queries and documents get the same vector (one cache entry)
    default_batch_size: int = 64

    def __init__(
        self,
        *,
        threads: int | None = None,
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        batch_size: int | None = None,
    ) -> None:
        self.threads = resolve_threads(threads)
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ConfigError(f"max_chars={max_chars!r} is not a positive whole number: pass e.g. 50000")
        self.max_chars = max_chars
        self.batch_size = check_batch_size(batch_size) or self.default_batch_size
        self.cache: EmbeddingCache | None = open_cache(cache, cache_dir)
        self.last_report = EncodeReport()
        self.options = {}

    def encode(
        self,
        texts: Sequence[str],
        role: str = "document",
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Encode ``texts`` into a ``(len(texts), dim)`` float32 array, L2-normalised, in input order.

        ``role`` is "document" (entity texts) or "query" (models with query instructions or prefixes, such as
        Qwen3-Embedding and e5, treat the two differently). ``batch_size`` caps the texts per model pass.

        Each text has a defined handling, and all are checked before any is encoded:
        - not a string (None, a number, bytes): InputError naming the positions, before any work is done;
        - a single str instead of a list: InputError (pass ``[text]``);
        - "" or whitespace only: encoded as "" (the model's vector for an empty input);
        - lone surrogates: replaced by U+FFFD;
        - longer than ``max_chars`` characters (default 50,000; a 1 MB text): cut to that length;
        - longer than one model pass: split into overlapping token windows whose vectors are averaged (or the
          first window only, by option);
        - repeated texts, within a call or across calls and processes: encoded once, then read from the cache.
        Counts of each land in ``self.last_report``. Results are cached in chunks of 4,096 texts as they are
        made, so an interrupted call (or a failing model pass) keeps the work already done.
        """
        role = check_role(role)
        batch_size = check_batch_size(batch_size) or self.batch_size
        cleaned = clean_texts(texts, self.max_chars)
        unique_index: dict[str, int] = {}
        inverse = np.fromiter(
            (unique_index.setdefault(t, len(unique_index)) for t in cleaned.texts),
            dtype=np.int64,
            count=len(cleaned.texts),
        )
        unique = list(unique_index)
        report = EncodeReport(
            texts=len(cleaned.texts),
            unique=len(unique),
            truncated=cleaned.truncated,
            blank=cleaned.blank,
            surrogates=cleaned.surrogates,
        )
        self.last_report = report
        vectors = np.empty((len(unique), self.dim), dtype=np.float32)
        todo = list(range(len(unique)))
        cache_role = role if self.roles_differ else "document"
        digests: list[bytes] = []
        if self.cache is not None and unique:
            digests = [text_digest(t) for t in unique]
            found = self.cache.get(self.fingerprint, cache_role, digests, self.dim)
            todo = []
            for i, digest in enumerate(digests):
                hit = found.get(digest)
                if hit is None:
                    todo.append(i)
                else:
                    vectors[i] = hit
            report.cache_hits = len(unique) - len(todo)
        if todo:
            self._encode_missing(unique, todo, digests, vectors, role, cache_role, batch_size, show_progress)
        if report.truncated or report.split:
            log.info(
                "kgemb: %d of %d texts were longer than one model pass and split into windows; "
                "%d were cut to %d characters",
                report.split,
                report.texts,
                report.truncated,
                self.max_chars,
            )
        return vectors[inverse]

    def _encode_missing(
        self,
        unique: list[str],
        todo: list[int],
        digests: list[bytes],
        vectors: np.ndarray,
        role: str,
        cache_role: str,
        batch_size: int,
        show_progress: bool,
    ) -> None:
        """Run the model over the texts not in the cache, chunk by chunk, storing each chunk as it is done."""
        from tqdm.auto import tqdm

        report = self.last_report
        with tqdm(total=len(todo), desc="encoding", unit="text", disable=not show_progress) as bar:
            for start in range(0, len(todo), _CHUNK):
                chunk = todo[start : start + _CHUNK]
                out, split = self._encode_texts([unique[i] for i in chunk], role, batch_size, bar.update)
                out = normalise(np.asarray(out, dtype=np.float32))
                vectors[chunk] = out
                report.encoded += len(chunk)
                report.split += split
                if self.cache is not None:
                    self.cache.put(self.fingerprint, cache_role, [digests[i] for i in chunk], out)

    @abstractmethod
    def _encode_texts(
        self, texts: list[str], role: str, batch_size: int, progress: Progress
    ) -> tuple[np.ndarray, int]:
        """Encode clean, distinct, non-cached texts; return (vectors, number of texts split into windows).

        Call ``progress(n)`` as texts are done. Vectors need not be normalised (the caller normalises).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, fingerprint={self.fingerprint!r})"


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (an all-zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
