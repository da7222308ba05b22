"""A model's channels beside its embedding score, each weighted per relation and direction on validation.

**Text channel** (fused models with a dot-product interaction): the text part of the entity vectors, trained with a
loss of its own (:mod:`kgemb.objective`), scores every query too, and the model's score becomes
``fused(a, r, e) + v[r] * text(a, r, e)`` with ``v[r]`` from :data:`TEXT_WEIGHTS` (:func:`fit_text_weights`). It is
folded into the weights (:func:`kgemb.model.fold_text_channel`), so every scorer — evaluation, ranking, the Neo4j
plugin — computes it in the same matrix product. 0 keeps the fused score alone; the largest weight ranks by text
first. On validation the combination is therefore never below the fused score or the text part alone.

**Similarity channel** (text models with a dot-product interaction): the cosine of the anchor's and the candidate's
text features (in their principal subspace, :func:`kgemb.model.similarity_map`) added to the model's score,
``text(a, r, e) + u[r] * cos(a, e)`` with ``u[r]`` from :data:`SIMILARITY_WEIGHTS` (:func:`fit_similarity_weights`),
folded into the weights as the text channel is. Trained on the graph's entities, the text projection ranks entities
unseen in training below what their texts' plain similarity says; where validation shows the cosine helps, it
gives that back (WN18RR inductive, README). A late model's text part gets it too, chosen the same way on the text
part alone (:func:`fit_late_weights`).

A ``late`` fused model (:mod:`kgemb.model`) is two channels by construction: its structural part and its text part,
each with relation vectors of its own, scored ``structure(a, r, e) + v[r] * text(a, r, e)``. ``v[r]`` is 1 (the two
models' scores added) unless another weight of :data:`LATE_WEIGHTS` gains significantly on validation, over all
queries and then on the relation's own: picked by the largest validation mean, per-relation weights followed the
noise of small validation sets. With rules, each part gets the rule weights it would have alone and the model their
sum weighted the same way (:func:`fit_late_weights`).

**Rule channel**: mined rules (:mod:`kgemb.rules`) added to the embedding score. For a tail query ``(a, r, ?)`` (``r`` in ``0..2R-1``; head queries are tail queries of the inverse relation) the
model's score of candidate ``e`` becomes::

    score(a, r, e) = embedding(a, r, e) + w[r] * rule(a, r, e)

``rule`` is the aggregated confidence of the rules that predict ``e`` (0 where none fires) and ``w[r]`` is chosen
per relation and direction on the validation triples, from :data:`WEIGHTS` by filtered MRR: 0 switches the rules
off for a relation where they do not help, the largest weight ranks by the rules first and lets the embedding break
their ties (a late model's weights are sums of those, see above). Evaluation and the reasoning scorers see the
combined score; new (inductive) entities have no rule groundings and keep the embedding score.

**Text-neighbour vote** (part of the rule channel; models with entity texts): the rule ``r(X,Y) <= r(X,Z), near(Z,Y)`` over a ``near`` relation from the texts. Every entity
gets its :data:`VOTE_NEIGHBOURS` nearest entities with training triples (itself left out) by the cosine of their
centred mean text features, weighted by a softmax of the cosines at temperature :data:`VOTE_TEMPERATURE`
(:class:`TextVotes`); for a tail query ``(a, r, ?)`` a candidate ``e`` scores the weights of its neighbours that
are training answers of ``(a, r, ?)``, and the rule channel adds ``x[r] * vote(a, r, e)``, ``x[r]`` from
:data:`VOTE_WEIGHTS` chosen on validation as the similarity channel's are (0 unless a gain is significant;
:func:`fit_vote_weights`). An entity unseen in training thus gets the votes of the seen entities it resembles, and
a seen one the votes of its seen look-alikes, alike: a vote for the unseen candidates alone would also learn the
split's make-up (on an inductive split a seen anchor's answers are all unseen; README, WN18RR inductive).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from kgemb.files import write_atomic
from kgemb.model import product_scores, query_vector, similarity_vectors, to_real_layout
from kgemb.objective import KnownAnswers, reciprocal_examples

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph
    from kgemb.model import TextAwareModel
    from kgemb.rules import RuleSet

#: the weights tried per relation and direction (the embedding's logits are O(1)–O(10) apart)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 1000.0)
#: the text channel's weights tried per relation and direction
TEXT_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 1000.0)
#: the similarity channel's weights tried per relation and direction (a cosine is at most 1; logits are O(1)–O(10)
#: apart)
SIMILARITY_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
#: the text-neighbour vote's weights tried per relation and direction (a vote is a sum of softmax weights, at
#: most the anchor's number of answers). A text model's logits spread about 2 per query on WN18RR; a late model's
#: are its structural part's plus its text part's times up to 64 (LATE_WEIGHTS), hence the long tail
VOTE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
#: the vote's neighbours per entity, and the softmax temperature of their cosines: chosen on WN18RR's inductive
#: validation triples (text model; k 5 / 10 / 20 and temperatures 0.02 … 0.5 within 0.35 points there, 0.5 on
#: test: benchmarks/results/linkpred_wn18rr_inductive_votes.md)
VOTE_NEIGHBOURS, VOTE_TEMPERATURE = 10, 0.2
#: the largest entities × (entities with training triples) a run compares for the vote (about a minute
#: at 512 text dimensions here); beyond it the model has no vote
VOTE_MAX_PAIRS = 10_000_000_000
#: the vote's arrays in a model folder
VOTES_ARRAYS = "votes.npz"
#: a late model's text weights: never 0 (the folded relation rows keep its text part's, see unfold_text_channel)
#: and powers of two (folding and unfolding them is exact). 1 unless validation shows another one significantly
#: better: chosen by the largest validation mean per relation they overfit small validation sets (Nations test MRR
#: 0.819 against 0.827 for 1 everywhere, mean of three seeds), while WN18RR wants 16 (0.534 against 0.514)
LATE_WEIGHTS = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
#: standard errors of the paired validation gain that move a late model's text weight: for all relations at once,
#: then per relation
SIGNIFICANT_OVERALL, SIGNIFICANT = 3.0, 2.0


class TextVotes:
    """The text-neighbour vote's ``near`` relation (see the module docstring): per entity its ``near`` (n, k)
    nearest entities with training triples by text (never itself) and ``strength`` (n, k) their softmax
    weights."""

    def __init__(self, near: Any, strength: Any) -> None:
        self.near = np.asarray(near, dtype=np.int64)
        self.strength = np.asarray(strength, dtype=np.float32)
        n = len(self.near)
        if self.near.ndim != 2 or self.strength.shape != self.near.shape:
            raise ValueError(
                f"the vote's arrays must be (entities, k), got {self.near.shape}, {self.strength.shape}"
            )
        if self.near.size and (self.near.min() < 0 or self.near.max() >= n):
            raise ValueError(f"the vote's neighbours must be entity ids in 0..{n - 1}")
        k = self.near.shape[1]
        # (n, n): row z, the entities that have z among their neighbours
        self._matrix = sp.csr_matrix(
            (self.strength.ravel(), (self.near.ravel(), np.repeat(np.arange(n), k))), shape=(n, n)
        )

    @classmethod
    def build(
        cls,
        text_mean: torch.Tensor,
        seen: torch.Tensor,
        k: int = VOTE_NEIGHBOURS,
        temperature: float = VOTE_TEMPERATURE,
        block: int = 4096,
    ) -> TextVotes:
        """Each entity's ``k`` nearest entities of ``seen`` (a boolean mask), itself left out, by the cosine of
        the centred mean text features ``text_mean`` (entities × features)."""
        x = text_mean.float() - text_mean.float().mean(0)
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        n, ids = len(x), torch.nonzero(seen).flatten()
        k = min(k, len(ids) - 1)
        near, strength = torch.empty(n, k, dtype=torch.long), torch.empty(n, k)
        for start in range(0, n, block):
            sim = x[start : start + block] @ x[ids].T
            rows = torch.arange(start, start + len(sim))
            own = torch.searchsorted(ids, rows).clamp_max(len(ids) - 1)
            itself = torch.nonzero(ids[own] == rows).flatten()
            sim[itself, own[itself]] = float("-inf")
            top, at = sim.topk(k, dim=1)
            near[start : start + len(sim)] = ids[at]
            strength[start : start + len(sim)] = torch.softmax((top - top[:, :1]) / temperature, dim=1)
        return cls(near.numpy(), strength.numpy())

    def scores(self, rules: RuleSet, anchors: np.ndarray, relations: np.ndarray) -> torch.Tensor:
        """Votes ``(b, num_entities)`` float32 of the tail queries ``(anchor, relation, ?)`` (relation in
        ``0..2R-1``) from the answers ``rules`` grounds on."""
        a, r = np.asarray(anchors, dtype=np.int64), np.asarray(relations, dtype=np.int64)
        out = np.zeros((len(a), len(self.near)), dtype=np.float32)
        for h in np.unique(r):
            idx = np.flatnonzero(r == h)
            out[idx] = (rules.answers(a[idx], int(h)) @ self._matrix).toarray()
        return torch.from_numpy(out)

    def voters(self, rules: RuleSet, anchor: int, relation: int, candidate: int) -> list[tuple[int, float]]:
        """The vote's terms for ``candidate`` in the query ``(anchor, relation, ?)``: its neighbours that are
        training answers of the query, with their strengths, strongest first."""
        answers = set(rules.answers(np.asarray([anchor]), relation).indices.tolist())
        pairs = zip(self.near[candidate].tolist(), self.strength[candidate].tolist(), strict=True)
        return [(z, s) for z, s in pairs if z in answers]

    def save(self, path: Path) -> None:
        """Write the arrays (``.npz``, no pickle), atomically."""
        write_atomic(path, lambda f: np.savez(f, near=self.near, strength=self.strength))

    @classmethod
    def load(cls, path: Path, num_entities: int) -> TextVotes:
        """Read what :meth:`save` wrote for a graph of ``num_entities`` (its checksum is the model folder's to
        check)."""
        with np.load(path, allow_pickle=False) as data:
            votes = cls(data["near"], data["strength"])
        if len(votes.near) != num_entities:
            raise ValueError(f"the vote has {len(votes.near)} entities, the graph {num_entities}")
        return votes


class RuleChannel:
    """Mined rules and one weight per (oriented) relation, and the text-neighbour vote with weights of its own;
    see the module docstring."""

    def __init__(
        self, rules: RuleSet, weights: Any, votes: TextVotes | None = None, vote_weights: Any = None
    ) -> None:
        self.rules = rules
        self.weights = self._weights(weights, "rule")
        self.votes = votes
        self.vote_weights = None if votes is None else self._weights(vote_weights, "vote")

    def _weights(self, weights: Any, what: str) -> torch.Tensor:
        out = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if out.shape != (2 * self.rules.num_relations,):
            raise ValueError(f"need {2 * self.rules.num_relations} {what} weights, got {tuple(out.shape)}")
        return out

    def scores(self, anchors: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """``w[r] * rule(a, r, ·) + x[r] * vote(a, r, ·)``, shape ``(b, num_entities)``; zeros for relations
        whose weights are 0."""
        out = torch.zeros(len(anchors), self.rules.num_entities)
        anchors, relations = anchors.cpu(), relations.cpu()
        parts = [(self.weights, self.rules.tail_scores)]
        if self.votes is not None:
            parts.append((self.vote_weights, functools.partial(self.votes.scores, self.rules)))
        for weights, score in parts:
            w = weights[relations]
            active = torch.nonzero(w > 0).flatten()
            if len(active):
                part = score(anchors[active].numpy(), relations[active].numpy())
                out[active] += part * w[active].unsqueeze(1)
        return out


@torch.no_grad()
def fit_weights(
    model: TextAwareModel,
    rules: RuleSet,
    kg: KnowledgeGraph,
    *,
    max_triples: int | None = 5000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, float]]:
    """Per relation and direction, the rule weight of :data:`WEIGHTS` with the best filtered validation MRR (ties:
    the smaller weight), and the validation MRR of the embedding alone and combined."""

    def embedding(batch: torch.Tensor) -> torch.Tensor:
        return model.score_t(batch[:, :2], rules_off=True).float()

    rule = _rule_scores(rules)
    return _fit(embedding, rule, WEIGHTS, kg, max_triples, seed, "rules", skips_anchor=model.skips_anchor)


@torch.no_grad()
def fit_vote_weights(
    model: TextAwareModel,
    rules: RuleSet,
    votes: TextVotes,
    kg: KnowledgeGraph,
    *,
    max_triples: int | None = 5000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, float]]:
    """Per relation and direction, the text-neighbour vote's weight of :data:`VOTE_WEIGHTS` on top of the model as
    it scores (with its rule channel), 0 unless another one's gain in filtered validation MRR is significant (as
    :func:`_fit` with ``prefer``); and the validation MRRs of the model, with the largest weight and combined."""
    model.eval()

    def scored(batch: torch.Tensor) -> torch.Tensor:
        return model.score_t(batch[:, :2]).float()

    return _fit(
        scored,
        _vote_scores(votes, rules),
        VOTE_WEIGHTS,
        kg,
        max_triples,
        seed,
        "votes",
        prefer=0.0,
        skips_anchor=model.skips_anchor,
    )


@torch.no_grad()
def fit_text_weights(
    model: TextAwareModel, kg: KnowledgeGraph, *, max_triples: int | None = 5000, seed: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """Per relation and direction, the text channel's weight of :data:`TEXT_WEIGHTS` with the best filtered
    validation MRR for a gated fused model in its training layout (see the module docstring), and the validation
    MRRs of the fused score alone, the text part alone and combined. (A late model's: :func:`fit_late_weights`.)"""
    rep = model.entity_representations[0]
    if rep.late:
        raise ValueError("a late model's text weights are chosen with fit_late_weights")
    model.eval()
    fused, text = rep.parts(None)
    everything = slice(None)  # both parts answer with the same relation vectors
    base, extra = _part_scores(model, fused, everything), _part_scores(model, text, everything)
    return _fit(base, extra, TEXT_WEIGHTS, kg, max_triples, seed, "text", skips_anchor=model.skips_anchor)


@torch.no_grad()
def fit_similarity_weights(
    model: TextAwareModel,
    kg: KnowledgeGraph,
    mapping: torch.Tensor,
    *,
    max_triples: int | None = 5000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, float]]:
    """Per relation and direction, the similarity channel's weight of :data:`SIMILARITY_WEIGHTS`, 0 unless another
    one's gain in filtered validation MRR is significant (as :func:`_fit` with ``prefer``), for a text model in
    its training layout, the components from ``mapping``
    (:func:`kgemb.model.similarity_map`); and the validation MRRs of the model alone, with the largest weight and
    combined."""
    rep = model.entity_representations[0]
    if rep.mode != "text":
        raise ValueError(f"the similarity channel belongs to text models, not {rep.mode!r} ones")
    model.eval()

    def embedding(batch: torch.Tensor) -> torch.Tensor:
        return model.score_t(batch[:, :2], rules_off=True).float()

    return _fit(
        embedding,
        _cosine_scores(similarity_vectors(rep.text_mean, mapping)),
        SIMILARITY_WEIGHTS,
        kg,
        max_triples,
        seed,
        "similarity",
        prefer=0.0,  # a weight must earn its place: greedy per-relation weights overfit small validation sets
        skips_anchor=model.skips_anchor,
    )


