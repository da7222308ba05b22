"""Multi-evidence ranking over an ontology-shaped graph: which candidates (diseases) best explain a set of evidence
items (symptoms)? One implementation behind ``LinkPredictor.rank``, ``kgemb rank`` and (ported) the Neo4j
procedure ``kgemb.rank``.

Inputs, for one evidence relation ``r`` and the side being ranked (``x`` is a candidate, ``q`` an evidence item):

* ``A(x)``: the annotations of ``x`` — the entities ``e`` with a known link ``(x, r, e)`` (``target="head"``) or
  ``(e, r, x)`` (``target="tail"``); ``n(x) = |A(x)|``.
* ``anc(e)``: ``e`` and all its ancestors along the hierarchy relations (``is_a``, ``rdfs:subClassOf``,
  ``skos:broader`` by default; child -> parent), ``d(e, t)`` the number of steps from ``e`` up to ``t``, and
  ``P(x) = ∪_{a ∈ A(x)} anc(a)``: the annotations propagated to their ancestors (the true-path rule: a disease with
  "focal seizure" has "seizure").
* ``IC(t) = ln((N + 1) / (f(t) + 1))``: the information content of term ``t``, where ``f(t)`` is the number of
  annotated entities ``x`` with ``t ∈ P(x)`` and ``N`` the number of annotated entities.

The model is generative: a finding of ``x`` is one of its annotations ``a``, drawn uniformly, and reported as ``a``
itself or, with probability ``rho``, as one of ``a``'s ancestors (vaguer terms; nearer ones likelier, by
``gamma ** d``); or it is noise, with probability ``eps``:

    w(q | a) = 1 - rho                                          q = a (1 when a has no ancestors)
             = rho * gamma ** d(a, q) / sum_{t ∈ anc(a), t ≠ a} gamma ** d(a, t)   q a strict ancestor of a
    p(q | x) = sum_{a ∈ A(x)} w(q | a) / n(x)
    b(q)     = mean of p(q | x) over the annotated entities (the background: how likely q is anyway)
    R_i(x)   = p(q_i | x) / b(q_i)                              if q_i ∈ P(x)    (x explains q_i)
             = kappa * max { IC(t) / IC(q_i) : t ∈ anc(q_i) ∩ P(x), t ≠ q_i }   otherwise (0 when none)
    l_i(x)   = ln( eps + (1 - eps) * R_i(x) ) + alpha * ln p_i(x)
    L(x)     = sum_i l_i(x),     P(x) = exp(L(x)) / sum_{y ∈ candidates} exp(L(y))

``R_i`` is the likelihood ratio of the item under "x explains it" against the background. Specificity follows
from it: a rare term has a small background and says much; a candidate with hundreds of annotations explains
any one finding with a small ``p(q | x)``, so its matches count less. A vaguer term than an annotation counts
through ``w`` (*hierarchy*, via the term itself); a more specific or sibling term earns the share ``kappa`` of a
neutral item by how much of its information the most informative common ancestor holds (*hierarchy*, via that
ancestor: semantic closeness, bounded because ``x`` is not known to show it); nothing shared is *unmatched*
(``ln eps``: one irrelevant symptom costs a bounded amount and does not remove the right answer). ``p_i(x)`` is
the model's calibrated probability of the evidence link; ``alpha`` (its weight) is chosen on the validation split,
and 0 ranks by the ontology alone. ``P(x)`` is normalised over the candidates (uniform prior). Order is by ``L``
(then the candidate's id); ``LinkPredictor`` never fits ``alpha = 0``, so the model orders candidates whose
evidence in the graph is the same, and the order is strict wherever the evidence differs.

:func:`log_likelihood` is that formula as a pure function of arrays (the port's reference);
:class:`EvidenceIndex` builds its inputs from a :class:`~kgemb.KnowledgeGraph`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from kgemb.errors import InputError

# chosen on simulated patients of a seed that benchmarks/diagnosis.py does not report (7); the optimum is broad
EPS = 0.05  # chance that one evidence item is noise
RHO = 0.3  # chance that a finding is reported at a vaguer term than the annotation
GAMMA = 0.5  # how much likelier each step nearer the annotation is, among the vaguer terms
KAPPA = 0.3  # the share of a neutral item that a more specific or sibling term earns, by closeness
# local names (after '#', '/' or ':'; case, spaces and underscores ignored) of the hierarchy relations found
# automatically: child -> parent
HIERARCHY_NAMES = ("isa", "subclassof", "broader")
UNMATCHED, HIERARCHY, EXACT = 0, 1, 2
MATCH_NAMES = {UNMATCHED: "unmatched", HIERARCHY: "hierarchy", EXACT: "exact"}


@dataclass
class ItemEvidence:
    """One evidence item's inputs to :func:`log_likelihood`: its ancestors (itself included) with their
    information content and the candidates that carry each (propagated), the candidates that have the item itself
    as a direct annotation (the exact matches), ``p(q | x)`` for the carriers of ``q`` itself and ``b(q)``."""

    term: int  # q (-1 for an entity not in the graph)
    terms: np.ndarray  # (a,) term ids, anc(q) including q
    ic: np.ndarray  # (a,) IC of each term
    carriers: list[np.ndarray]  # per term: candidate ids x with the term in P(x)
    direct: np.ndarray  # candidate ids x with q in A(x)
    probability: np.ndarray  # p(q | x) for the carriers of q itself, aligned with them
    background: float  # b(q)
    # ratios(self, kappa) by kappa: a ranking asks for them twice (totals, then log_likelihood of its answers)
    _ratios: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )


@dataclass
class Scores:
    """:func:`log_likelihood`'s output over ``n`` candidates and ``m`` items."""

    total: np.ndarray  # (n,) L(x)
    per_item: np.ndarray  # (m, n) l_i(x)
    ratio: np.ndarray  # (m, n) R_i(x)
    kind: np.ndarray  # (m, n) int8: UNMATCHED, HIERARCHY or EXACT
    via: np.ndarray  # (m, n) the term that matched (q itself, or the common ancestor), -1 if none


