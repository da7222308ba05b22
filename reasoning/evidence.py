"""Multi-evidence ranking over an ontology-shaped graph: which candidates (diseases) best explain a set of evidence
items (symptoms)? One implementation behind ``LinkPredictor.rank``, ``kgemb rank`` and (ported) the Neo4j
procedure ``kgemb.rank``.

Inputs, for one evidence relation ``r`` and the side being ranked (``x`` is a candidate, ``q`` an evidence item):

* ``A(x)``: the annotations of ``x`` — the entities ``e`` with a known link ``(x, r, e)`` (``target="head"``) or
  ``(e, r, x)`` (``target="tail"``); ``n(x) = |A(x)|``.
* ``anc(e)``: ``e`` and all its ancestors along the hierarchy relations (``is_a``, ``rdfs:subClassOf``,
  ``skos:broader`` by default; child -> parent), and ``P(x) = ∪_{a ∈ A(x)} anc(a)``: the annotations propagated
  to their ancestors (the true-path rule: a disease with "focal seizure" has "seizure").
* ``IC(t) = ln((N + 1) / (f(t) + 1))``: the information content of term ``t``, where ``f(t)`` is the number of
  annotated entities ``x`` with ``t ∈ P(x)`` and ``N`` the number of annotated entities. A term that every
  candidate carries says nothing (IC 0); a rare one says much.

The score of candidate ``x`` for evidence items ``q_1..q_m`` (each with its relation):

    s_i(x)  = IC(q_i)                                      if q_i ∈ P(x)
            = lam * max { IC(t) : t ∈ anc(q_i) ∩ P(x) }    otherwise (0 when nothing is shared)
    c(x)    = min(1, m / n(x)) ** beta                      (1 when n(x) = 0)
    l_i(x)  = ln( eps + (1 - eps) * c(x) * exp(s_i(x)) ) + alpha * ln p_i(x)
    L(x)    = sum_i l_i(x)
    P(x)    = exp(L(x)) / sum_{y ∈ candidates} exp(L(y))

``s_i`` is the log likelihood ratio of the item under "x explains it" against the background: ``IC(q)`` when
``x`` carries ``q`` (a known link: *exact*; or ``q`` is a vaguer term of one of ``x``'s annotations: *hierarchy*),
a share ``lam`` of the information content of the most informative common ancestor when ``q`` is more specific
than, or a sibling of, what ``x`` carries (*hierarchy*: semantic closeness, discounted because ``x`` is not known
to show ``q`` itself), 0 when only the root or nothing is shared (*unmatched*). ``c(x)`` is the
share of ``x``'s annotations a patient with ``m`` findings would show: an entity with hundreds of annotations
explains any finding by chance, so its matches count a little less. ``eps`` is the chance that an item is noise:
it bounds what one item can cost (never below ``ln eps``), so one irrelevant symptom does not remove the right
answer. ``p_i(x)`` is the model's calibrated probability of the evidence link; ``alpha`` (its weight) is chosen on
the validation split, and 0 ranks by the ontology alone. ``P(x)`` is normalised over the candidates (uniform
prior). Order is by ``L`` (then the candidate's id); ``LinkPredictor`` never fits ``alpha = 0``, so the model
orders candidates whose evidence in the graph is the same and the order is strict wherever the evidence differs.
With several evidence relations, ``n(x)`` counts the annotations of all of them.

:func:`log_likelihood` is that formula as a pure function of arrays (the port's reference);
:class:`EvidenceIndex` builds its inputs from a :class:`~kgemb.KnowledgeGraph`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kgemb.errors import InputError

# chosen on simulated patients of a seed that benchmarks/diagnosis.py does not report (7); the optimum is broad
EPS = 0.3  # chance that one evidence item is noise
BETA = 0.2  # how much a candidate's number of annotations discounts its matches
LAM = 0.5  # the share of a common ancestor's information content a more specific or sibling term earns
# local names (after '#', '/' or ':'; case, spaces and underscores ignored) of the hierarchy relations found
# automatically: child -> parent
HIERARCHY_NAMES = ("isa", "subclassof", "broader")
UNMATCHED, HIERARCHY, EXACT = 0, 1, 2
MATCH_NAMES = {UNMATCHED: "unmatched", HIERARCHY: "hierarchy", EXACT: "exact"}


@dataclass
class ItemEvidence:
    """One evidence item's inputs to :func:`log_likelihood`: its ancestors (itself included) with their
    information content and the candidates that carry each (propagated), and the candidates that have the
    item itself as a direct annotation (the exact matches)."""

    term: int  # q (-1 for an entity not in the graph)
    terms: np.ndarray  # (a,) term ids, anc(q) including q
    ic: np.ndarray  # (a,) IC of each term
    carriers: list[np.ndarray]  # per term: candidate ids x with the term in P(x)
    direct: np.ndarray  # candidate ids x with q in A(x)


@dataclass
class Scores:
    """:func:`log_likelihood`'s output over ``n`` candidates and ``m`` items."""

    total: np.ndarray  # (n,) L(x)
    per_item: np.ndarray  # (m, n) l_i(x)
    match: np.ndarray  # (m, n) s_i(x)
    kind: np.ndarray  # (m, n) int8: UNMATCHED, HIERARCHY or EXACT
    via: np.ndarray  # (m, n) the term that matched (the most informative common ancestor), -1 if none