class LateWeights(NamedTuple):
    """A late model's channel weights (:func:`fit_late_weights`), per oriented relation, and their summaries."""

    text: np.ndarray
    summary: dict[str, float]
    rules: np.ndarray | None
    rule_summary: dict[str, Any] | None
    similarity: np.ndarray | None  # the text part's similarity weights, None without a similarity map
    votes: np.ndarray | None = None  # the model's vote weights (its text part's, times the text weights)
    vote_summary: dict[str, float] | None = None  # the text part's validation MRR without and with its vote


@torch.no_grad()
def fit_late_weights(
    model: TextAwareModel,
    kg: KnowledgeGraph,
    rules: RuleSet | None = None,
    *,
    similarity: torch.Tensor | None = None,
    votes: TextVotes | None = None,
    max_triples: int | None = 5000,
    seed: int = 0,
) -> LateWeights:
    """A late model (in its training layout) as the sum of its structure model and its text model, each with the
    channels it would have alone. With a :func:`kgemb.model.similarity_map` (``similarity``) the text part gets its
    similarity channel first, its weights ``u[r]`` chosen on the text part alone as a text model's are
    (:func:`fit_similarity_weights`); the text part is then ``text + u·cos``. The rule weights ``a_s[r]`` of the
    structural part and ``a_t[r]`` of the text part are chosen apart (:data:`WEIGHTS`, as :func:`fit_weights` for a
    model of that mode), then the text weights ``v[r]`` (:data:`LATE_WEIGHTS`, see the module docstring) on
    ``structure + a_s·rule + v·(text + a_t·rule)``; the model's rule weights are then ``a_s + v·a_t``, or the
    weights of :data:`WEIGHTS` (or that) chosen per relation on the sum where cross-validation says that gains
    (:func:`_greedy_unless_it_overfits`). With ``votes`` (and rules) the text part gets its text-neighbour vote
    before ``v`` is chosen, weights ``x_t[r]`` chosen on the text part with its rules as a text model's are
    (:func:`fit_vote_weights`), and the model's vote weights are ``v·x_t``: chosen on the whole model, the vote's
    gain for the text part (WN18RR: 1.5 points) came to 0.3 points.

    Fitting one rule channel on the sum (stop 29) scored lower on test (WN18RR 0.527 against 0.534, Nations 0.815
    against 0.827 over three seeds); the sum alone scored lower on the medical example's graph (0.131 against 0.135),
    where cross-validation now takes the refit (0.134). Returns the text weights and their summary: the validation
    MRR of the structural part, of the text part (each with its rules when there are rules) and of the model
    (``valid_mrr_structure``, ``valid_mrr_text``, ``valid_mrr_combined``; with a similarity map also the text
    part's without its similarity channel, ``valid_mrr_text_alone``); and with ``rules`` the rule weights and their
    summary: each part's validation MRR without and with its rules, how many relations ``moved``, and the model's
    validation MRR without and with rules (``valid_mrr_embedding``, ``valid_mrr_combined``)."""
    model.eval()
    fit = functools.partial(_fit, skips_anchor=model.skips_anchor)
    rep = model.entity_representations[0]
    structure, text = rep.parts(None)
    half = model.relation_representations[0].shape[-1] // 2
    parts = {"structure": _part_scores(model, structure, slice(None, half))}
    parts["text"] = _part_scores(model, text, slice(half, None))
    u, extra = None, {}
    if similarity is not None:  # the text part's similarity channel, chosen as a text model's
        cosine = _cosine_scores(similarity_vectors(rep.text_mean, similarity))
        u, fitted = fit(
            parts["text"], cosine, SIMILARITY_WEIGHTS, kg, max_triples, seed, "similarity", prefer=0.0
        )
        extra = {"valid_mrr_text_alone": fitted["valid_mrr_embedding"]}
        parts["text"] = _plus(parts["text"], u, cosine)
    rule = None if rules is None else _rule_scores(rules)
    alpha, rule_summary, alone = {}, {}, {}
    for name, score in parts.items():  # each part's validation MRR, with the rules it would have alone
        if rule is None:
            alone[name] = fit(score, _nothing, (0.0,), kg, max_triples, seed, "alone")[1][
                "valid_mrr_embedding"
            ]
            continue
        alpha[name], fitted = fit(score, rule, WEIGHTS, kg, max_triples, seed, "rules")
        alone[name] = fitted["valid_mrr_combined"]
        rule_summary[f"valid_mrr_{name}"] = fitted["valid_mrr_embedding"]
        rule_summary[f"valid_mrr_{name}_with_rules"] = fitted["valid_mrr_combined"]
    with_rules = parts if rule is None else {name: _plus(s, alpha[name], rule) for name, s in parts.items()}
    x_t = vote_summary = vote = None
    if votes is not None and rules is not None:  # the text part's vote, chosen as a text model's
        vote = _vote_scores(votes, rules)
        x_t, vote_summary = fit(
            with_rules["text"], vote, VOTE_WEIGHTS, kg, max_triples, seed, "votes", prefer=0.0
        )
        with_rules["text"] = _plus(with_rules["text"], x_t, vote)
    weights, fitted = fit(
        with_rules["structure"], with_rules["text"], LATE_WEIGHTS, kg, max_triples, seed, "text", prefer=1.0
    )
    # the grid's ends (text weight 1/16 and 64) are not the parts alone: report the parts themselves
    summary = {f"valid_mrr_{name}": alone[name] for name in parts} | {
        "valid_mrr_combined": fitted["valid_mrr_combined"]
    }
    summary |= extra
    if rule is None:
        return LateWeights(weights, summary, None, None, u)
    # the two models' rule weights added, or chosen on the sum where that does not overfit
    start = alpha["structure"] + weights * alpha["text"]
    plain = _plus(parts["structure"], weights, parts["text"])
    if vote is not None:
        plain = _plus(plain, weights * x_t, vote)
    rule_weights, refit = fit(plain, rule, WEIGHTS, kg, max_triples, seed, "rules", prefer=start)
    rule_summary["moved"] = int((rule_weights != start).sum())
    rule_summary["valid_mrr_embedding"] = refit["valid_mrr_embedding"]  # weight 0: the model without rules
    rule_summary["valid_mrr_combined"] = refit["valid_mrr_combined"]
    vote_weights = None if x_t is None else (weights * x_t).astype(np.float32)
    return LateWeights(weights, summary, rule_weights, rule_summary, u, vote_weights, vote_summary)


