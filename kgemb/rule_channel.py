"""The rule channel of a model: mined rules (:mod:`kgemb.rules`) added to the embedding score, weighted per relation.

For a tail query ``(a, r, ?)`` (``r`` in ``0..2R-1``; head queries are tail queries of the inverse relation) the
model's score of candidate ``e`` becomes::

    score(a, r, e) = embedding(a, r, e) + w[r] * rule(a, r, e)

``rule`` is the aggregated confidence of the rules that predict ``e`` (0 where none fires) and ``w[r]`` is chosen
per relation and direction on the validation triples, from :data:`WEIGHTS` by filtered MRR: 0 switches the rules
off for a relation where they do not help, the largest weight ranks by the rules first and lets the embedding break
their ties. Evaluation and the reasoning scorers see the combined score; new (inductive) entities have no rule
groundings and keep the embedding score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kgemb.objective import KnownAnswers, reciprocal_examples

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph
    from kgemb.model import TextAwareModel
    from kgemb.rules import RuleSet

#: the weights tried per relation and direction (the embedding's logits are O(1)–O(10) apart)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 1000.0)


class RuleChannel:
    """Mined rules and one weight per (oriented) relation; see the module docstring."""

    def __init__(self, rules: RuleSet, weights: Any) -> None:
        self.rules = rules
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if self.weights.shape != (2 * rules.num_relations,):
            raise ValueError(f"need {2 * rules.num_relations} rule weights, got {tuple(self.weights.shape)}")

    def scores(self, anchors: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """``w[r] * rule(a, r, ·)``, shape ``(b, num_entities)``; zeros for relations whose weight is 0."""
        out = torch.zeros(len(anchors), self.rules.num_entities)
        w = self.weights[relations.cpu()]
        active = torch.nonzero(w > 0).flatten()
        if len(active):
            rule = self.rules.tail_scores(anchors.cpu()[active].numpy(), relations.cpu()[active].numpy())
            out[active] = rule * w[active].unsqueeze(1)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"weights": [float(x) for x in self.weights]}


@torch.no_grad()
def fit_weights(
    model: TextAwareModel,
    rules: RuleSet,
    kg: KnowledgeGraph,
    *,
    max_triples: int | None = 5000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, float]]:
    """Per relation and direction, the weight of :data:`WEIGHTS` with the best filtered validation MRR (ties: the
    smaller weight), and the validation MRR of the embedding alone and combined."""
    r2 = 2 * kg.num_relations
    valid = kg.triples("valid")
    if max_triples is not None and len(valid) > max_triples:
        valid = valid[np.sort(np.random.default_rng(seed).choice(len(valid), max_triples, replace=False))]
    queries = torch.from_numpy(reciprocal_examples(valid, kg.num_relations))
    known_all = reciprocal_examples(np.concatenate([kg.triples(s) for s in kg.splits]), kg.num_relations)
    known = KnownAnswers(known_all[:, 0], known_all[:, 1], known_all[:, 2], r2)
    query_ids = known.lookup(queries[:, 0].numpy(), queries[:, 1].numpy())
    weights = torch.tensor(WEIGHTS)
    reciprocal = torch.zeros(len(queries), len(WEIGHTS))
    model.eval()
    for start in range(0, len(queries), 256):
        batch = queries[start : start + 256]
        emb = model.score_t(batch[:, :2], rules_off=True).float()
        rule = torch.as_tensor(rules.tail_scores(batch[:, 0].numpy(), batch[:, 1].numpy()))
        rows, ents = known.pairs(query_ids[start : start + 256])
        other = ents != batch[rows, 2]
        blocked = torch.zeros_like(emb, dtype=torch.bool)
        blocked[rows[other], ents[other]] = True
        target = batch[:, 2:3]
        for j, w in enumerate(weights):
            s = (emb + w * rule).masked_fill(blocked, float("-inf"))
            true = s.gather(1, target)
            rank = (s > true).sum(1) + 0.5 * ((s == true).sum(1) - 1) + 1  # PyKEEN's realistic rank
            reciprocal[start : start + len(batch), j] = 1.0 / rank.float()
    best = np.zeros(r2, dtype=np.float32)
    for r in range(r2):
        rows = queries[:, 1] == r
        if rows.any():
            best[r] = WEIGHTS[
                int(torch.argmax(reciprocal[rows].mean(0)))
            ]  # first maximum: the smaller weight
    chosen = torch.as_tensor([WEIGHTS.index(float(best[r])) for r in queries[:, 1].tolist()])
    summary = {
        "valid_mrr_embedding": float(reciprocal[:, 0].mean()),
        "valid_mrr_rules_first": float(reciprocal[:, -1].mean()),
        "valid_mrr_combined": float(reciprocal[torch.arange(len(queries)), chosen].mean()),
    }
    return best, summary