def log_likelihood(
    items: Sequence[ItemEvidence],
    num_candidates: int,
    annotation_counts: np.ndarray,
    model_log_probability: np.ndarray | None = None,
    *,
    alpha: float = 0.0,
    eps: float = EPS,
    beta: float = BETA,
    lam: float = LAM,
) -> Scores:
    """The module docstring's formula for every candidate ``0..num_candidates-1``: ``L(x)`` and each item's
    ``l_i(x)``, match value ``s_i(x)``, kind of match and matching term. ``model_log_probability`` is ``(m, n)``
    ``ln p_i(x)`` (used only when ``alpha`` is not 0)."""
    m, n = len(items), num_candidates
    counts = np.asarray(annotation_counts, dtype=np.float64)
    coverage = np.ones(n)
    has = counts > 0
    coverage[has] = np.minimum(1.0, m / counts[has]) ** beta
    match = np.zeros((m, n))
    kind = np.zeros((m, n), dtype=np.int8)
    via = np.full((m, n), -1, dtype=np.int64)
    for i, item in enumerate(items):
        for j in np.argsort(item.ic, kind="stable"):  # ascending IC: the most informative ancestor wins
            holders = item.carriers[j]
            if len(holders) == 0 or item.terms[j] == item.term:
                continue
            match[i, holders] = lam * item.ic[j]
            via[i, holders] = item.terms[j]
            kind[i, holders] = HIERARCHY
        own = np.flatnonzero(item.terms == item.term)
        if len(own):  # x carries q itself (exact, or through a more specific annotation): full credit
            holders = item.carriers[int(own[0])]
            match[i, holders] = item.ic[int(own[0])]
            via[i, holders] = item.term
            kind[i, holders] = HIERARCHY
        kind[i, match[i] <= 0.0] = UNMATCHED
        via[i, match[i] <= 0.0] = -1
        kind[i, item.direct] = EXACT
    per_item = np.log(eps + (1.0 - eps) * coverage[None, :] * np.exp(match))
    if alpha and model_log_probability is not None:
        per_item = per_item + alpha * np.asarray(model_log_probability, dtype=np.float64)
    return Scores(per_item.sum(axis=0), per_item, match, kind, via)


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