def _part_scores(
    model: TextAwareModel, table: torch.Tensor, half: slice
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tail scores ``(b, num_entities)`` of entity vectors ``table`` with the ``half`` of the relation rows that
    scores them (a fused model's part; no channels)."""
    form = model.scoring_form
    if form != "dot":
        raise ValueError(f"the text channel needs a dot-product interaction, not {form}")
    candidates = to_real_layout(table)

    def score(batch: torch.Tensor) -> torch.Tensor:
        rel = model.relation_representations[0](indices=batch[:, 1])
        q = to_real_layout(query_vector(model.interaction, "tail", table[batch[:, 0]], rel[..., half]))
        return product_scores(form, q, candidates).float()

    return score


def _cosine_scores(components: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tail scores ``(b, num_entities)``: the cosines of the anchors' and the candidates' unit ``components``."""

    def cosine(batch: torch.Tensor) -> torch.Tensor:
        return components[batch[:, 0]] @ components.T

    return cosine


def _nothing(batch: torch.Tensor) -> torch.Tensor:
    """No extra score (for :func:`_fit` to measure a scorer alone)."""
    return torch.zeros(())


def _vote_scores(votes: TextVotes, rules: RuleSet) -> Callable[[torch.Tensor], torch.Tensor]:
    def vote(batch: torch.Tensor) -> torch.Tensor:
        return votes.scores(rules, batch[:, 0].numpy(), batch[:, 1].numpy())

    return vote


def _rule_scores(rules: RuleSet) -> Callable[[torch.Tensor], torch.Tensor]:
    def rule(batch: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(rules.tail_scores(batch[:, 0].numpy(), batch[:, 1].numpy()))

    return rule


def _plus(
    base: Callable[[torch.Tensor], torch.Tensor],
    weights: np.ndarray,
    extra: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``base + weights[r] * extra``, per oriented relation ``r`` of the batch."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32))

    def score(batch: torch.Tensor) -> torch.Tensor:
        return base(batch) + w[batch[:, 1]].unsqueeze(1) * extra(batch)

    return score


def _significant_best(reciprocal: torch.Tensor, start: int, z: float) -> int:
    """The column of ``reciprocal`` (queries × weights) with the largest mean gain over column ``start`` among those
    whose gain is more than ``z`` standard errors above 0 (paired, per query); ``start`` when none is."""
    if len(reciprocal) < 2:
        return start
    gain = reciprocal - reciprocal[:, [start]]
    mean, error = gain.mean(0), gain.std(0) / math.sqrt(len(gain))
    significant = mean > z * error
    return int(torch.argmax(torch.where(significant, mean, -1.0))) if significant.any() else start


def _greedy_unless_it_overfits(
    reciprocal: torch.Tensor, relation: torch.Tensor, r2: int, triples: int, seed: int, splits: int = 5
) -> np.ndarray:
    """Per oriented relation, the column of ``reciprocal`` (queries × columns, the last one each relation's own
    weight) with the largest mean over its queries (the own column on ties, and for a relation without queries),
    if that greedy choice gains over the own columns under two-fold cross-validation — chosen on one half of the
    validation triples, scored on the other, averaged over ``splits`` random halvings; else the own columns. The
    queries are the tail queries of ``triples`` validation triples, then their head queries
    (:func:`kgemb.objective.reciprocal_examples`).

    Chosen greedily, per-relation weights overfit validation sets of many small relations (Nations, Kinships, UMLS:
    cross-validated losses of 1–6 points), not those of a few large ones (the medical example's graph, 4 oriented
    relations: −0.2 to +0.2 averaged over the halvings)."""
    own = reciprocal.shape[1] - 1

    def greedy(rows: torch.Tensor) -> np.ndarray:
        choice = np.full(r2, own)
        for r in range(r2):
            mean = reciprocal[rows & (relation == r)].mean(0)
            if not bool(torch.isnan(mean).any()) and mean.max() > mean[own]:
                choice[r] = int(torch.argmax(mean))
        return choice

    everything = torch.ones(len(relation), dtype=torch.bool)
    chosen = greedy(everything)
    triple = torch.arange(len(relation)) % max(triples, 1)
    gain = torch.zeros(len(relation))
    for split in range(splits):
        half = torch.as_tensor(np.random.default_rng([seed, split]).permutation(triples) % 2)[triple].bool()
        for fit in (half, ~half):
            picked = torch.as_tensor(greedy(fit))[relation]
            rows = torch.nonzero(~fit).flatten()
            gain[rows] += (reciprocal[rows, picked[rows]] - reciprocal[rows, own]) / splits
    return chosen if float(gain.mean()) > 0 else np.full(r2, own)


def _fit(
    base: Callable[[torch.Tensor], torch.Tensor],
    extra: Callable[[torch.Tensor], torch.Tensor],
    grid: tuple[float, ...],
    kg: KnowledgeGraph,
    max_triples: int | None,
    seed: int,
    name: str,
    prefer: float | np.ndarray | None = None,
    skips_anchor: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Per oriented relation, the weight ``w`` of ``grid`` that maximises the filtered validation MRR of
    ``base(batch) + w * extra(batch)`` (both ``(b, num_entities)`` for tail queries ``batch``); first maximum, and
    ``grid[0]`` for a relation without validation queries. With ``prefer`` a weight must earn its place
    (:func:`_significant_best`): for a weight of ``grid``, first one weight for every relation, ``prefer`` unless
    another one's gain over it on all queries is significant (:data:`SIGNIFICANT_OVERALL`), then per relation that
    one unless another one's gain on the relation's queries is (:data:`SIGNIFICANT`); for one weight per oriented
    relation (an array), the largest validation mean per relation among ``grid`` and that weight, unless it
    overfits (:func:`_greedy_unless_it_overfits`). ``skips_anchor`` (the model's :meth:`TextAwareModel.skips_anchor`)
    says per query relation whether its anchor is left out, as every ranking of the model's leaves it out."""
    r2 = 2 * kg.num_relations
    valid = kg.triples("valid")
    if max_triples is not None and len(valid) > max_triples:
        valid = valid[np.sort(np.random.default_rng(seed).choice(len(valid), max_triples, replace=False))]
    queries = torch.from_numpy(reciprocal_examples(valid, kg.num_relations))
    known_all = reciprocal_examples(np.concatenate([kg.triples(s) for s in kg.splits]), kg.num_relations)
    known = KnownAnswers(known_all[:, 0], known_all[:, 1], known_all[:, 2], r2)
    query_ids = known.lookup(queries[:, 0].numpy(), queries[:, 1].numpy())
    own = None if prefer is None or np.isscalar(prefer) else torch.as_tensor(np.asarray(prefer, np.float32))
    weights = [torch.tensor(w) for w in grid] + ([] if own is None else [own])  # own: the last column
    reciprocal = torch.zeros(len(queries), len(weights))
    for start in range(0, len(queries), 256):
        batch = queries[start : start + 256]
        b, e = base(batch), extra(batch)
        rows, ents = known.pairs(query_ids[start : start + 256])
        other = ents != batch[rows, 2]
        blocked = torch.zeros_like(b, dtype=torch.bool)
        blocked[rows[other], ents[other]] = True
        # an irreflexive relation's anchor is no answer, as evaluation filters it
        if skips_anchor is not None:
            loops = torch.nonzero(skips_anchor(batch[:, 1]) & (batch[:, 0] != batch[:, 2]))
            blocked[loops[:, 0], batch[loops[:, 0], 0]] = True
        target = batch[:, 2:3]
        for j, w in enumerate(weights):
            w = w[batch[:, 1]].unsqueeze(1) if w.dim() else w
            s = (b + w * e).masked_fill(blocked, float("-inf"))
            true = s.gather(1, target)
            rank = (s > true).sum(1) + 0.5 * ((s == true).sum(1) - 1) + 1  # PyKEEN's realistic rank
            reciprocal[start : start + len(batch), j] = 1.0 / rank.float()
    relation = queries[:, 1]
    if own is not None:
        choice = _greedy_unless_it_overfits(reciprocal, relation, r2, len(valid), seed)
    else:
        overall = (
            0 if prefer is None else _significant_best(reciprocal, grid.index(prefer), SIGNIFICANT_OVERALL)
        )
        choice = np.full(r2, overall)
        for r in range(r2):
            rows = relation == r
            if prefer is None and rows.any():
                choice[r] = int(torch.argmax(reciprocal[rows].mean(0)))  # first maximum: the smaller weight
            elif prefer is not None:
                choice[r] = _significant_best(reciprocal[rows], overall, SIGNIFICANT)
    best = np.asarray(grid, dtype=np.float32)[np.minimum(choice, len(grid) - 1)]
    if own is not None:
        best = np.where(choice == len(grid), own.numpy(), best)
    chosen = torch.as_tensor(choice)[relation]
    summary = {
        "valid_mrr_embedding": float(reciprocal[:, 0].mean()),
        f"valid_mrr_{name}_first": float(reciprocal[:, len(grid) - 1].mean()),
        "valid_mrr_combined": float(reciprocal[torch.arange(len(queries)), chosen].mean()),
    }
    return best, summary
