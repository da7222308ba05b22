"""Score every entity as the missing head or tail of a batch of queries, in chunks, keeping only the top k.

Memory stays at the model's own size plus ``O(batch × chunk)``: entities are scored ``chunk`` at a time and a
running top-k is merged, so no ``N × N`` and no ``N × dim`` temporary is ever built. For the interactions whose
score is a dot product or a Euclidean distance after a rotation or translation (DistMult, ComplEx, RotatE,
TransE with p=2) a chunk is one matrix product against the entity matrix; the winners are then re-scored with the
model's own PyKEEN interaction, so returned scores are exactly the model's. Other interactions are evaluated
with the PyKEEN interaction itself, chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kgemb.model import Side, product_scores, query_vector, to_interaction_layout, to_real_layout

if TYPE_CHECKING:
    from kgemb.model import TrainedModel

# (raw scores of a chunk (b, C), first entity id of the chunk) -> the values to rank by, (b, C) or (C,)
Transform = Callable[[torch.Tensor, int], torch.Tensor]


class CandidateScorer:
    """Chunked scoring of all entities against queries given as entity vectors (ids or inductive) and relations."""

    def __init__(self, model: TrainedModel, chunk_size: int | None = None) -> None:
        self.model = model
        self.interaction = model.pykeen_model.interaction
        self.complex = bool(model.representation.complex)
        self.chunk_size = chunk_size
        self.form = model.pykeen_model.scoring_form
        self._norms: tuple[int, torch.Tensor] | None = None

    # ------------------------------------------------------------------ representations
    def entities(self) -> torch.Tensor:
        """All entity representations in the interaction's layout (cached by the model)."""
        self.model.pykeen_model.eval()
        with torch.no_grad():
            return self.model.representation(indices=None)

    def anchors(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Representations of the given entity ids (the known side of each query)."""
        return self.entities()[torch.as_tensor(np.asarray(ids), dtype=torch.long)]

    def from_real(self, vectors: torch.Tensor) -> torch.Tensor:
        """Real vectors (``model.embed_texts``) in the interaction's layout, normalised like the model's."""
        return to_interaction_layout(vectors.float(), self.complex)

    def relations(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The relations of a batch of queries, to pass to :meth:`top`, :meth:`chunk` and :meth:`exact`."""
        return torch.as_tensor(np.asarray(ids), dtype=torch.long)

    def _orient(self, side: Side, relations: torch.Tensor) -> tuple[Side, Any]:
        """The side and relation representations a query is scored with (a reciprocal model answers head
        queries as tail queries of the inverse relation); a list where the interaction takes several."""
        pykeen_model = self.model.pykeen_model
        side, ids = pykeen_model.orient(side, relations)
        with torch.no_grad():
            reps = [rep(indices=ids) for rep in pykeen_model.relation_representations]
        return side, reps[0] if len(reps) == 1 else reps

    def _entity_norms(self, ents: torch.Tensor) -> torch.Tensor:
        key = ents.data_ptr()
        if self._norms is None or self._norms[0] != key:
            real = to_real_layout(ents)
            self._norms = (key, (real * real).sum(dim=-1))
        return self._norms[1]

    # ------------------------------------------------------------------ scoring
    def _query(self, side: Side, anchor: torch.Tensor, rel: Any) -> torch.Tensor | None:
        """The vector a candidate is compared with, for the matrix-product forms."""
        if self.form is None:
            return None
        return query_vector(self.interaction, side, anchor, rel)

    def chunk(
        self, side: Side, anchor: torch.Tensor, rel: Any, start: int, stop: int, *, raw: bool = True
    ) -> torch.Tensor:
        """Scores ``(b, stop - start)`` of entities ``start..stop`` as the ``side`` of each query row.

        ``raw=False`` may return values that only rank like the raw scores within each row (for the distance
        forms, ``2 q·t - |t|^2`` instead of ``-|q - t|``: one fused matrix product, no square root)."""
        side, rel = self._orient(side, rel)
        return self._chunk(self._prepare(side, anchor, rel), side, anchor, rel, start, stop, raw)

    def _prepare(
        self, side: Side, anchor: torch.Tensor, rel: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.no_grad():
            q = self._query(side, anchor, rel)
            return self.entities(), None if q is None else to_real_layout(q)

    def _chunk(
        self,
        prepared: tuple[torch.Tensor, torch.Tensor | None],
        side: Side,
        anchor: torch.Tensor,
        rel: Any,
        start: int,
        stop: int,
        raw: bool,
    ) -> torch.Tensor:
        ents, q = prepared
        cand = ents[start:stop]
        with torch.no_grad():
            if q is not None:
                norms = self._entity_norms(ents)[start:stop] if self.form == "distance" else None
                return product_scores(self.form, q, to_real_layout(cand), norms, raw=raw)
            rel_b = [x.unsqueeze(1) for x in rel] if isinstance(rel, list) else rel.unsqueeze(1)
            if side == "tail":
                return self.interaction(h=anchor.unsqueeze(1), r=rel_b, t=cand.unsqueeze(0))
            return self.interaction(h=cand.unsqueeze(0), r=rel_b, t=anchor.unsqueeze(1))

    def exact(self, side: Side, anchor: torch.Tensor, rel: Any, candidates: torch.Tensor) -> torch.Tensor:
        """The model's own scores ``(b, k)`` of candidate ids ``(b, k)`` as the ``side`` of each query row."""
        side, rel = self._orient(side, rel)
        cand = self.entities()[candidates]
        rel_b = [x.unsqueeze(1) for x in rel] if isinstance(rel, list) else rel.unsqueeze(1)
        with torch.no_grad():
            if side == "tail":
                return self.interaction(h=anchor.unsqueeze(1), r=rel_b, t=cand)
            return self.interaction(h=cand, r=rel_b, t=anchor.unsqueeze(1))

    def _chunk_len(self, rows: int, ents: torch.Tensor) -> int:
        if self.chunk_size:
            return self.chunk_size
        dim = to_real_layout(ents[:1]).shape[-1]
        budget = 1 << 24 if self.form is not None else 1 << 23  # floats in the chunk's temporaries
        per_entity = rows if self.form is not None else rows * dim
        return int(max(1024, budget // max(per_entity, 1)))

    def top(
        self,
        side: Side,
        anchor: torch.Tensor,
        rel: Any,
        k: int,
        *,
        transform: Transform | None = None,
        rows: int | None = None,
        raw: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` entities for each query row: ``(values, ids)``, each ``(b, k)``, best first.

        ``transform(raw_chunk, start)`` turns raw scores into the values to rank by (apply masks with ``-inf``,
        calibrate, or sum several rows into one, returning ``(1, C)``); ``rows`` is then the number of rows it
        returns. Entries that are ``-inf`` at the end were masked (fewer than ``k`` candidates). With
        ``raw=False`` the values only rank like raw scores (see :meth:`chunk`): re-score the winners with
        :meth:`exact`; a ``transform`` then may only mask.
        """
        num = self.model.kg.num_entities
        b = anchor.shape[0]
        out_rows = rows if rows is not None else b
        k = min(k, num)
        side, rel = self._orient(side, rel)
        prepared = self._prepare(side, anchor, rel)
        step = self._chunk_len(b, prepared[0])
        best_v = torch.full((out_rows, 0), float("-inf"))
        best_i = torch.zeros((out_rows, 0), dtype=torch.long)
        for start in range(0, num, step):
            stop = min(num, start + step)
            values = self._chunk(prepared, side, anchor, rel, start, stop, raw)
            if transform is not None:
                values = transform(values, start)
            kk = min(k, stop - start)
            v, i = torch.topk(values, kk, dim=1)
            best_v = torch.cat([best_v, v], dim=1)
            best_i = torch.cat([best_i, i + start], dim=1)
            if best_v.shape[1] > k:
                best_v, pos = torch.topk(best_v, k, dim=1)
                best_i = best_i.gather(1, pos)
        return best_v, best_i
