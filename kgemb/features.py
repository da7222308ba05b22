"""Frozen text features of a graph's entities: every view of every entity, encoded once before training.

An entity has one or more *views* (its combined text, each label in each language, each description). They are
encoded once with the :class:`~kgemb.encoders.TextEncoder` (which caches on disk), standardised, and stored flat
with CSR offsets so the model can pool them (mean or learned attention) without re-encoding in a forward pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kgemb.errors import InputError

if TYPE_CHECKING:
    from kgemb.encoders import TextEncoder
    from kgemb.graph import KnowledgeGraph


@dataclass
class TextFeatures:
    """Standardised text vectors of all entity views; entity ``i`` owns ``vectors[offsets[i]:offsets[i + 1]]``."""

    vectors: torch.Tensor  # (num_views, dim) float32, standardised
    offsets: torch.Tensor  # (num_entities + 1,) int64
    center: torch.Tensor  # (dim,) subtracted from raw encoder output
    scale: float  # raw (centred) vectors are divided by this
    adapter: Any = None  # kgemb.encoders.align.Adapter applied to raw encoder output first (saved beside)

    @property
    def num_entities(self) -> int:
        return int(self.offsets.numel() - 1)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def owners(self) -> torch.Tensor:
        """The entity id of each view, shape ``(num_views,)``."""
        counts = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(torch.arange(self.num_entities), counts)

    def mean_pooled(self) -> torch.Tensor:
        """The plain average of each entity's views, shape ``(num_entities, dim)``."""
        owners = self.owners()
        total = torch.zeros(self.num_entities, self.dim).index_add_(0, owners, self.vectors)
        counts = (self.offsets[1:] - self.offsets[:-1]).clamp_min(1).to(total.dtype)
        return total / counts.unsqueeze(1)

    def standardise(self, raw: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Apply this graph's adapter (if any), centring and scaling to new raw encoder vectors (queries,
        inductive entities): the one way a raw vector enters this feature space."""
        raw = np.asarray(raw, dtype=np.float32)
        if self.adapter is not None:
            raw = self.adapter.apply(raw)
        return (torch.as_tensor(raw) - self.center) / self.scale

    def adapted_raw(self) -> torch.Tensor:
        """The view vectors before centring and scaling (after the adapter, if any), shape ``(num_views, dim)``."""
        return self.vectors * self.scale + self.center

    def with_adapter(self, adapter: Any) -> TextFeatures:
        """The same views through ``adapter`` instead (no re-encoding; only for features made without one)."""
        if self.adapter is not None:
            raise InputError(
                "these text features already went through an adapter; recompute them from the graph"
            )
        out = standardised(torch.as_tensor(adapter.apply(self.adapted_raw())), self.offsets)
        out.adapter = adapter
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors to store in safetensors (see :meth:`from_tensors`)."""
        return {
            "vectors": self.vectors.contiguous(),
            "offsets": self.offsets.contiguous(),
            "center": self.center.contiguous(),
            "scale": torch.tensor([self.scale], dtype=torch.float32),
        }

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], source: str | Path = "text features"
    ) -> TextFeatures:
        """Rebuild from :meth:`tensors`, checking that the shapes agree."""
        try:
            vectors, offsets, center, scale = (tensors[k] for k in ("vectors", "offsets", "center", "scale"))
        except KeyError as exc:
            raise InputError(f"{source} lacks the tensor {exc}; save the model again") from None
        if (
            vectors.ndim != 2
            or offsets.ndim != 1
            or int(offsets[-1]) != vectors.shape[0]
            or center.shape != (vectors.shape[1],)
        ):
            raise InputError(f"{source} has inconsistent shapes; save the model again")
        return cls(vectors.float(), offsets.long(), center.float(), float(scale.reshape(-1)[0]))