def ratios(item: ItemEvidence, kappa: float = KAPPA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates item ``q`` says something about, sorted, with ``R(x) > 0`` and the matching term: work
    proportional to the annotations it touches (every other candidate has ``R = 0``); computed once per item
    and ``kappa`` (the arrays are shared: read them, do not write them)."""
    if kappa not in item._ratios:
        item._ratios[kappa] = _ratios(item, kappa)
    return item._ratios[kappa]


def _ratios(item: ItemEvidence, kappa: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids: list[np.ndarray] = []
    values: list[np.ndarray] = []
    terms: list[np.ndarray] = []
    own = np.flatnonzero(item.terms == item.term)
    own_ic = float(item.ic[own[0]]) if len(own) else 0.0
    if own_ic > 0:  # ascending IC: a later (more informative) common ancestor overrides an earlier one
        for j in np.argsort(item.ic, kind="stable").tolist():
            holders = item.carriers[j]
            if len(holders) and item.terms[j] != item.term and item.ic[j] > 0:
                ids.append(holders)
                values.append(np.full(len(holders), kappa * item.ic[j] / own_ic))
                terms.append(np.full(len(holders), item.terms[j], dtype=np.int64))
    if len(own) and item.background > 0:  # x carries q (exact, or through a more specific annotation)
        holders = item.carriers[int(own[0])]
        ids.append(holders)
        values.append(item.probability / item.background)
        terms.append(np.full(len(holders), item.term, dtype=np.int64))
    if not ids:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(0), empty
    idx, val, via = (np.concatenate(x)[::-1] for x in (ids, values, terms))  # the last assignment wins
    idx, first = np.unique(idx, return_index=True)
    keep = val[first] > 0
    return idx[keep].astype(np.int64), val[first][keep], via[first][keep]


def totals(
    items: Sequence[ItemEvidence], num_candidates: int, *, eps: float = EPS, kappa: float = KAPPA
) -> np.ndarray:
    """The ontology part of ``L(x)`` (``sum_i ln(eps + (1 - eps) R_i(x))``) for every candidate, from
    :func:`ratios`: ``m ln eps`` plus what each item adds where it says something."""
    unmatched = np.log(eps)
    total = np.full(num_candidates, len(items) * unmatched)
    for item in items:
        idx, val, _ = ratios(item, kappa)
        total[idx] += np.log(eps + (1.0 - eps) * val) - unmatched
    return total


def log_likelihood(
    items: Sequence[ItemEvidence],
    num_candidates: int,
    model_log_probability: np.ndarray | None = None,
    *,
    alpha: float = 0.0,
    eps: float = EPS,
    kappa: float = KAPPA,
    candidates: np.ndarray | None = None,
) -> Scores:
    """The module docstring's formula in full for the ``candidates`` (default: every candidate
    ``0..num_candidates-1``, in that order): ``L(x)`` and each item's ``l_i(x)``, likelihood ratio ``R_i(x)``,
    kind of match and matching term. ``model_log_probability`` is ``(m, len(candidates))`` ``ln p_i(x)`` (used
    only when ``alpha`` is not 0)."""
    cols = np.arange(num_candidates) if candidates is None else np.asarray(candidates, dtype=np.int64)
    m, n = len(items), len(cols)
    by_id = np.argsort(cols, kind="stable")
    sorted_cols = cols[by_id]

    def columns(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of ``ids`` are among the candidates, and their columns."""
        at = np.minimum(np.searchsorted(sorted_cols, ids), max(n - 1, 0))
        hit = (sorted_cols[at] == ids) if n else np.zeros(len(ids), dtype=bool)
        return hit, by_id[at[hit]]

    ratio = np.zeros((m, n))
    kind = np.zeros((m, n), dtype=np.int8)
    via = np.full((m, n), -1, dtype=np.int64)
    for i, item in enumerate(items):
        idx, val, term = ratios(item, kappa)
        hit, col = columns(idx)
        ratio[i, col], via[i, col], kind[i, col] = val[hit], term[hit], HIERARCHY
        kind[i, columns(np.asarray(item.direct, dtype=np.int64))[1]] = EXACT
    per_item = np.log(eps + (1.0 - eps) * ratio)
    if alpha and model_log_probability is not None:
        per_item = per_item + alpha * np.asarray(model_log_probability, dtype=np.float64)
    return Scores(per_item.sum(axis=0), per_item, ratio, kind, via)


