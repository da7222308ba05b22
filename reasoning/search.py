"""Find entities by free text in any language: every text of every entity (each label in each language, each
description) as a vector in the encoder's space, compared by cosine; an entity scores by its best-matching text.

The vectors are the model's own frozen text features (centred on the graph's mean, which removes the component
all texts of one domain share), so nothing is re-encoded; a model trained in ``structure`` mode has none, and its
texts are encoded once with the default encoder (cached on disk by the encoder).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from kgemb.errors import InputError

if TYPE_CHECKING:
    from kgemb.model import TrainedModel


class TextIndex:
    """Cosine search over all entity texts of a model's graph."""

    def __init__(self, model: TrainedModel, encoder: Any = None) -> None:
        from kgemb.features import compute_text_features

        features = model.features
        if encoder is None:
            if features is not None:
                encoder = model.encoder
            else:
                from kgemb.encoders import load_encoder

                encoder = load_encoder("default")
        if features is None:
            features = compute_text_features(model.kg, encoder, warn_no_text=False)
        self.encoder = encoder
        self.features = features
        self.vectors = torch.nn.functional.normalize(features.vectors, dim=1)
        self.owners = features.owners()
        self.num_entities = features.num_entities

    def query_vector(self, text: str) -> torch.Tensor:
        """The unit vector of a free text, in the same (centred) space as the entity texts."""
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"search text {text!r} is empty; give a word or phrase in any language")
        raw = self.encoder.encode([text], role="query")
        return torch.nn.functional.normalize(self.features.standardise(raw), dim=1)[0]

    def entity_vector(self, entity: int) -> torch.Tensor:
        """The unit mean of an entity's text vectors (for nearest neighbours of an entity)."""
        start, stop = int(self.features.offsets[entity]), int(self.features.offsets[entity + 1])
        return torch.nn.functional.normalize(self.vectors[start:stop].mean(dim=0), dim=0)

    def nearest(self, vector: torch.Tensor, k: int, exclude: int | None = None) -> list[tuple[int, float]]:
        """The ``k`` entities whose best text is closest to ``vector``: ``(id, cosine)``, best first."""
        sims = self.vectors @ vector
        best = torch.full((self.num_entities,), float("-inf")).scatter_reduce(
            0, self.owners, sims, reduce="amax"
        )
        if exclude is not None:
            best[exclude] = float("-inf")
        values, ids = torch.topk(best, min(k, self.num_entities))
        return [(int(i), float(v)) for v, i in zip(values, ids, strict=True) if torch.isfinite(v)]

    def search(self, text: str, k: int = 10) -> list[tuple[int, float]]:
        """The ``k`` entities closest to a free text."""
        return self.nearest(self.query_vector(text), k)
