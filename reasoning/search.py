"""Find entities by free text in any language: every text of every entity (each label in each language, each
description) as a vector in the encoder's space, compared by cosine.

An entity scores by its best *home* text (texts in the language of its preferred label, and untagged ones), or by
a text in another language only when that text is as close as a true variant of the name would be: closer than
the 99th percentile of the similarity between distinct texts of different entities in that language, and never
below a cosine of 0.9 (the language's threshold, measured on the graph when the index is built). So labels in the query's language on some
entities never push down the entities that lack one: a Chinese query compared with a Chinese label is inflated by
the shared language, and without the threshold such labels win over the right English-only entity.

The vectors are the model's own frozen text features (through its cross-lingual adapter when it has one, centred on
the graph's mean), so nothing is re-encoded; a model trained in ``structure`` mode has none, and its texts are
encoded once with the default encoder (cached on disk by the encoder). Queries are encoded in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kgemb.errors import InputError

if TYPE_CHECKING:
    from kgemb.features import TextFeatures
    from kgemb.graph import KnowledgeGraph
    from kgemb.model import TrainedModel

QUANTILE = 0.99  # a foreign-language text counts when closer than this share of distinct-text neighbours
FLOOR = 0.9  # and never below this cosine: only a variant of the name itself, not a related name ("偏头痛" for "头痛")
_SAMPLE = 2000  # texts per language whose nearest other-entity text sets the threshold
_MIN_TEXTS = 20  # a language with fewer texts counts only near-exact matches
_EXACT = 0.999


class TextIndex:
    """Cosine search over all entity texts of a graph, without bias toward entities labelled in the query's
    language (see the module docstring)."""

    def __init__(self, model: TrainedModel, encoder: Any = None, *, adapter: Any = None) -> None:
        features = model.features
        if encoder is None:
            if features is not None:
                encoder = model.encoder
            else:
                from kgemb.encoders import load_encoder

                encoder = load_encoder("default")
        languages = (model.config.get("training") or {}).get("languages")
        self._build(model.kg, encoder, features, adapter, languages)

    @classmethod
    def from_graph(
        cls, kg: KnowledgeGraph, encoder: Any, *, adapter: Any = None, languages: Sequence[str] | None = None
    ) -> TextIndex:
        """An index over a graph's texts alone (no trained model), e.g. to measure search itself."""
        index = cls.__new__(cls)
        index._build(kg, encoder, None, adapter, languages)
        return index

    def _build(
        self,
        kg: KnowledgeGraph,
        encoder: Any,
        features: TextFeatures | None,
        adapter: Any,
        languages: Sequence[str] | None,
    ) -> None:
        from kgemb.encoders.align import primary
        from kgemb.features import compute_text_features, entity_view_languages

        if features is None:
            features = compute_text_features(
                kg, encoder, languages=languages, warn_no_text=False, adapter=adapter
            )
        elif adapter is not None and features.adapter is not adapter:
            features = features.with_adapter(adapter)
        self.encoder = encoder
        self.features = features
        self.vectors = torch.nn.functional.normalize(features.vectors, dim=1)
        self.owners = features.owners()
        self.num_entities = features.num_entities
        langs = [[primary(t) for t in row] for row in entity_view_languages(kg, languages)]
        if sum(map(len, langs)) != len(self.owners):  # features from another text layout: every text counts
            counts = (features.offsets[1:] - features.offsets[:-1]).tolist()
            langs = [[""] * int(n) for n in counts]
        names = sorted({t for row in langs for t in row})
        code = {t: n for n, t in enumerate(names)}
        self.languages = names
        self.view_language = torch.tensor([code[t] for row in langs for t in row], dtype=torch.long)
        self.home = torch.tensor([t == row[0] or t == "" for row in langs for t in row], dtype=torch.bool)
        self.thresholds = self._thresholds()

    def _thresholds(self) -> torch.Tensor:
        """Per language: the similarity a foreign-language text must reach to count (see the module docstring)."""
        gen = torch.Generator().manual_seed(0)
        out = torch.full((len(self.languages),), _EXACT)
        for g in range(len(self.languages)):
            members = torch.nonzero(self.view_language == g).flatten()
            if len(members) < _MIN_TEXTS or bool(self.home[members].all()):
                continue
            sample = members[torch.randperm(len(members), generator=gen)[:_SAMPLE]]
            sims = self.vectors[sample] @ self.vectors[members].T
            other = self.owners[sample].unsqueeze(1) != self.owners[members].unsqueeze(0)
            sims = sims.masked_fill(~other | (sims >= _EXACT), float("-inf"))
            nearest = sims.max(dim=1).values
            nearest = nearest[torch.isfinite(nearest)]
            if len(nearest):
                out[g] = min(_EXACT, max(FLOOR, float(torch.quantile(nearest, QUANTILE))))
        return out

    def query_vectors(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors of free texts (one encoder call), in the same (adapted, centred) space as the entity texts."""
        if isinstance(texts, str):
            raise InputError("query_vectors takes a list of texts; wrap one text: [text]")
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"search text {text!r} is empty; give a word or phrase in any language")
        raw = self.encoder.encode(list(texts), role="query")
        return torch.nn.functional.normalize(self.features.standardise(raw), dim=1)

    def query_vector(self, text: str) -> torch.Tensor:
        """The unit vector of one free text (see :meth:`query_vectors`)."""
        return self.query_vectors([text])[0]

    def entity_vector(self, entity: int) -> torch.Tensor:
        """The unit mean of an entity's text vectors (for nearest neighbours of an entity)."""
        start, stop = int(self.features.offsets[entity]), int(self.features.offsets[entity + 1])
        return torch.nn.functional.normalize(self.vectors[start:stop].mean(dim=0), dim=0)

    def entity_scores(self, queries: torch.Tensor) -> torch.Tensor:
        """Each entity's score for each query vector, shape ``(num_queries, num_entities)``."""
        queries = queries.reshape(-1, self.vectors.shape[1])
        sims = queries @ self.vectors.T  # (q, views)
        counts = self.home.unsqueeze(0) | (sims >= self.thresholds[self.view_language].unsqueeze(0))
        sims = sims.masked_fill(~counts, float("-inf"))
        best = torch.full((len(queries), self.num_entities), float("-inf"))
        index = self.owners.unsqueeze(0).expand_as(sims)
        return best.scatter_reduce(1, index, sims, reduce="amax")

    def nearest(self, vector: torch.Tensor, k: int, exclude: int | None = None) -> list[tuple[int, float]]:
        """The ``k`` entities closest to ``vector``: ``(id, cosine)``, best first."""
        best = self.entity_scores(vector)[0]
        if exclude is not None:
            best[exclude] = float("-inf")
        return _top(best, k)

    def search_many(self, texts: Sequence[str], k: int = 10) -> list[list[tuple[int, float]]]:
        """The ``k`` entities closest to each free text (queries encoded in one batch)."""
        out: list[list[tuple[int, float]]] = []
        queries = self.query_vectors(texts)
        for start in range(0, len(queries), 256):
            out.extend(_top(row, k) for row in self.entity_scores(queries[start : start + 256]))
        return out

    def search(self, text: str, k: int = 10) -> list[tuple[int, float]]:
        """The ``k`` entities closest to a free text."""
        return self.search_many([text], k)[0]


def _top(scores: torch.Tensor, k: int) -> list[tuple[int, float]]:
    values, ids = torch.topk(scores, min(k, scores.numel()))
    return [(int(i), float(v)) for v, i in zip(values, ids, strict=True) if bool(np.isfinite(float(v)))]