def normalise(total: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """``P(x) = exp(L(x)) / sum_y exp(L(y))`` over the allowed candidates (0 elsewhere)."""
    values = np.asarray(total, dtype=np.float64).copy()
    if allowed is not None:
        values[~allowed] = -np.inf
    top = values.max()
    if not np.isfinite(top):
        return np.zeros_like(values)
    weights = np.exp(values - top)
    return weights / weights.sum()


def order(total: np.ndarray, allowed: np.ndarray | None = None, k: int | None = None) -> np.ndarray:
    """Candidate ids best first: by ``L`` descending, then by id; candidates not allowed left out; the first
    ``k`` only when given (selected in linear time, then sorted)."""
    total = np.asarray(total)
    ids = np.arange(len(total)) if allowed is None else np.flatnonzero(allowed)
    values = total[ids]
    if k is not None and 0 < k < len(ids):
        kth = torch.topk(torch.from_numpy(values), k, sorted=False).values.min().item()  # ~4x np.partition
        keep = values >= kth  # ties at the k-th value all stay, so the id breaks them as in the full order
        ids, values = ids[keep], values[keep]
    ranked = ids[np.lexsort((ids, -values))]
    return ranked if k is None else ranked[:k]


# ---------------------------------------------------------------------- inputs from a graph
def _local_name(text: str) -> str:
    tail = re.split(r"[#/:]", text.rstrip("/#"))[-1]
    return re.sub(r"[\s_\-]", "", tail).lower()


def hierarchy_relations(kg, names: Sequence[str] | None = None) -> list[int]:  # kg: KnowledgeGraph
    """Relation ids of the hierarchy: those named in ``names`` (keys or labels), or else every relation whose
    local name is ``is_a``, ``subClassOf`` or ``broader`` (any case, with or without ``_``)."""
    if names is not None:
        return sorted({kg.relation_id(name) for name in names})
    found = []
    for r, key in enumerate(kg.relations):
        if _local_name(key) in HIERARCHY_NAMES or _local_name(kg.relation_text(r)) in HIERARCHY_NAMES:
            found.append(r)
    return found


def _csr(keys: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    order_ = np.lexsort((values, keys))
    keys, values = keys[order_], values[order_]
    pointers = np.zeros(size + 1, dtype=np.int64)
    np.add.at(pointers, keys + 1, 1)
    return np.cumsum(pointers), values


class Hierarchy:
    """Parents and ancestors (reflexive, transitive) along the hierarchy relations of a triple array."""

    def __init__(self, triples: np.ndarray, relations: Sequence[int], num_entities: int) -> None:
        triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        edges = triples[np.isin(triples[:, 1], np.asarray(list(relations), dtype=np.int64))]
        edges = edges[edges[:, 0] != edges[:, 2]]
        self.relations = list(relations)
        self.num_entities = num_entities
        self._ptr, self._parents = _csr(edges[:, 0], edges[:, 2], num_entities)
        self._ancestors: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def parents(self, e: int) -> np.ndarray:
        return self._parents[self._ptr[e] : self._ptr[e + 1]]

    def ancestors(self, e: int) -> np.ndarray:
        """``anc(e)``: ``e`` and every ancestor, sorted (cached; cycles are tolerated)."""
        return self.distances(e)[0]

    def distances(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        """``anc(e)`` sorted, and ``d(e, t)`` for each: the fewest steps up from ``e`` (0 for ``e``)."""
        found = self._ancestors.get(e)
        if found is None:
            steps = {e: 0}
            frontier = [e]
            while frontier:  # breadth first: the first visit is the shortest path
                above = []
                for node in frontier:
                    for p in self.parents(node).tolist():
                        if p not in steps:
                            steps[p] = steps[node] + 1
                            above.append(p)
                frontier = above
            ids = np.array(sorted(steps), dtype=np.int64)
            found = (ids, np.array([steps[t] for t in ids.tolist()], dtype=np.int64))
            self._ancestors[e] = found
        return found


class Annotations:
    """For one relation and side: who carries which term, directly and propagated, each term's IC, and the
    generative model's ``p(q | x)`` and ``b(q)``."""

    def __init__(
        self,
        triples: np.ndarray,
        relation: int,
        target: str,
        hierarchy: Hierarchy,
        *,
        rho: float = RHO,
        gamma: float = GAMMA,
    ) -> None:
        triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        links = triples[triples[:, 1] == relation]
        holder, term = (links[:, 0], links[:, 2]) if target == "head" else (links[:, 2], links[:, 0])
        n = hierarchy.num_entities
        self.num_entities = n
        self.counts = np.bincount(holder, minlength=n).astype(np.int64)
        self._direct_ptr, self._direct = _csr(term, holder, n)
        pair_t: list[np.ndarray] = []
        pair_h: list[np.ndarray] = []
        pair_w: list[np.ndarray] = []
        for t in np.unique(term).tolist():
            holders = self._direct[self._direct_ptr[t] : self._direct_ptr[t + 1]]
            anc, steps = hierarchy.distances(t)
            w = np.where(steps > 0, gamma ** steps.astype(np.float64), 0.0)
            if w.sum() > 0:  # w(q | a): the annotation itself, or a vaguer term nearer likelier
                w = rho * w / w.sum() + (1.0 - rho) * (steps == 0)
            else:
                w = (steps == 0).astype(np.float64)
            pair_t.append(np.tile(anc, len(holders)))
            pair_h.append(np.repeat(holders, len(anc)))
            pair_w.append(np.tile(w, len(holders)))
        if pair_t:
            keys = np.concatenate(pair_t) * np.int64(n) + np.concatenate(pair_h)
            keys, where = np.unique(keys, return_inverse=True)
            weight = np.bincount(where, weights=np.concatenate(pair_w), minlength=len(keys))
        else:
            keys, weight = np.zeros(0, dtype=np.int64), np.zeros(0)
        carrier_term, carrier = keys // n, keys % n  # sorted by (term, holder), as _csr sorts
        self._prop_ptr, self._prop = _csr(carrier_term, carrier, n)
        self._probability = weight / np.maximum(self.counts[carrier], 1)  # p(q | x), aligned with _prop
        self.num_annotated = int((self.counts > 0).sum())
        self.background = np.bincount(carrier_term, weights=self._probability, minlength=n) / max(
            self.num_annotated, 1
        )  # b(q)
        frequency = np.diff(self._prop_ptr)
        self.ic = np.log((self.num_annotated + 1.0) / (frequency + 1.0))
        self.hierarchy = hierarchy

    def direct(self, term: int) -> np.ndarray:
        return self._direct[self._direct_ptr[term] : self._direct_ptr[term + 1]]

    def carriers(self, term: int) -> np.ndarray:
        return self._prop[self._prop_ptr[term] : self._prop_ptr[term + 1]]

    def probability(self, term: int) -> np.ndarray:
        """``p(term | x)`` for the carriers of ``term``, aligned with :meth:`carriers`."""
        return self._probability[self._prop_ptr[term] : self._prop_ptr[term + 1]]

    def item(self, term: int | None) -> ItemEvidence:
        """The inputs of :func:`log_likelihood` for evidence ``term`` (``None``: an entity not in the graph)."""
        if term is None:
            empty = np.zeros(0, dtype=np.int64)
            return ItemEvidence(-1, empty, np.zeros(0), [], empty, np.zeros(0), 0.0)
        anc = self.hierarchy.ancestors(term)
        return ItemEvidence(
            term,
            anc,
            self.ic[anc],
            [self.carriers(t) for t in anc.tolist()],
            self.direct(term),
            self.probability(term),
            float(self.background[term]),
        )


class EvidenceIndex:
    """The annotations of a graph per (relation, side), built on first use, with its hierarchy; ``rho`` and
    ``gamma`` are the generative model's (see the module docstring)."""

    def __init__(
        self,
        kg,
        hierarchy: Sequence[str] | None = None,
        triples: np.ndarray | None = None,
        *,
        rho: float = RHO,
        gamma: float = GAMMA,
    ) -> None:  # kg: KnowledgeGraph; triples: the known links (default: every split)
        self.kg = kg
        self.triples = kg.all_triples() if triples is None else np.asarray(triples)
        self.rho, self.gamma = rho, gamma
        try:
            rels = hierarchy_relations(kg, hierarchy)
        except Exception as exc:  # an unknown relation name
            raise InputError(
                f"hierarchy relation(s) {list(hierarchy or [])} not found in the graph ({exc}); "
                "give relation keys or labels of the graph, or leave hierarchy unset to find is_a, "
                "rdfs:subClassOf and skos:broader automatically"
            ) from None
        self.hierarchy = Hierarchy(self.triples, rels, kg.num_entities)
        self._annotations: dict[tuple[int, str], Annotations] = {}

    def annotations(self, relation: int, target: str) -> Annotations:
        key = (relation, target)
        if key not in self._annotations:
            self._annotations[key] = Annotations(
                self.triples, relation, target, self.hierarchy, rho=self.rho, gamma=self.gamma
            )
        return self._annotations[key]

    def items(self, evidence: Sequence[tuple[int | None, int]], target: str) -> list[ItemEvidence]:
        """The inputs of :func:`log_likelihood` for ``(entity id or None, relation id)`` evidence items, each read
        from the annotations of its own relation."""
        return [self.annotations(relation, target).item(term) for term, relation in evidence]

    def scores(
        self,
        evidence: Sequence[tuple[int | None, int]],
        target: str,
        model_log_probability: np.ndarray | None = None,
        *,
        alpha: float = 0.0,
        eps: float = EPS,
        kappa: float = KAPPA,
    ) -> Scores:
        """:func:`log_likelihood` over every entity for ``(entity id or None, relation id)`` evidence items."""
        return log_likelihood(
            self.items(evidence, target),
            self.kg.num_entities,
            model_log_probability,
            alpha=alpha,
            eps=eps,
            kappa=kappa,
        )


def describe(kind: int) -> str:
    """``"exact"``, ``"hierarchy"`` or ``"unmatched"``."""
    return MATCH_NAMES[int(kind)]
