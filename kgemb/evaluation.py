"""Filtered rank-based link-prediction metrics (MRR, Hits@1/3/10, both directions) with PyKEEN's evaluator."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from pykeen.evaluation import RankBasedEvaluator
from pykeen.models import Model

from kgemb.errors import InputError
from kgemb.model import TextAwareModel

if TYPE_CHECKING:
    from kgemb.model import TrainedModel

METRICS = {
    "mrr": "both.realistic.inverse_harmonic_mean_rank",
    "hits@1": "both.realistic.hits_at_1",
    "hits@3": "both.realistic.hits_at_3",
    "hits@10": "both.realistic.hits_at_10",
}


@contextmanager
def _quiet_cpu_warning() -> Iterator[None]:
    """torch_max_mem warns on every CPU evaluation that only CUDA is 'safe' for its batch-size search; hush it."""
    logger = logging.getLogger("torch_max_mem")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def rank_metrics(
    model: Model,
    triples: np.ndarray | torch.Tensor,
    filter_triples: list[np.ndarray | torch.Tensor] = (),  # type: ignore[assignment]
    *,
    batch_size: int | None = None,
    show_progress: bool = False,
    ranks_out: list[np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
) -> dict[str, float]:
    """MRR and Hits@k of a PyKEEN model on id triples, ranking every entity, other true triples filtered out.

    ``ranks_out``, when given, receives the filtered (realistic) rank of every query, both directions. The anchor
    of a query whose relation the model takes as irreflexive is filtered too.
    ``candidates``: entity ids to rank among instead of every entity (each triple's entities must be among them).

    ``batch_size`` (queries scored at once) defaults to what keeps the scores near 1 GB: ``batch × entities``
    numbers where kgemb's model scores by one matrix product, PyKEEN's ``batch × entities × dim`` broadcast
    otherwise.
    """
    mapped = torch.as_tensor(np.asarray(triples), dtype=torch.long).reshape(-1, 3)
    if len(mapped) == 0:
        raise InputError("there are no triples to evaluate on; pick a split that has triples")
    filters = [torch.as_tensor(np.asarray(f), dtype=torch.long).reshape(-1, 3) for f in filter_triples]
    filters = [f for f in [*filters, _self_loops(model, mapped)] if len(f)]
    restrict = None
    if candidates is not None:
        restrict = torch.as_tensor(np.unique(np.asarray(candidates)), dtype=torch.long)
        missing = np.setdiff1d(mapped[:, [0, 2]].unique().numpy(), restrict.numpy())
        if len(missing):
            raise InputError(
                f"{len(missing)} entities of the evaluated triples are not among the candidates (e.g. id "
                f"{int(missing[0])}); include every entity the triples name"
            )
    if batch_size is None:
        if isinstance(model, TextAwareModel) and model.scoring_form is not None:
            width = 8  # one matrix product: a few (batch × entities) temporaries
        else:
            width = 2 * sum(int(np.prod(r.shape)) for r in model.entity_representations)  # x2: complex ones
        batch_size = max(1, min(1024, (1 << 28) // max(1, model.num_entities * width)))
    evaluator = RankBasedEvaluator(filtered=True, clear_on_finalize=ranks_out is None)
    was_training = model.training
    model.eval()
    try:
        with _quiet_cpu_warning():
            result = evaluator.evaluate(
                model,
                mapped,
                batch_size=batch_size,
                use_tqdm=show_progress,
                additional_filter_triples=filters or None,
                restrict_entities_to=restrict,
                do_time_consuming_checks=False,
            )
    finally:
        model.train(was_training)
    out = {name: float(result.get_metric(key)) for name, key in METRICS.items()}
    out["n"] = len(mapped)
    if ranks_out is not None:
        ranks_out.extend(
            np.concatenate(v)
            for (_, rank_type), v in sorted(evaluator.ranks.items())
            if rank_type == "realistic"
        )
    return out


def _self_loops(model: Model, triples: torch.Tensor) -> torch.Tensor:
    """``(h, r, h)`` and ``(t, r, t)`` for every evaluated triple ``(h, r, t)`` whose relation the model takes as
    irreflexive (:meth:`TextAwareModel.skips_anchor`): filtered like known links, so such a query's anchor is no
    candidate, as in every other ranking of the model's. (A filter triple acts only on the queries that share its
    anchor and relation, so the evaluated triples' own anchors are all it takes: two rows per triple, not one per
    entity and relation.)"""
    if not isinstance(model, TextAwareModel) or model.irreflexive is None:
        return torch.zeros((0, 3), dtype=torch.long)
    flagged = triples[model.skips_anchor(triples[:, 1])]
    heads, tails = flagged[:, [0, 1, 0]], flagged[:, [2, 1, 2]]
    return torch.cat([heads, tails]).unique(dim=0)


def evaluate(
    trained: TrainedModel,
    split: str = "test",
    *,
    batch_size: int | None = None,
    max_triples: int | None = None,
    seed: int = 0,
    show_progress: bool = False,
    ranks_out: list[np.ndarray] | None = None,
    candidates: str | None = None,
) -> dict[str, float]:
    """Filtered MRR and Hits@1/3/10 of a trained model on one split of its graph (all other splits filtered).

    ``max_triples`` evaluates a fixed random sample of the split (same ``seed``, same sample), for quick checks.
    ``candidates="split"`` ranks only among the entities of the split's triples (the "test graph" protocol of
    inductive benchmarks such as BLP's) instead of among every entity.
    """
    kg = trained.kg
    if split not in kg.splits:
        raise InputError(f"the graph has no split {split!r}; choose one of {', '.join(sorted(kg.splits))}")
    triples = kg.triples(split)
    if len(triples) == 0:
        raise InputError(f"split {split!r} has no triples; evaluate another split (e.g. --split valid)")
    if max_triples is not None and len(triples) > max_triples:
        pick = np.sort(np.random.default_rng(seed).choice(len(triples), max_triples, replace=False))
        triples = triples[pick]
    filters = [kg.triples(s) for s in kg.splits]  # the whole split too: a sample must not rank its siblings
    if candidates not in (None, "split"):
        raise InputError(f"candidates={candidates!r} is unknown; use None (every entity) or 'split'")
    among = np.unique(kg.triples(split)[:, [0, 2]]) if candidates == "split" else None
    return rank_metrics(
        trained.pykeen_model,
        triples,
        filters,
        batch_size=batch_size,
        show_progress=show_progress,
        ranks_out=ranks_out,
        candidates=among,
    )