def order(total: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Candidate ids best first: by ``L`` descending, then by id; candidates not allowed left out."""
    ids = np.arange(len(total)) if allowed is None else np.flatnonzero(allowed)
    return ids[np.lexsort((ids, -np.asarray(total)[ids]))]


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
        self._ancestors: dict[int, np.ndarray] = {}

    def parents(self, e: int) -> np.ndarray:
        return self._parents[self._ptr[e] : self._ptr[e + 1]]

    def ancestors(self, e: int) -> np.ndarray:
        """``anc(e)``: ``e`` and every ancestor, sorted (cached; cycles are tolerated)."""
        found = self._ancestors.get(e)
        if found is None:
            seen = {e}
            frontier = [e]
            while frontier:
                node = frontier.pop()
                for p in self.parents(node).tolist():
                    if p not in seen:
                        seen.add(p)
                        frontier.append(p)
            found = np.array(sorted(seen), dtype=np.int64)
            self._ancestors[e] = found
        return found


class Annotations:
    """For one relation and side: who carries which term, directly and propagated, and each term's IC."""

    def __init__(self, triples: np.ndarray, relation: int, target: str, hierarchy: Hierarchy) -> None:
        triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        links = triples[triples[:, 1] == relation]
        holder, term = (links[:, 0], links[:, 2]) if target == "head" else (links[:, 2], links[:, 0])
        n = hierarchy.num_entities
        self.num_entities = n
        self.counts = np.bincount(holder, minlength=n).astype(np.int64)
        self._direct_ptr, self._direct = _csr(term, holder, n)
        pairs_h: list[np.ndarray] = []
        pairs_t: list[np.ndarray] = []
        for t in np.unique(term).tolist():
            holders = self._direct[self._direct_ptr[t] : self._direct_ptr[t + 1]]
            anc = hierarchy.ancestors(t)
            pairs_h.append(np.repeat(holders, len(anc)))
            pairs_t.append(np.tile(anc, len(holders)))
        if pairs_h:
            both = np.unique(np.stack([np.concatenate(pairs_t), np.concatenate(pairs_h)], axis=1), axis=0)
        else:
            both = np.zeros((0, 2), dtype=np.int64)
        self._prop_ptr, self._prop = _csr(both[:, 0], both[:, 1], n)
        self.num_annotated = int((self.counts > 0).sum())
        frequency = np.diff(self._prop_ptr)
        self.ic = np.log((self.num_annotated + 1.0) / (frequency + 1.0))
        self.hierarchy = hierarchy

    def direct(self, term: int) -> np.ndarray:
        return self._direct[self._direct_ptr[term] : self._direct_ptr[term + 1]]

    def carriers(self, term: int) -> np.ndarray:
        return self._prop[self._prop_ptr[term] : self._prop_ptr[term + 1]]

    def item(self, term: int | None) -> ItemEvidence:
        """The inputs of :func:`log_likelihood` for evidence ``term`` (``None``: an entity not in the graph)."""
        if term is None:
            empty = np.zeros(0, dtype=np.int64)
            return ItemEvidence(-1, empty, np.zeros(0), [], empty)
        anc = self.hierarchy.ancestors(term)
        return ItemEvidence(
            term, anc, self.ic[anc], [self.carriers(t) for t in anc.tolist()], self.direct(term)
        )


class EvidenceIndex:
    """The annotations of a graph per (relation, side), built on first use, with its hierarchy."""

    def __init__(
        self, kg, hierarchy: Sequence[str] | None = None, triples: np.ndarray | None = None
    ) -> None:  # kg: KnowledgeGraph; triples: the known links (default: every split)
        self.kg = kg
        self.triples = kg.all_triples() if triples is None else np.asarray(triples)
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
            self._annotations[key] = Annotations(self.triples, relation, target, self.hierarchy)
        return self._annotations[key]

    def scores(
        self,
        evidence: Sequence[tuple[int | None, int]],
        target: str,
        model_log_probability: np.ndarray | None = None,
        *,
        alpha: float = 0.0,
        eps: float = EPS,
        beta: float = BETA,
        lam: float = LAM,
    ) -> Scores:
        """:func:`log_likelihood` over every entity for ``(entity id or None, relation id)`` evidence items.
        The annotation counts ``n(x)`` are summed over the relations of the evidence."""
        items = []
        counts = np.zeros(self.kg.num_entities, dtype=np.int64)
        for term, relation in evidence:
            ann = self.annotations(relation, target)
            items.append(ann.item(term))
        for relation in sorted({r for _, r in evidence}):
            counts += self.annotations(relation, target).counts
        return log_likelihood(
            items,
            self.kg.num_entities,
            counts,
            model_log_probability,
            alpha=alpha,
            eps=eps,
            beta=beta,
            lam=lam,
        )


def describe(kind: int) -> str:
    """``"exact"``, ``"hierarchy"`` or ``"unmatched"``."""
    return MATCH_NAMES[int(kind)]