def entity_view_texts(kg: KnowledgeGraph, languages: Sequence[str] | None = None) -> list[list[str]]:
    """The distinct texts of each entity: its combined text first, then each label and description."""
    out = []
    for i in range(kg.num_entities):
        texts = [kg.entity_text(i, languages=languages), *kg.entity_views(i, languages=languages)]
        out.append(list(dict.fromkeys(t for t in texts if t and t.strip())) or [kg.label(i)])
    return out


def entity_view_languages(kg: KnowledgeGraph, languages: Sequence[str] | None = None) -> list[list[str]]:
    """The language tag of each text of :func:`entity_view_texts` (same order); the combined text and a
    fallback label count as the entity's preferred label language, untagged texts as ``""``."""
    from kgemb.names import language_order

    out = []
    for i in range(kg.num_entities):
        e = kg.entities[i]
        home = next((lang for lang in language_order(e.labels, languages) if e.labels[lang]), "")
        tagged = {}
        for source in (e.labels, e.descriptions):
            for lang in language_order(source, languages):
                for text in source[lang]:
                    tagged.setdefault(text, lang)
        texts = [kg.entity_text(i, languages=languages), *kg.entity_views(i, languages=languages)]
        seen = list(dict.fromkeys(t for t in texts if t and t.strip())) or [kg.label(i)]
        out.append([home if n == 0 else tagged.get(t, home) for n, t in enumerate(seen)])
    return out


def check_finite(vectors: np.ndarray, what: str, names: Sequence[str] | None = None) -> None:
    """Raise an :class:`InputError` naming the first text whose encoder output is NaN or infinite."""
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        name = f" (first: {names[first]!r})" if names is not None else ""
        raise InputError(
            f"the encoder returned NaN or infinite values for {int(bad.sum())} {what}{name}; "
            "check the encoder (a float16 overflow or a broken model file) or pass another --encoder"
        )


def compute_text_features(
    kg: KnowledgeGraph,
    encoder: TextEncoder,
    *,
    languages: Sequence[str] | None = None,
    show_progress: bool = False,
    warn_no_text: bool = True,
    adapter: Any = None,
) -> TextFeatures:
    """Encode every view of every entity once, then centre and scale the vectors (frozen features).

    ``adapter`` (a :class:`kgemb.encoders.align.Adapter`, e.g. from ``adapter_for_graph``) maps the raw
    vectors first; it is kept on the features so queries and new entities go through it too.
    """
    if warn_no_text and kg.no_text_count:
        warnings.warn(
            f"{kg.no_text_count} of {kg.num_entities} entities have no label or description; "
            "their readable keys were embedded instead",
            stacklevel=3,
        )
    views = entity_view_texts(kg, languages)
    flat = [t for texts in views for t in texts]
    raw = np.asarray(encoder.encode(flat, role="document", show_progress=show_progress), dtype=np.float32)
    owners = np.repeat(np.arange(len(views)), [len(v) for v in views])
    check_finite(raw, "entity texts", [kg.entities[o].key for o in owners])
    offsets = np.zeros(len(views) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in views], out=offsets[1:])
    if adapter is not None:
        raw = adapter.apply(raw)
    out = standardised(torch.from_numpy(raw), torch.from_numpy(offsets))
    out.adapter = adapter
    return out


def standardised(raw: torch.Tensor, offsets: torch.Tensor) -> TextFeatures:
    """Centre raw vectors on their mean and scale them to unit average norm.

    Sentence encoders give every text of one domain a large shared component; removing it makes the texts of
    different entities far more distinguishable to a linear projection.
    """
    center = raw.mean(dim=0)
    centred = raw - center
    scale = float(centred.norm(dim=1).mean().clamp_min(1e-6))
    return TextFeatures(centred / scale, offsets, center, scale)


def encode_texts(encoder: Any, texts: Sequence[str], what: str = "texts") -> np.ndarray:
    """Encode texts (as documents) and check the result is finite."""
    raw = np.asarray(encoder.encode(list(texts), role="document"), dtype=np.float32)
    check_finite(raw, what, list(texts))
    return raw
