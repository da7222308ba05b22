"""A ``sentence_transformers.SentenceTransformer`` the caller already built, used as a kgemb TextEncoder."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from kgemb.encoders.base import Progress, TextEncoder
from kgemb.errors import ConfigError

_DIMENSION_METHODS = ("get_embedding_dimension", "get_sentence_embedding_dimension")  # newer name first


def is_sentence_transformer(value: Any) -> bool:
    """Whether ``value`` looks like a SentenceTransformer (checked by its methods, so the package is optional)."""
    return callable(getattr(value, "encode", None)) and any(
        callable(getattr(value, name, None)) for name in _DIMENSION_METHODS
    )


class SentenceTransformerEncoder(TextEncoder):
    """Encodes with the given model's own ``encode``; the fingerprint hashes its name and weights, so a saved
    model and the cache know exactly which model made the vectors."""

    def __init__(self, model: Any, **options: Any) -> None:
        super().__init__(**options)
        dim = next(getattr(model, n) for n in _DIMENSION_METHODS if callable(getattr(model, n, None)))()
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(
                f"the SentenceTransformer reports no embedding dimension ({dim!r}); give another model"
            )
        self.model = model
        self.dim = dim
        self.name = _model_name(model)
        digest = hashlib.sha256()
        for key, tensor in sorted(model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.fingerprint = f"st:{self.name}|dim={dim}|weights={digest.hexdigest()[:16]}"

    def _encode_texts(
        self, texts: list[str], role: str, batch_size: int, progress: Progress
    ) -> tuple[np.ndarray, int]:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            out[start : start + len(batch)] = self.model.encode(
                batch, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
            progress(len(batch))
        return out, 0


def _model_name(model: Any) -> str:
    """The path or hub id the model was loaded from, as far as it tells."""
    try:
        return str(model[0].auto_model.config._name_or_path)
    except (AttributeError, IndexError, KeyError, TypeError):
        return type(model).__name__
