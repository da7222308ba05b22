"""Rules mined from the training graph (AnyBURL/AMIE style) and the rule score of a query.

The miner works on the reciprocal graph: relation ids ``0..R-1`` are the forward relations and ``r + R`` is the
inverse of ``r``, so a head query ``(?, r, t)`` is the tail query ``(t, r + R, ?)``. Rules are mined for all
``2R`` head relations, of five kinds (``X`` is the query's anchor, ``Y`` the predicted entity):

* ``path1``  ``h(X,Y) <= b(X,Y)``                  inverse, symmetry (``b = h + R``) and equivalence rules
* ``path2``  ``h(X,Y) <= b(X,Z), u(Z,Y)``          closed paths of length 2, every direction combination
* ``path3``  ``h(X,Y) <= b(X,A), u(A,B), v(B,Y)``  length 3, when the graph's 3-edge walks fit ``max_walks``
* ``const``  ``h(X,c) <= b(X,d)``                  AnyBURL's acyclic rules with constants
* ``any``    ``h(X,c) <= b(X,Z)``                  acyclic rules with a dangling variable

A rule's confidence is AnyBURL's pessimistic ``support / (body support + pc)`` over the training graph, with
distinct variables bound to distinct entities (``X != Y``; in path3 also ``A != Y`` and ``B != X``, found by
subtracting the walks through 2-cycles from the walk counts), in mining and in scoring alike. The score of a
candidate aggregates the confidences of the rules that predict it (``maxplus``: the best rule, ties broken by the
next two; or ``noisy-or``; or ``max``).
Grounding is batched with scipy.sparse: per relation a CSR adjacency ``A_b``, and a length-2 rule's candidates
for a batch of anchors are the non-zeros of ``A_b[anchors] @ A_u`` (all rules of a head in one product).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from kgemb.errors import InputError
from kgemb.files import file_sha256, write_atomic

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph

FORMAT = "kgemb.rules/1"
RULES_JSON = "rules.json"
RULES_ARRAYS = "rules.npz"
KINDS: tuple[str, ...] = ("path1", "path2", "path3", "const", "any")
PATH1, PATH2, PATH3, CONST, ANY = range(5)
COLUMNS: tuple[str, ...] = ("head", "kind", "b", "u", "v", "d", "c")  # the rule table; -1 where unused
AGGREGATES: tuple[str, ...] = ("maxplus", "noisy-or", "max")
_TIE = 1e-3  # maxplus: weight of the second-best rule (and its square for the third) below the best one
_BITS, _SCALE = 25, 1 << 24  # maxplus/max: a confidence packed in the low bits of a sort key
#: tail_scores fires the rules for this many (query, candidate) cells at first, then for as many queries as keep a
#: chunk near FIRINGS_PER_CHUNK firings: on the medical example's 33k-triple graph (1.2M rules, a phenotype's head
#: query fires ~50k times) a batch of 1,024 queries at once took 14 GB
FIRST_CHUNK_CELLS = 1 << 17
FIRINGS_PER_CHUNK = 1 << 23


@dataclass(frozen=True)
class MiningOptions:
    """What :meth:`RuleSet.mine` keeps: rules with at least ``min_support`` correct predictions and a confidence
    of at least ``min_confidence`` after the pessimistic correction ``pc``."""

    min_support: int = 2
    min_confidence: float = 0.001
    pc: float = 5.0
    constants: bool = True
    max_walks: int = 30_000_000  # path3 rules are mined when the graph has at most this many 3-edge walks
    const_min_support: int = 2
    const_min_confidence: float = 0.001  # chosen on WN18RR valid (0.4717 vs 0.4700 at 0.01)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class RuleSet:
    """Mined rules plus the training graph they ground on; see the module docstring."""

    def __init__(
        self,
        triples: np.ndarray,
        num_entities: int,
        num_relations: int,
        rules: np.ndarray,
        support: np.ndarray,
        body_support: np.ndarray,
        confidence: np.ndarray,
        *,
        relation_names: list[str] | None = None,
        options: dict[str, Any] | None = None,
        aggregate: str = "maxplus",
        stats: dict[str, Any] | None = None,
    ) -> None:
        """``rules`` is an ``(n, 7)`` int64 table (:data:`COLUMNS`): head relation, kind, body relations ``b``,
        ``u`` (path2, path3), ``v`` (path3), body constant ``d`` (const), predicted constant ``c`` (const, any)."""
        if aggregate not in AGGREGATES:
            raise InputError(f"unknown rule aggregate {aggregate!r}; choose one of {', '.join(AGGREGATES)}")
        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        self.triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        order = np.argsort(-confidence, kind="stable")  # strongest first, everywhere
        self.rules = np.asarray(rules, dtype=np.int64).reshape(-1, len(COLUMNS))[order]
        self.support = np.asarray(support, dtype=np.int64)[order]
        self.body_support = np.asarray(body_support, dtype=np.int64)[order]
        self.confidence = np.asarray(confidence, dtype=np.float64)[order]
        self.relation_names = list(relation_names) if relation_names is not None else None
        self.options = dict(options or {})
        self.aggregate = aggregate
        self.stats = dict(stats or {})
        self._build_index()

    # ------------------------------------------------------------------------------------------------ mining
    @classmethod
    def mine(
        cls,
        triples: np.ndarray,
        num_entities: int,
        num_relations: int,
        *,
        relation_names: list[str] | None = None,
        aggregate: str = "maxplus",
        **options: Any,
    ) -> RuleSet:
        """Mine rules from ``triples`` (``(n, 3)`` ids, forward relations ``0..num_relations-1``) for all
        ``2 * num_relations`` head relations. ``options`` are the fields of :class:`MiningOptions`."""
        unknown = set(options) - set(MiningOptions.__dataclass_fields__)
        if unknown:
            raise InputError(
                f"unknown rule-mining option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(MiningOptions.__dataclass_fields__)}"
            )
        opts = MiningOptions(**options)
        triples = _checked_triples(triples, num_entities, num_relations)
        wall, cpu = time.perf_counter(), time.process_time()
        graph = _Graph(triples, num_entities, num_relations)
        parts = [_mine_paths(graph, opts)]
        if opts.constants:
            parts.append(_mine_constants(graph, opts))
        rules, support, body, conf = (np.concatenate(x) for x in zip(*parts, strict=True))
        stats = {
            "mining_wall_s": round(time.perf_counter() - wall, 3),
            "mining_cpu_s": round(time.process_time() - cpu, 3),
            "rules_by_kind": {k: int((rules[:, 1] == i).sum()) for i, k in enumerate(KINDS)},
        }
        return cls(
            triples,
            num_entities,
            num_relations,
            rules,
            support,
            body,
            conf,
            relation_names=relation_names,
            options=opts.to_json(),
            aggregate=aggregate,
            stats=stats,
        )

    @classmethod
    def from_graph(cls, kg: KnowledgeGraph, split: str = "train", **options: Any) -> RuleSet:
        """:meth:`mine` on one split of a :class:`~kgemb.KnowledgeGraph`, rules written with its relation names."""
        names = [kg.relation_text(r) for r in range(kg.num_relations)]
        return cls.mine(kg.triples(split), kg.num_entities, kg.num_relations, relation_names=names, **options)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k} {int((self.rules[:, 1] == i).sum())}" for i, k in enumerate(KINDS))
        return f"RuleSet({len(self)} rules: {kinds}; {self.num_entities} entities, {self.num_relations} relations)"

    # ----------------------------------------------------------------------------------------------- scoring
    def _build_index(self) -> None:
        """Per head relation: dense confidence tables for path rules, sorted-key look-ups for constant rules."""
        n, r2 = self.num_entities, 2 * self.num_relations
        self._graph = _Graph(self.triples, n, self.num_relations)
        heads, kinds = self.rules[:, 0], self.rules[:, 1]
        self._conf1 = np.zeros((r2, r2))
        self._conf2 = np.zeros((r2, r2, r2))
        m = kinds == PATH1
        self._conf1[heads[m], self.rules[m, 2]] = self.confidence[m]
        m = kinds == PATH2
        self._conf2[heads[m], self.rules[m, 2], self.rules[m, 3]] = self.confidence[m]
        # path3: a dense (b, u, v) confidence table per head that has such rules
        b, u, v, d, c = (self.rules[:, i] for i in range(2, 7))
        self._conf3: dict[int, np.ndarray] = {}
        for i in np.flatnonzero(kinds == PATH3):
            table = self._conf3.setdefault(int(heads[i]), np.zeros((r2, r2, r2)))
            table[b[i], u[i], v[i]] = self.confidence[i]
        # const and any rules keyed by (head, b[, d]) -> (predicted constant, confidence)
        self._const = _Lookup((heads * r2 + b) * n + d, c, self.confidence, kinds == CONST)
        self._any = _Lookup(heads * r2 + b, c, self.confidence, kinds == ANY)
        self._hstack: dict[int, tuple[sp.csr_matrix, np.ndarray]] = {}

    def _path2_targets(self, h: int) -> tuple[sp.csr_matrix, np.ndarray]:
        """``[A_u1 | A_u2 | ...]`` over the ``u`` that end a path2 rule of head ``h``, and those ``u`` (cached)."""
        if h not in self._hstack:
            us = np.flatnonzero(self._conf2[h].any(axis=0))
            self._hstack[h] = (sp.hstack([self._graph.adj[u] for u in us], format="csr"), us)
        return self._hstack[h]

    def firings(self, anchors: np.ndarray, relation: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (query index, candidate, confidence) that a rule of ``relation`` predicts for ``anchors``:
        one row per rule and candidate (a rule grounded through several paths fires once)."""
        g, n = self._graph, self.num_entities
        anchors = np.asarray(anchors, dtype=np.int64)
        out_q, out_y, out_c = [], [], []

        def keep(q: np.ndarray, y: np.ndarray, c: np.ndarray) -> None:
            ok = (c > 0) & (y != anchors[q])  # distinct variables: a rule never predicts the anchor itself
            out_q.append(q[ok])
            out_y.append(y[ok])
            out_c.append(c[ok])

        h = int(relation)
        rows = g.flat[anchors].tocoo()  # (b, 2R*n): column b*n + y for each edge b(anchor, y)
        rel, y = np.divmod(rows.col.astype(np.int64), n)
        q1 = rows.row.astype(np.int64)
        if self._conf1[h].any():
            keep(q1, y, self._conf1[h][rel])
        r2 = 2 * self.num_relations
        first = self._conf2[h].any(axis=1)[rel]  # first hops b(anchor, z) that start a path2 rule
        if first.any():
            # one product for every rule of h: rows (query, b), columns (u, y) over the rules' u
            hops = sp.csr_matrix(
                (np.ones(int(first.sum()), dtype=np.float32), (q1[first] * r2 + rel[first], y[first])),
                shape=(len(anchors) * r2, n),
            )
            targets, us = self._path2_targets(h)
            reached = (hops @ targets).tocoo()
            qb, which_y = reached.row.astype(np.int64), reached.col.astype(np.int64)
            which, y2 = np.divmod(which_y, n)
            keep(qb // r2, y2, self._conf2[h, qb % r2, us[which]])
        self._fire_path3(h, anchors, q1, rel, y, keep)
        if len(self._const.keys):
            q, pos = _matches(self._const.keys, h * r2 * n + rows.col.astype(np.int64))
            keep(rows.row[q].astype(np.int64), self._const.cols[pos], self._const.vals[pos])
        if len(self._any.keys):
            present = np.unique(rows.row.astype(np.int64) * r2 + rel)
            q, pos = _matches(self._any.keys, h * r2 + present % r2)
            keep(present[q] // r2, self._any.cols[pos], self._any.vals[pos])
        if not out_q:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0)
        return np.concatenate(out_q), np.concatenate(out_y), np.concatenate(out_c)

    def _fire_path3(
        self, h: int, anchors: np.ndarray, q1: np.ndarray, rel: np.ndarray, z1: np.ndarray, keep: Callable
    ) -> None:
        """path3 rules of head ``h``: walks anchor -b-> z1 -u-> z2 -v-> y counted by two sparse products, kept
        where a walk with distinct entities exists (:func:`_distinct_walks`)."""
        conf = self._conf3.get(h)
        if conf is None:
            return
        g, n, r2 = self._graph, self.num_entities, 2 * self.num_relations
        prefix = conf.any(axis=2)  # (b, u) that start a rule
        first = prefix.any(axis=1)[rel]
        if not first.any():
            return
        hop1 = sp.csr_matrix(
            (np.ones(int(first.sum()), dtype=np.float32), (q1[first] * r2 + rel[first], z1[first])),
            shape=(len(anchors) * r2, n),
        )
        two = (hop1 @ g.flat).tocoo()  # rows (query, b), columns (u, z2), walk counts
        qb = two.row.astype(np.int64)
        u, z2 = np.divmod(two.col.astype(np.int64), n)
        ok = prefix[qb % r2, u]
        hop2 = sp.csr_matrix((two.data[ok], (qb[ok] * r2 + u[ok], z2[ok])), shape=(len(anchors) * r2 * r2, n))
        three = (hop2 @ g.flat).tocoo()  # rows (query, b, u), columns (v, y)
        qbu = three.row.astype(np.int64)
        v, y = np.divmod(three.col.astype(np.int64), n)
        q, b, u = qbu // (r2 * r2), qbu // r2 % r2, qbu % r2
        c = conf[b, u, v]
        idx = np.flatnonzero(c > 0)
        fine = _distinct_walks(g, anchors[q[idx]], b[idx], u[idx], v[idx], y[idx], three.data[idx])
        keep(q[idx][fine], y[idx][fine], c[idx][fine])

    def answers(self, anchors: np.ndarray, relation: int) -> sp.csr_matrix:
        """The training graph's answers of the queries ``(anchor, relation, ?)`` (relation in ``0..2R-1``), as CSR
        rows ``(len(anchors), num_entities)`` of ones."""
        return self._graph.adj[int(relation)][np.asarray(anchors, dtype=np.int64)]

    def tail_scores(
        self,
        anchors: Iterable[int] | np.ndarray | torch.Tensor,
        relations: Iterable[int] | np.ndarray | torch.Tensor,
    ) -> torch.Tensor:
        """Rule scores ``(b, num_entities)`` float32 of the queries ``(anchor, relation, ?)``, relation in
        ``0..2R-1`` (``r + R``: the head query of ``r``); 0 where no rule fires. Known answers still score."""
        a = _as_ids(anchors, "anchors")
        r = _as_ids(relations, "relations")
        if a.shape != r.shape:
            raise InputError(f"anchors ({len(a)}) and relations ({len(r)}) must be the same length")
        if len(a) and (a.min() < 0 or a.max() >= self.num_entities):
            raise InputError(f"anchor ids must be in 0..{self.num_entities - 1}")
        if len(r) and (r.min() < 0 or r.max() >= 2 * self.num_relations):
            raise InputError(f"relation ids must be in 0..{2 * self.num_relations - 1} (r + R: inverse of r)")
        n = self.num_entities
        out = np.zeros((len(a), n), dtype=np.float32)
        for h in np.unique(r):
            idx = np.flatnonzero(r == h)
            start, size = 0, max(1, FIRST_CHUNK_CELLS // n)
            while start < len(idx):  # in chunks of queries: the firings' memory stays bounded
                part = idx[start : start + size]
                q, y, c = self.firings(a[part], int(h))
                if len(q):
                    out[part] = _aggregate(q * n + y, c, len(part) * n, self.aggregate).reshape(len(part), n)
                start += len(part)
                size = min(4 * size, max(1, FIRINGS_PER_CHUNK * len(part) // max(len(q), 1)))
        return torch.from_numpy(out)

    # --------------------------------------------------------------------------------------------- explain
    def explain(
        self,
        head: int,
        relation: int,
        tail: int,
        k: int = 5,
        *,
        entity_name: Callable[[int], str] | None = None,
    ) -> list[dict[str, Any]]:
        """The ``k`` strongest rules that predict ``(head, relation, tail)`` (relation in ``0..2R-1``), each with
        its readable form, kind, confidence, support, body support and one grounding path of entity ids."""
        g, n = self._graph, self.num_entities
        h, r, t = int(head), int(relation), int(tail)
        if not (0 <= h < n and 0 <= t < n and 0 <= r < 2 * self.num_relations):
            raise InputError(f"({head}, {relation}, {tail}) is not a link of this rule set's graph")
        out = []
        if h == t:
            return out
        for i in np.flatnonzero(self.rules[:, 0] == r):
            _, kind, b, u, v, d, c = (int(x) for x in self.rules[i])
            path = None
            if kind == PATH1 and g.has(h, b, t):
                path = [h, t]
            elif kind == PATH2:
                mids = np.intersect1d(g.adj[b][h].indices, g.adj[_inverse(u, self.num_relations)][t].indices)
                mids = mids[(mids != h) & (mids != t)]
                if len(mids):
                    path = [h, int(mids[0]), t]
            elif kind == PATH3:
                ends = g.adj[_inverse(v, self.num_relations)][t].indices
                for z1 in g.adj[b][h].indices:
                    z2s = np.intersect1d(g.adj[u][z1].indices, ends)
                    z2s = z2s[(z2s != h) & (z2s != t) & (z2s != z1)]
                    if z1 not in (h, t) and len(z2s):
                        path = [h, int(z1), int(z2s[0]), t]
                        break
            elif kind == CONST and c == t and g.has(h, b, d):
                path = [h, d]
            elif kind == ANY and c == t:
                ends = g.adj[b][h].indices
                if len(ends):
                    path = [h, int(ends[0])]
            if path is None:
                continue
            out.append(
                {
                    "rule": self.rule_text(int(i), entity_name),
                    "kind": KINDS[kind],
                    "confidence": float(self.confidence[i]),
                    "support": int(self.support[i]),
                    "body_support": int(self.body_support[i]),
                    "path": path,
                }
            )
            if len(out) == k:
                break
        return out

    def rule_text(self, i: int, entity_name: Callable[[int], str] | None = None) -> str:
        """Rule ``i`` as text over forward relation names, e.g. ``hypernym(X,Y) <= hypernym(X,Z), ...``."""
        h, kind, b, u, v, d, c = (int(x) for x in self.rules[i])
        const = entity_name or (lambda e: f"e{e}")
        if kind == PATH1:
            return f"{self._atom(h, 'X', 'Y')} <= {self._atom(b, 'X', 'Y')}"
        if kind == PATH2:
            return f"{self._atom(h, 'X', 'Y')} <= {self._atom(b, 'X', 'Z')}, {self._atom(u, 'Z', 'Y')}"
        if kind == PATH3:
            atoms = [self._atom(b, "X", "A"), self._atom(u, "A", "B"), self._atom(v, "B", "Y")]
            return f"{self._atom(h, 'X', 'Y')} <= {', '.join(atoms)}"
        if kind == CONST:
            return f"{self._atom(h, 'X', const(c))} <= {self._atom(b, 'X', const(d))}"
        return f"{self._atom(h, 'X', const(c))} <= {self._atom(b, 'X', 'Z')}"

    def _atom(self, rel: int, a: str, b: str) -> str:
        forward, swap = (rel, False) if rel < self.num_relations else (rel - self.num_relations, True)
        name = self.relation_names[forward] if self.relation_names else f"r{forward}"
        return f"{name}({b},{a})" if swap else f"{name}({a},{b})"

    # ------------------------------------------------------------------------------------------- save/load
    def save(self, directory: str | os.PathLike) -> None:
        """Write ``rules.npz`` (arrays, no pickle) then ``rules.json`` (metadata and the arrays' SHA-256)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / RULES_JSON).unlink(missing_ok=True)  # no valid rule set until the new metadata lands

        def arrays(f: Any) -> None:
            np.savez(
                f,
                triples=self.triples,
                rules=self.rules,
                support=self.support,
                body_support=self.body_support,
                confidence=self.confidence,
            )

        write_atomic(out / RULES_ARRAYS, arrays)
        meta = {
            "format": FORMAT,
            "num_entities": self.num_entities,
            "num_relations": self.num_relations,
            "num_rules": len(self),
            "relation_names": self.relation_names,
            "aggregate": self.aggregate,
            "options": self.options,
            "stats": self.stats,
            "files": {RULES_ARRAYS: file_sha256(out / RULES_ARRAYS)},
        }
        write_atomic(out / RULES_JSON, json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RuleSet:
        """Read a rule set written by :meth:`save`, checking its format, checksum and array shapes."""
        src = Path(directory)
        path = src / RULES_JSON
        if not path.is_file():
            raise InputError(f"{src} holds no rules ({RULES_JSON} is missing); mine them with RuleSet.mine")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON ({exc}); mine and save the rules again") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"{path} is not a kgemb rule set ({FORMAT}); mine and save the rules again")
        arrays_path = src / RULES_ARRAYS
        files = meta.get("files")
        digest = files.get(RULES_ARRAYS) if isinstance(files, dict) else None
        if not arrays_path.is_file() or file_sha256(arrays_path) != digest:
            raise InputError(
                f"{arrays_path} is missing or does not match the checksum in {RULES_JSON}; "
                "mine and save the rules again"
            )
        try:
            with np.load(arrays_path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("triples", "rules", "support", "body_support", "confidence")}
            n, nr = int(meta["num_entities"]), int(meta["num_relations"])
            rules = arrays["rules"]
            ok = (
                rules.ndim == 2
                and rules.shape[1] == len(COLUMNS)
                and all(len(arrays[k]) == len(rules) for k in ("support", "body_support", "confidence"))
                and len(rules) == int(meta["num_rules"])
            )
            if not ok:
                raise ValueError("array shapes do not agree")
            triples = _checked_triples(arrays["triples"], n, nr)
            return cls(
                triples,
                n,
                nr,
                rules,
                arrays["support"],
                arrays["body_support"],
                arrays["confidence"],
                relation_names=meta.get("relation_names"),
                options=meta.get("options"),
                aggregate=meta.get("aggregate", "maxplus"),
                stats=meta.get("stats"),
            )
        except (KeyError, ValueError, TypeError, OSError, IndexError) as exc:
            raise InputError(
                f"the rule set in {src} cannot be read ({exc}); mine and save the rules again"
            ) from None


#: training triples a relation needs to be taken as irreflexive, and the largest share of self-loops among them
MIN_IRREFLEXIVE, MAX_SELF_LOOPS = 10, 0.001


def irreflexive_relations(triples: np.ndarray, num_relations: int) -> np.ndarray:
    """Per relation, whether it is (nearly) irreflexive in ``triples`` (id rows): at least
    :data:`MIN_IRREFLEXIVE` of them, at most :data:`MAX_SELF_LOOPS` of those ``(e, r, e)`` (none below 1,000
    triples; WordNet's 29,054 derivationally-related-form links have 8). Such a relation's queries never answer
    their own anchor: evaluation filters it like a known link, the channels' weights are fitted without it, the
    reasoning scorer and the Neo4j procedures leave it out. An entity's text is always nearest its own, and a
    text model ranks an entity unseen in training as its own first answer otherwise (WN18RR inductive: before
    the true one in 8,281 of 9,232 test queries)."""
    triples = np.asarray(triples).reshape(-1, 3)
    count = np.bincount(triples[:, 1], minlength=num_relations)
    loops = np.bincount(triples[triples[:, 0] == triples[:, 2], 1], minlength=num_relations)
    return (count >= MIN_IRREFLEXIVE) & (loops <= MAX_SELF_LOOPS * count)


def rule_metrics(
    rules: RuleSet,
    triples: np.ndarray,
    known: Iterable[np.ndarray] = (),
    *,
    batch_size: int = 512,
    ranks_out: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """Filtered MRR and Hits@1/3/10 of the rule scores alone on ``triples``, both directions (head queries as
    ``(t, r + R, ?)``), ties at the mean of the optimistic and pessimistic rank (PyKEEN's "realistic"), every
    triple of ``known`` (and ``triples``) other than the answer filtered. ``ranks_out`` receives the ranks: the
    tail queries of ``triples`` in order, then their head queries."""
    triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    nr = rules.num_relations
    queries = np.concatenate([triples, np.stack([triples[:, 2], triples[:, 1] + nr, triples[:, 0]], axis=1)])
    filt = _reciprocal(np.concatenate([triples, *[np.asarray(k).reshape(-1, 3) for k in known]]), nr)
    filt = np.unique(filt, axis=0)  # sorted by (anchor, relation, answer)
    fq = filt[:, 0] * 2 * nr + filt[:, 1]
    ranks = []
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        scores = rules.tail_scores(batch[:, 0], batch[:, 1]).numpy()
        rows = np.arange(len(batch))
        true = scores[rows, batch[:, 2]].copy()
        qk = batch[:, 0] * 2 * nr + batch[:, 1]
        lo, hi = np.searchsorted(fq, qk, "left"), np.searchsorted(fq, qk, "right")
        counts = hi - lo
        rep = np.repeat(rows, counts)
        cols = filt[
            np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)),
            2,
        ]
        scores[rep, cols] = -np.inf
        scores[rows, batch[:, 2]] = true
        better = (scores > true[:, None]).sum(axis=1)
        equal = (scores == true[:, None]).sum(axis=1)  # includes the answer itself
        ranks.append(better + (equal + 1) / 2.0)
    rank = np.concatenate(ranks)
    if ranks_out is not None:
        ranks_out.append(rank)
    out = {"mrr": float(np.mean(1.0 / rank))}
    out.update({f"hits@{k}": float(np.mean(rank <= k)) for k in (1, 3, 10)})
    out["n"] = len(rank)
    return out


# ------------------------------------------------------------------------------------------------- internals
class _Graph:
    """The reciprocal training graph: per relation a CSR adjacency, and all of them side by side."""

    def __init__(self, triples: np.ndarray, num_entities: int, num_relations: int) -> None:
        n, r2 = num_entities, 2 * num_relations
        both = _reciprocal(triples, num_relations)
        keys = np.unique(
            (both[:, 0] * r2 + both[:, 1]) * n + both[:, 2]
        )  # sorted by (x, r, y), no duplicates
        xr, y = np.divmod(keys, n)
        rec = np.stack([xr // r2, xr % r2, y], axis=1)
        self.num_entities, self.num_relations = n, num_relations
        self.rec = rec
        ones = np.ones(len(rec), dtype=np.float32)
        self.flat = sp.csr_matrix((ones, (rec[:, 0], rec[:, 1] * n + rec[:, 2])), shape=(n, r2 * n))
        self.adj = []
        for r in range(r2):
            m = rec[:, 1] == r
            self.adj.append(sp.csr_matrix((ones[m], (rec[m, 0], rec[m, 2])), shape=(n, n)))
        self.keys = keys
        # 2-cycles x -b-> z -u-> x, counted per (x, b, u): the walks that revisit an entity
        pair = rec[:, 0] * n + rec[:, 2]
        order = np.argsort(pair, kind="stable")
        e, pos = _matches(pair[order], rec[:, 2] * n + rec[:, 0])
        cycles = (rec[e, 0] * r2 + rec[e, 1]) * r2 + rec[order[pos], 1]
        self.cycle_keys, self.cycle_counts = np.unique(cycles, return_counts=True)

    def has(self, h: int, r: int, t: int) -> bool:
        """Whether the edge ``r(h, t)`` is in the graph."""
        return bool(self.has_many(np.array([h]), np.array([r]), np.array([t]))[0])

    def has_many(self, x: np.ndarray, r: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether each edge ``r(x, y)`` is in the graph."""
        key = (x * 2 * self.num_relations + r) * self.num_entities + y
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return self.keys[pos] == key if len(self.keys) else np.zeros(len(key), dtype=bool)

    def cycle_count(self, x: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
        """How many ``z`` close the 2-cycle ``x -b-> z -u-> x``."""
        key = (x * 2 * self.num_relations + b) * 2 * self.num_relations + u
        if not len(self.cycle_keys):
            return np.zeros(len(key), dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.cycle_keys, key), len(self.cycle_keys) - 1)
        return np.where(self.cycle_keys[pos] == key, self.cycle_counts[pos], 0)


def _distinct_walks(
    g: _Graph, x: np.ndarray, b: np.ndarray, u: np.ndarray, v: np.ndarray, y: np.ndarray, walks: np.ndarray
) -> np.ndarray:
    """Whether, of the ``walks`` x -b-> z1 -u-> z2 -v-> y, one has z1 != y and z2 != x (AnyBURL's object
    identity): the walks through z2 == x or z1 == y are counted from 2-cycles and subtracted."""
    hb, hv, hu = g.has_many(x, b, y), g.has_many(x, v, y), g.has_many(y, u, x)
    bad = g.cycle_count(x, b, u) * hv + hb * g.cycle_count(y, u, v) - (hb & hu & hv)
    return walks - bad > 0.5


def _inverse(rel: int | np.ndarray, num_relations: int) -> Any:
    return (
        np.where(rel < num_relations, rel + num_relations, rel - num_relations)
        if isinstance(rel, np.ndarray)
        else (rel + num_relations if rel < num_relations else rel - num_relations)
    )


def _reciprocal(triples: np.ndarray, num_relations: int) -> np.ndarray:
    t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    return np.concatenate([t, np.stack([t[:, 2], t[:, 1] + num_relations, t[:, 0]], axis=1)])


def _checked_triples(triples: Any, num_entities: int, num_relations: int) -> np.ndarray:
    arr = np.asarray(triples)
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"rule mining needs an (n, 3) array of integer ids; got shape {arr.shape} {arr.dtype}"
        )
    arr = arr.astype(np.int64)
    if len(arr) and (arr[:, [0, 2]].min() < 0 or arr[:, [0, 2]].max() >= num_entities):
        raise InputError(f"entity ids must be in 0..{num_entities - 1}")
    if len(arr) and (arr[:, 1].min() < 0 or arr[:, 1].max() >= num_relations):
        raise InputError(f"relation ids must be in 0..{num_relations - 1} (forward relations only)")
    return arr


def _as_ids(values: Any, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values).reshape(-1)
    if len(arr) and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{what} must be integer ids; got {arr.dtype}")
    return arr.astype(np.int64)


class _Lookup:
    """Rows of a rule table sorted by an integer key, for vectorised look-up with :func:`_matches`."""

    def __init__(self, keys: np.ndarray, cols: np.ndarray, vals: np.ndarray, mask: np.ndarray) -> None:
        order = np.argsort(keys[mask], kind="stable")
        self.keys, self.cols, self.vals = keys[mask][order], cols[mask][order], vals[mask][order]


def _matches(sorted_keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (index into ``query``, position in ``sorted_keys``) with equal keys."""
    lo, hi = np.searchsorted(sorted_keys, query, "left"), np.searchsorted(sorted_keys, query, "right")
    counts = hi - lo
    total = int(counts.sum())
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(np.arange(len(query)), counts), np.repeat(lo, counts) + offsets


def _aggregate(key: np.ndarray, conf: np.ndarray, size: int, how: str) -> np.ndarray:
    """One score per cell ``key`` from the confidences of the rules that fire there."""
    if len(key) == 0:
        return np.zeros(size)
    if how == "noisy-or":
        return -np.expm1(np.bincount(key, weights=np.log1p(-np.minimum(conf, 1 - 1e-9)), minlength=size))
    # one sort of (cell, confidence descending) packed in an int64: confidence kept to 2**-24 (float32 output)
    level = np.rint(np.clip(conf, 0.0, 1.0) * _SCALE).astype(np.int64)
    packed = (key << _BITS) | (_SCALE - level)
    packed.sort()
    key, conf = packed >> _BITS, (_SCALE - (packed & (2 * _SCALE - 1))) / _SCALE
    out = np.zeros(size)
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    out[key[first]] = conf[first]
    if how == "max":
        return out
    starts = np.flatnonzero(first)
    rank = np.arange(len(key)) - np.repeat(starts, np.diff(np.append(starts, len(key))))
    for j in (1, 2):
        m = rank == j
        out[key[m]] += conf[m] * _TIE**j
    return out


def _mine_paths(graph: _Graph, opts: MiningOptions) -> tuple[np.ndarray, ...]:
    """path1, path2 (and path3 when the graph's 3-edge walks fit ``max_walks``) rules for the forward heads,
    counted on the graph, then mirrored to the inverse heads."""
    n, nr = graph.num_entities, graph.num_relations
    r2 = 2 * nr
    fwd = graph.rec[graph.rec[:, 1] < nr]
    fkey = fwd[:, 0] * n + fwd[:, 2]
    order = np.argsort(fkey, kind="stable")
    fkey, frel = fkey[order], fwd[order, 1]

    def head_counts(x: np.ndarray, y: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
        """(groups, R) counts of body pairs (x, y) in each group that are also h(x, y), per forward head h."""
        q, pos = _matches(fkey, x * n + y)
        return np.bincount(group[q] * nr + frel[pos], minlength=groups * nr).reshape(groups, nr)

    rules: list[tuple[int, ...]] = []
    sup, body = [], []

    def add(counts: np.ndarray, bodies: np.ndarray, make: Callable[[int], tuple[int, ...]]) -> None:
        for g_, h in zip(*np.nonzero(counts), strict=True):
            rules.append((h, *make(int(g_))))
            sup.append(counts[g_, h])
            body.append(bodies[g_])

    # path1: h(X,Y) <= b(X,Y)
    for b in range(r2):
        a = graph.adj[b].tocoo()
        x, y = a.row.astype(np.int64), a.col.astype(np.int64)
        ok = x != y
        counts = head_counts(x[ok], y[ok], np.zeros(int(ok.sum()), dtype=np.int64), 1)
        if b < nr:
            counts[0, b] = 0  # h <= h
        add(counts, np.array([ok.sum()]), lambda _, b=b: (PATH1, b, -1, -1))
    # path2: h(X,Y) <= b(X,Z), u(Z,Y), all u at once: A_b @ [A_0 | ... | A_2R-1]
    degree = np.diff(graph.flat.indptr)
    walks3 = 0
    for b in range(r2):
        reached = (graph.adj[b] @ graph.flat).tocoo()
        x = reached.row.astype(np.int64)
        u, y = np.divmod(reached.col.astype(np.int64), n)
        walks3 += int(degree[y].sum())
        ok = x != y
        x, u, y = x[ok], u[ok], y[ok]
        add(head_counts(x, y, u, r2), np.bincount(u, minlength=r2), lambda g_, b=b: (PATH2, b, g_, -1))
    # path3: h(X,Y) <= b(X,A), u(A,B), v(B,Y): rows (x, u), columns (v, y) of (A_b @ flat) @ flat, walk counts
    mined3 = walks3 <= opts.max_walks
    for b in range(r2) if mined3 else ():
        two = (graph.adj[b] @ graph.flat).tocoo()
        u, z2 = np.divmod(two.col.astype(np.int64), n)
        hop = sp.csr_matrix((two.data, (two.row.astype(np.int64) * r2 + u, z2)), shape=(n * r2, n))
        three = (hop @ graph.flat).tocoo()
        x, u = np.divmod(three.row.astype(np.int64), r2)
        v, y = np.divmod(three.col.astype(np.int64), n)
        ok = x != y
        ok[ok] = _distinct_walks(graph, x[ok], np.full(int(ok.sum()), b), u[ok], v[ok], y[ok], three.data[ok])
        group = u[ok] * r2 + v[ok]
        add(
            head_counts(x[ok], y[ok], group, r2 * r2),
            np.bincount(group, minlength=r2 * r2),
            lambda g_, b=b: (PATH3, b, g_ // r2, g_ % r2),
        )
    out = np.full((len(rules), len(COLUMNS)), -1, dtype=np.int64)
    if rules:
        out[:, :5] = np.asarray(rules, dtype=np.int64)
    sup_a, body_a = np.asarray(sup, dtype=np.int64), np.asarray(body, dtype=np.int64)
    conf = sup_a / (body_a + opts.pc)
    keep = (sup_a >= opts.min_support) & (conf >= opts.min_confidence)
    table, sup_a, body_a, conf = out[keep], sup_a[keep], body_a[keep], conf[keep]
    # mirror for the inverse heads: the body read backwards, inverted; same counts, same confidence
    # (h+R)(X,Y) <= b^-1(X,Y) ;  <= u^-1(X,Z), b^-1(Z,Y) ;  <= v^-1(X,A), u^-1(A,B), b^-1(B,Y)
    mirror = table.copy()
    mirror[:, 0] = table[:, 0] + nr
    length = np.select([table[:, 1] == PATH1, table[:, 1] == PATH2], [1, 2], 3)
    for i in range(3):  # position i of the mirrored body is position length-1-i of the body, inverted
        src = np.clip(length - 1 - i, 0, 2) + 2
        inv = _inverse(table[np.arange(len(table)), src], nr)
        mirror[:, 2 + i] = np.where(i < length, inv, -1)
    return np.concatenate([table, mirror]), np.tile(sup_a, 2), np.tile(body_a, 2), np.tile(conf, 2)


def _mine_constants(graph: _Graph, opts: MiningOptions) -> tuple[np.ndarray, ...]:
    """const rules ``h(X,c) <= b(X,d)`` and any rules ``h(X,c) <= b(X,Z)`` for all 2R heads, by co-occurrence
    of an entity's edges: ``F^T F`` with ``F`` the entity × (relation, neighbour) incidence."""
    n, nr = graph.num_entities, graph.num_relations
    r2 = 2 * nr
    flat = graph.flat.tocsc()
    col_count = np.diff(flat.indptr).astype(np.int64)  # body support of b(X,d): entities with that edge
    out_rules, out_sup, out_body = [], [], []
    # const: co-occurrence of (b, d) and (h, c) at the same X; (b, d) == (h, c) is the head itself
    co = (graph.flat.T @ graph.flat).tocoo()
    body_col, head_col = co.row.astype(np.int64), co.col.astype(np.int64)
    sup = co.data.astype(np.int64)
    keep = (body_col != head_col) & (sup >= opts.const_min_support)
    body_col, head_col, sup = body_col[keep], head_col[keep], sup[keep]
    bodies = col_count[body_col]
    conf = sup / (bodies + opts.pc)
    keep = conf >= opts.const_min_confidence
    body_col, head_col, sup, bodies = body_col[keep], head_col[keep], sup[keep], bodies[keep]
    b, d = np.divmod(body_col, n)
    h, c = np.divmod(head_col, n)
    keep = (d != c) | (b != h)
    table = np.full((int(keep.sum()), len(COLUMNS)), -1, dtype=np.int64)
    table[:, 0], table[:, 1], table[:, 2], table[:, 5], table[:, 6] = (
        h[keep],
        CONST,
        b[keep],
        d[keep],
        c[keep],
    )
    out_rules.append(table)
    out_sup.append(sup[keep])
    out_body.append(bodies[keep])
    # any: X has some b-edge (to other than c when b == h is excluded: that body holds whenever the head does)
    has = sp.csr_matrix(
        (np.ones(len(graph.rec), dtype=np.float32), (graph.rec[:, 0], graph.rec[:, 1])), shape=(n, r2)
    )  # the constructor sums duplicate edges: set back to presence
    has.data[:] = 1.0
    has_count = np.diff(has.tocsc().indptr).astype(np.int64)
    co = (has.T @ graph.flat).tocoo()
    b, head_col, sup = co.row.astype(np.int64), co.col.astype(np.int64), co.data.astype(np.int64)
    h, c = np.divmod(head_col, n)
    bodies = has_count[b]
    conf = sup / (bodies + opts.pc)
    keep = (b != h) & (sup >= opts.const_min_support) & (conf >= opts.const_min_confidence)
    table = np.full((int(keep.sum()), len(COLUMNS)), -1, dtype=np.int64)
    table[:, 0], table[:, 1], table[:, 2], table[:, 6] = h[keep], ANY, b[keep], c[keep]
    out_rules.append(table)
    out_sup.append(sup[keep])
    out_body.append(bodies[keep])
    sup_all = np.concatenate(out_sup)
    body_all = np.concatenate(out_body)
    return np.concatenate(out_rules), sup_all, body_all, sup_all / (body_all + opts.pc)
