"""``LinkPredictor``: ask a trained model for missing links — tails, heads, relations, several pieces of evidence
at once (symptoms -> disease) — with calibrated probabilities, type constraints and explanations.

Entities are given by key, IRI, or label in any language (``KnowledgeGraph.lookup``). An ambiguous label raises
a :class:`~kgemb.KgembError` listing the candidates; an unknown name raises one suggesting the closest entities
by text — unless new entities are allowed (``allow_new=True``, CLI ``--allow-new``): then the name is read as the
text of an entity that is not in the graph and its vector comes from the encoder (models trained in ``text`` or
``fused`` mode only).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from kgemb.reasoning.calibration import Calibration, fit_calibration, load_calibration
from kgemb.reasoning.constraints import TypeConstraints
from kgemb.reasoning.links import LinkIndex
from kgemb.reasoning.scoring import CandidateScorer, Side

from kgemb.errors import ConfigError, InputError

if TYPE_CHECKING:
    from kgemb.reasoning.evidence import EvidenceIndex
    from kgemb.reasoning.explain import Explanation
    from kgemb.reasoning.search import TextIndex

    from kgemb.model import TrainedModel

EntityRef = str | int
RelationRef = str | int


@dataclass
class Contribution:
    """What one piece of evidence says about a candidate in :meth:`LinkPredictor.rank`."""

    entity: str  # the evidence entity's key (or its text, for an entity not in the graph)
    label: str
    relation: str
    probability: float  # the model's calibrated probability of the evidence link for this candidate
    known: bool  # the link is in the graph (an exact match)
    match: str = "unmatched"  # "exact", "hierarchy" (through a common ancestor) or "unmatched"
    via: str | None = None  # key of the term that matched (the item itself, or the common ancestor)
    via_label: str | None = None
    likelihood_ratio: float = 0.0  # R_i: how much likelier the item is if the candidate explains it
    log_likelihood: float = 0.0  # l_i: this item's term in the candidate's log-likelihood

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prediction:
    """One ranked answer: an entity (or a relation, for :meth:`LinkPredictor.relations`)."""

    key: str
    label: str
    score: float  # calibrated probability (rank: probability normalised over the candidates; search: cosine)
    rank: int
    id: int | None = None
    raw: float | None = None  # the model's raw score (rank: the log-likelihood L(x) of the evidence)
    known: bool = False  # the link is already in the graph (only listed when known links are not left out)
    contributions: list[Contribution] | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"key", "label", "score", "rank"}`` (plus ``"contributions"`` for a multi-evidence ranking)."""
        out: dict[str, Any] = {"key": self.key, "label": self.label, "score": self.score, "rank": self.rank}
        if self.contributions is not None:
            out["contributions"] = [c.to_dict() for c in self.contributions]
        return out


class Predictions(list):
    """A ranking: a list of :class:`Prediction`, best first, that also becomes a pandas DataFrame (as PyKEEN's
    ``predict_target(...).df``)."""

    def to_df(self) -> Any:
        """One row per answer: key, label, score, rank, id, raw, known."""
        import pandas as pd

        columns = ["key", "label", "score", "rank", "id", "raw", "known"]
        return pd.DataFrame([[getattr(p, c) for c in columns] for p in self], columns=columns)

    @property
    def df(self) -> Any:
        """:meth:`to_df`, under PyKEEN's name."""
        return self.to_df()


@dataclass
class _Query:
    """A resolved entity: an id in the graph, or the vector of a new entity from its text."""

    text: str
    id: int | None = None
    vector: torch.Tensor | None = None  # interaction layout, for a new entity


class LinkPredictor:
    """Ranked, calibrated and explained links from a :class:`~kgemb.TrainedModel`.

    Options (each method can override them): ``filter_known`` leaves out links already in the graph;
    ``constraints`` keeps only candidates of the right type (``"types"``: from rdfs:domain/range or learned
    from the training triples, see :mod:`kgemb.reasoning.constraints`; ``"observed"``; ``"none"``);
    ``min_score`` drops answers whose calibrated probability is lower; ``allow_new`` reads unknown names as
    new entities' texts. Probabilities come from a per-relation calibration (:mod:`kgemb.reasoning.calibration`)
    loaded from ``directory/calibration.json``, or fitted on the validation split on first use. For :meth:`rank`:
    ``hierarchy`` names the hierarchy relations (default: found automatically, see
    :mod:`kgemb.reasoning.evidence`); ``evidence_weight`` is the model's weight there (default: chosen on the
    validation split on first use). ``precision`` (``"fp32"``, ``"bf16"``, ``"int8"``): the arithmetic that picks
    the candidates of :meth:`tails` and :meth:`heads` before they are scored exactly; the answers are the same,
    bf16 and int8 are faster on large graphs (see :mod:`kgemb.reasoning.scoring`).
    """

    def __init__(
        self,
        model: TrainedModel,
        *,
        calibration: Calibration | None = None,
        directory: str | os.PathLike | None = None,
        filter_known: bool = True,
        constraints: str = "types",
        min_score: float | None = None,
        allow_new: bool = False,
        languages: Sequence[str] | None = None,
        hierarchy: Sequence[str] | None = None,
        evidence_weight: float | None = None,
        precision: str = "fp32",
    ) -> None:
        self.model = model
        self.kg = model.kg
        self.directory = Path(directory) if directory is not None else None
        self.filter_known = filter_known
        self.constraint_mode = constraints
        self.min_score = _check_min_score(min_score)
        self.allow_new = allow_new
        self.languages = languages
        self.links = LinkIndex(self.kg.all_triples(), self.kg.num_entities)
        self.scorer = CandidateScorer(model, precision=precision)
        self._constraints: dict[str, TypeConstraints] = {constraints: TypeConstraints(self.kg, constraints)}
        self._calibration = calibration
        self._text_index: TextIndex | None = None
        self.hierarchy = hierarchy
        self._evidence: EvidenceIndex | None = None
        if evidence_weight is not None and (
            not isinstance(evidence_weight, int | float)
            or not math.isfinite(evidence_weight)
            or evidence_weight < 0
        ):
            raise InputError(f"evidence_weight must be a number >= 0; got {evidence_weight!r}")
        self._evidence_weight = None if evidence_weight is None else float(evidence_weight)

    @classmethod
    def load(cls, directory: str | os.PathLike, **options: Any) -> LinkPredictor:
        """A predictor for the model saved in ``directory`` (``kgemb.load``), with its saved calibration."""
        path = Path(directory)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise InputError(
                f"{directory} is not a kgemb model directory (no config.json there); "
                "train one with `kgemb train SOURCE --out DIR` or give the folder it wrote"
            )
        import kgemb

        return cls(kgemb.load(path), directory=path, **options)

    # ------------------------------------------------------------------ calibration
    @property
    def calibration(self) -> Calibration:
        """The per-relation calibration: given, saved in the model directory, or fitted now (and saved there)."""
        if self._calibration is None:
            if self.directory is not None:
                self._calibration = load_calibration(self.directory, self.model)
            if self._calibration is None:
                self.calibrate(save=self.directory is not None)
        assert self._calibration is not None
        return self._calibration

    def calibrate(self, split: str | None = None, *, save: bool = True, **options: Any) -> Calibration:
        """Fit the calibration on ``split`` (default ``valid``) and, with ``save``, write it to the model
        directory as ``calibration.json``."""
        cal = fit_calibration(self.model, split, **options)
        self._calibration = cal
        if save:
            self._save_calibration("the calibration")
        return cal

    def _save_calibration(self, what: str) -> None:
        """Write the calibration (and the evidence weights kept in it) to the model directory, if there is one; a
        directory that cannot be written is warned about, not fatal."""
        if self.directory is None or self._calibration is None:
            return
        try:
            self._calibration.save(self.directory, self.kg.relations)
        except OSError as exc:
            warnings.warn(f"could not save {what} in {self.directory}: {exc}", stacklevel=3)

    # ------------------------------------------------------------------ resolution
    def relation(self, relation: RelationRef) -> int:
        """A relation id from its key, label, or id."""
        if isinstance(relation, int | np.integer):
            if not 0 <= int(relation) < self.kg.num_relations:
                raise InputError(f"relation id {relation} is out of range 0..{self.kg.num_relations - 1}")
            return int(relation)
        if not isinstance(relation, str) or not relation.strip():
            raise InputError(f"relation {relation!r} is empty; give a relation key or label")
        return self.kg.relation_id(relation)

    def entity(self, name: EntityRef, *, allow_new: bool | None = None) -> int:
        """An entity id from its key, IRI, label in any language, or id (see the module docstring)."""
        query = self._resolve(name, allow_new=False if allow_new is None else allow_new)
        if query.id is None:
            raise InputError(f"{name!r} is not an entity of the graph")
        return query.id

    def _resolve(self, name: EntityRef, allow_new: bool | None = None) -> _Query:
        allow_new = self.allow_new if allow_new is None else allow_new
        kg = self.kg
        if isinstance(name, int | np.integer):
            if not 0 <= int(name) < kg.num_entities:
                raise InputError(f"entity id {name} is out of range 0..{kg.num_entities - 1}")
            return _Query(kg.entities[int(name)].key, int(name))
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"entity {name!r} is empty; give a key, IRI or label")
        ids = kg.lookup(name)
        if len(ids) == 1:
            return _Query(name, ids[0])
        if ids:
            shown = "; ".join(f"{kg.entities[i].key} ({self._label(i)})" for i in ids[:10])
            more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
            raise InputError(
                f"{name!r} is ambiguous: it names {len(ids)} entities: {shown}{more}; give the key"
            )
        if allow_new:
            vector = self.scorer.from_real(self.model.embed_texts([name]))
            return _Query(name, None, vector[0])
        raise InputError(
            f"unknown entity {name!r}; closest by text: {self._suggestions(name)}; give a key or label of the "
            "graph, or allow new entities (allow_new=True, --allow-new) to embed it from its text"
        )

    def _suggestions(self, name: str) -> str:
        try:
            hits = self.text_index.search(name, k=5)
        except (ConfigError, InputError, OSError, ImportError):
            import difflib

            labels = {self._label(i): i for i in range(min(self.kg.num_entities, 200_000))}
            hits = [(labels[s], 0.0) for s in difflib.get_close_matches(name, list(labels), n=5, cutoff=0.3)]
        return ", ".join(f"{self._label(i)!r} ({self.kg.entities[i].key})" for i, _ in hits) or "none"

    def _label(self, i: int) -> str:
        return self.kg.label(i, self.languages)

    def _anchor(self, query: _Query) -> torch.Tensor:
        return self._anchors([query])[0]

    def _anchors(self, queries: Sequence[_Query]) -> torch.Tensor:
        """The known side of each query: its entity's representation, or a new entity's vector from its text."""
        known = [i for i, q in enumerate(queries) if q.id is not None]
        looked_up = self.scorer.anchors([queries[i].id for i in known]) if known else None
        if len(known) == len(queries):
            return looked_up
        rows = [q.vector for q in queries]
        for n, i in enumerate(known):
            rows[i] = looked_up[n]
        return torch.stack(rows)

    @property
    def constraints(self) -> TypeConstraints:
        """The type constraints of this predictor's default mode (which entities may fill each side)."""
        return self._constraint(None)

    def _constraint(self, mode: str | None) -> TypeConstraints:
        mode = self.constraint_mode if mode is None else mode
        if mode not in self._constraints:
            self._constraints[mode] = TypeConstraints(self.kg, mode)
        return self._constraints[mode]

    # ------------------------------------------------------------------ tails and heads
    def tails(
        self,
        head: EntityRef,
        relation: RelationRef,
        k: int = 10,
        *,
        filter_known: bool | None = None,
        constraints: str | None = None,
        min_score: float | None = None,
        allow_new: bool | None = None,
    ) -> Predictions:
        """The ``k`` most probable tails of ``(head, relation, ?)``, best first."""
        return self._predict("tail", head, relation, k, filter_known, constraints, min_score, allow_new)

    def heads(
        self,
        relation: RelationRef,
        tail: EntityRef,
        k: int = 10,
        *,
        filter_known: bool | None = None,
        constraints: str | None = None,
        min_score: float | None = None,
        allow_new: bool | None = None,
    ) -> Predictions:
        """The ``k`` most probable heads of ``(?, relation, tail)``, best first."""
        return self._predict("head", tail, relation, k, filter_known, constraints, min_score, allow_new)

    def _predict(
        self,
        side: Side,
        anchor_name: EntityRef,
        relation: RelationRef,
        k: int,
        filter_known: bool | None,
        constraints: str | None,
        min_score: float | None,
        allow_new: bool | None,
    ) -> Predictions:
        k = _check_k(k)
        r = self.relation(relation)
        query = self._resolve(anchor_name, allow_new)
        if query.id is not None:  # the anchor must fit its side too (no has_symptom tails for a symptom)
            self._constraint(constraints).check(query.id, r, "head" if side == "tail" else "tail")
        ids, raw = self._top_batch(
            side, self._anchor(query)[None], np.array([r]), k, [query.id], filter_known, constraints
        )
        probs = self.calibration.probability(torch.as_tensor(raw), r).numpy()
        floor = self.min_score if min_score is None else _check_min_score(min_score)
        known = np.zeros(ids.shape[1], dtype=bool)
        if query.id is not None:
            pairs = np.stack([np.full_like(ids[0], query.id), np.full_like(ids[0], r), ids[0]], axis=1)
            known = self.links.contains(pairs if side == "tail" else pairs[:, ::-1])
        out = Predictions()
        for i, s, p, kn in zip(ids[0].tolist(), raw[0], probs[0], known, strict=True):
            if i < 0 or (floor is not None and p < floor):
                continue
            out.append(
                Prediction(
                    self.kg.entities[i].key, self._label(i), float(p), len(out) + 1, i, float(s), bool(kn)
                )
            )
        return out

    def top_tails(
        self,
        heads: Sequence[int] | np.ndarray,
        relations: Sequence[int] | np.ndarray | int,
        k: int = 10,
        *,
        filter_known: bool | None = None,
        constraints: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batched :meth:`tails` by ids, for many queries at once: ``(ids, probabilities)``, each ``(n, k)``;
        ``-1`` / NaN pad rows with fewer than ``k`` candidates."""
        return self._top_ids("tail", heads, relations, k, filter_known, constraints)

    def top_heads(
        self,
        relations: Sequence[int] | np.ndarray | int,
        tails: Sequence[int] | np.ndarray,
        k: int = 10,
        *,
        filter_known: bool | None = None,
        constraints: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batched :meth:`heads` by ids; see :meth:`top_tails`."""
        return self._top_ids("head", tails, relations, k, filter_known, constraints)

    def _top_ids(
        self,
        side: Side,
        anchors: Sequence[int] | np.ndarray,
        relations: Sequence[int] | np.ndarray | int,
        k: int,
        filter_known: bool | None,
        constraints: str | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        k = _check_k(k)
        anchor_ids = np.asarray(anchors, dtype=np.int64).reshape(-1)
        rels = np.broadcast_to(np.asarray(relations, dtype=np.int64), anchor_ids.shape).copy()
        if anchor_ids.size and (anchor_ids.min() < 0 or anchor_ids.max() >= self.kg.num_entities):
            raise InputError(f"entity ids must lie in 0..{self.kg.num_entities - 1}")
        if rels.size and (rels.min() < 0 or rels.max() >= self.kg.num_relations):
            raise InputError(f"relation ids must lie in 0..{self.kg.num_relations - 1}")
        ids, raw = self._top_batch(
            side, self.scorer.anchors(anchor_ids), rels, k, list(anchor_ids), filter_known, constraints
        )
        probs = self.calibration.probability(torch.as_tensor(raw), torch.as_tensor(rels)).numpy()
        probs[ids < 0] = np.nan
        return ids, probs

    def _top_batch(
        self,
        side: Side,
        anchors: torch.Tensor,
        rels: np.ndarray,
        k: int,
        anchor_ids: list[int | None],
        filter_known: bool | None,
        constraints: str | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` candidate ids and their exact raw scores per query row; ``-1`` where none is left."""
        filter_known = self.filter_known if filter_known is None else filter_known
        cons = self._constraint(constraints)
        excluded: list[np.ndarray] = []
        for a, r in zip(anchor_ids, rels.tolist(), strict=True):
            if not filter_known or a is None:
                excluded.append(np.zeros(0, dtype=np.int64))
            else:
                known = self.links.tails_of(a, r) if side == "tail" else self.links.heads_of(r, a)
                excluded.append(np.sort(known))
        masks = {r: cons.mask(r, side) for r in set(rels.tolist())}
        blocked = {r: torch.from_numpy(~m) for r, m in masks.items() if m is not None}
        raw, ids = self.scorer.best(
            side,
            anchors,
            self.scorer.relations(rels),
            k,
            anchor_ids=anchor_ids,
            exclude=excluded,
            blocked=[blocked.get(r) for r in rels.tolist()],
        )
        return ids.numpy(), raw.numpy()

    # ------------------------------------------------------------------ relations and scores
    def relations(
        self,
        head: EntityRef,
        tail: EntityRef,
        k: int = 5,
        *,
        filter_known: bool | None = None,
        constraints: str | None = None,
        allow_new: bool | None = None,
    ) -> list[Prediction]:
        """The ``k`` most probable relations between ``head`` and ``tail``."""
        k = _check_k(k)
        h, t = self._resolve(head, allow_new), self._resolve(tail, allow_new)
        if h.id is None and t.id is None:
            raise InputError(
                "relations() needs the head or the tail to be an entity of the graph; both are new"
            )
        num = self.kg.num_relations
        rel_ids = np.arange(num)
        rel_reps = self.scorer.relations(rel_ids)
        if t.id is not None:
            anchors = self._anchor(h)[None].expand(num, *self._anchor(h).shape)
            raw = self.scorer.exact("tail", anchors, rel_reps, torch.full((num, 1), t.id))[:, 0]
        else:
            anchors = self._anchor(t)[None].expand(num, *self._anchor(t).shape)
            raw = self.scorer.exact("head", anchors, rel_reps, torch.full((num, 1), h.id))[:, 0]
        probs = self.calibration.probability(raw, torch.as_tensor(rel_ids)).numpy()
        cons = self._constraint(constraints)
        known = (
            self.links.contains(np.stack([np.full(num, h.id), rel_ids, np.full(num, t.id)], axis=1))
            if h.id is not None and t.id is not None
            else np.zeros(num, dtype=bool)
        )
        keep = np.ones(num, dtype=bool)
        if self.filter_known if filter_known is None else filter_known:
            keep &= ~known
        for r in range(num):
            for q, side in ((h, "head"), (t, "tail")):
                mask = cons.mask(r, side) if q.id is not None else None
                if mask is not None and not mask[q.id]:
                    keep[r] = False
        order = [r for r in np.argsort(-probs, kind="stable") if keep[r]][:k]
        return [
            Prediction(
                self.kg.relations[r],
                self.kg.relation_text(r, self.languages),
                float(probs[r]),
                n + 1,
                int(r),
                float(raw[r]),
                bool(known[r]),
            )
            for n, r in enumerate(order)
        ]

    def score(
        self, triples: Sequence[tuple[EntityRef, RelationRef, EntityRef]] | np.ndarray, *, raw: bool = False
    ) -> np.ndarray:
        """Calibrated probabilities (or, with ``raw``, the model's raw scores) of ``(head, relation, tail)``
        triples given by names or ids; this is the model's own belief, also for links already in the graph."""
        if isinstance(triples, np.ndarray) and np.issubdtype(triples.dtype, np.integer):
            ids = triples.reshape(-1, 3).astype(np.int64)
            for col, upper, what in (
                (0, self.kg.num_entities, "entity"),
                (1, self.kg.num_relations, "relation"),
            ):
                part = ids[:, [0, 2]] if col == 0 else ids[:, 1]
                if part.size and (part.min() < 0 or part.max() >= upper):
                    raise InputError(f"{what} ids must lie in 0..{upper - 1}")
        else:
            rows = list(triples)
            if rows and (isinstance(rows[0], str) or len(rows[0]) != 3):
                raise InputError(
                    "score() takes a list of (head, relation, tail) triples; wrap one triple in a list"
                )
            ids = np.array(
                [[self.entity(h), self.relation(r), self.entity(t)] for h, r, t in rows], dtype=np.int64
            ).reshape(-1, 3)
        scores = self.model.score_hrt(ids)
        if raw:
            return scores
        return self.calibration.probability(torch.as_tensor(scores), torch.as_tensor(ids[:, 1])).numpy()

    # ------------------------------------------------------------------ several pieces of evidence
    @property
    def evidence_index(self) -> EvidenceIndex:
        """Annotations, hierarchy and information content of the graph for :meth:`rank` (built on first use)."""
        if self._evidence is None:
            from kgemb.reasoning.evidence import EvidenceIndex

            self._evidence = EvidenceIndex(self.kg, self.hierarchy)
        return self._evidence

    @property
    def evidence_weight(self) -> float:
        """``alpha``: the weight of the model's log-probabilities in :meth:`rank` (given, or fitted on the
        validation split on first use; see :meth:`fit_evidence_weight`). A fitted weight is kept in the
        calibration (``calibration.json`` of the model directory), so the next predictor or ``neo4j.push`` of the
        same model, hierarchy and constraints reads it instead of fitting again."""
        if self._evidence_weight is None:
            cal = self.calibration
            key = self._evidence_weight_key()
            stored = cal.info.get("evidence_weight", {})
            if isinstance(stored, dict) and isinstance(stored.get(key), int | float):
                self._evidence_weight = float(stored[key])
            else:
                self._evidence_weight = self.fit_evidence_weight()
                cal.info["evidence_weight"] = {
                    **(stored if isinstance(stored, dict) else {}),
                    key: self._evidence_weight,
                }
                self._save_calibration("the evidence weight")
        return self._evidence_weight

    def _evidence_weight_key(self) -> str:
        """What a fitted evidence weight depends on besides the model and calibration: the hierarchy relations and
        the constraint mode."""
        hierarchy = sorted(self.kg.relations[r] for r in self.evidence_index.hierarchy.relations)
        return json.dumps({"hierarchy": hierarchy, "constraints": self.constraint_mode}, sort_keys=True)

    def fit_evidence_weight(
        self,
        split: str = "valid",
        *,
        queries: int = 100,
        grid: Sequence[float] = (0.001, 0.03, 0.1, 0.3, 1.0),
        seed: int = 0,
    ) -> float:
        """Choose ``alpha`` on held-out links: for a sample of ``split``'s links ``(h, r, t)``, rank ``h`` from
        ``t`` plus up to four of ``h``'s known ``r`` links, and keep the weight with the best MRR (the smaller on
        a tie; the smallest when the split is empty). The grid starts above 0 so that the model always orders
        candidates whose evidence in the graph is the same."""
        from kgemb.reasoning.evidence import EvidenceIndex, totals

        triples = self.kg.triples(split) if split in self.kg.splits else np.zeros((0, 3), dtype=np.int64)
        grid = [float(a) for a in grid]
        if len(triples) == 0:
            self._evidence_weight = grid[0]
            return grid[0]
        rng = np.random.default_rng(seed)
        picked = triples[rng.permutation(len(triples))[:queries]]
        reciprocal = np.zeros(len(grid))
        cons = self._constraint(None)
        known = EvidenceIndex(
            self.kg, self.hierarchy, triples=self.kg.triples("train")
        )  # held-out links unknown
        for h, r, t in picked.tolist():
            others = [int(x) for x in self.links.tails_of(h, r) if x != t][:4]
            items = [(t, r)] + [(x, r) for x in others]
            allowed = self._allowed(cons, [r], "head", [e for e, _ in items])
            if not allowed[h]:
                continue
            base = totals(known.items(items, "head"), self.kg.num_entities)
            logp = self._model_log_probability("head", [e for e, _ in items], [r for _, r in items])[1]
            for g, alpha in enumerate(grid):
                total = base + alpha * logp
                better = (total[allowed] > total[h]).sum()
                ties = (total[allowed] == total[h]).sum()
                reciprocal[g] += 1.0 / (better + (ties + 1) / 2)
        self._evidence_weight = grid[int(np.argmax(reciprocal))]
        return self._evidence_weight

    def _allowed(
        self, cons: TypeConstraints, rel_ids: Sequence[int], side: Side, exclude: Sequence
    ) -> np.ndarray:
        allowed = np.ones(self.kg.num_entities, dtype=bool)
        for r in set(rel_ids):
            mask = cons.mask(r, side)
            if mask is not None:
                allowed &= mask
        allowed[[e for e in exclude if e is not None]] = False
        return allowed

    def _model_log_probability(
        self, side: Side, anchors: Sequence[int] | torch.Tensor, rel_ids: Sequence[int]
    ) -> tuple[torch.Tensor, np.ndarray]:
        """``ln p_i(x)``, the calibrated log-probability of each evidence link ``i`` for every candidate ``x``:
        ``(num_entities, m)`` float32 (one column per link, the layout the scorer computes fastest; |error|
        ~1e-7 of |ln p|), and its sum over the links in float64 ``(num_entities,)``."""
        if not isinstance(anchors, torch.Tensor):
            anchors = self.scorer.anchors(list(anchors))
        rels = self.scorer.relations(list(rel_ids))
        raw = self.scorer.scores(side, anchors, rels, columns=True)
        logp = self.calibration.log_probability(raw, rels, columns=True)
        return logp, logp.sum(dim=1, dtype=torch.float64).numpy()

    def rank(
        self,
        evidence: Sequence[tuple[EntityRef, RelationRef] | EntityRef],
        k: int = 10,
        target: str = "head",
        *,
        relation: RelationRef | None = None,
        constraints: str | None = None,
        min_score: float | None = None,
        allow_new: bool | None = None,
        model_weight: float | None = None,
    ) -> list[Prediction]:
        """Rank the entities that best explain all pieces of ``evidence`` together.

        ``evidence`` is a list of ``(entity, relation)`` pairs (or plain entities, all with ``relation``).
        ``target="head"`` ranks candidates ``x`` for the links ``(x, relation_i, entity_i)`` — e.g. diseases from
        the symptoms of ``disease has_symptom symptom``; ``target="tail"`` ranks ``x`` in ``(entity_i,
        relation_i, x)`` — e.g. ``symptom symptom_of disease``.

        Combination: the generative log-likelihood of :mod:`kgemb.reasoning.evidence` — known links (exact, or
        through the hierarchy ``is_a`` / ``rdfs:subClassOf`` / ``skos:broader``) count by their likelihood
        ratio against the background (rare terms and candidates with few annotations weigh more), a more
        specific or sibling term counts by its closeness, unmatched items cost a bounded penalty, and the model's
        calibrated log-probabilities are added with weight ``model_weight`` (default: :attr:`evidence_weight`,
        chosen on the validation split).
        A candidate's ``raw`` is its log-likelihood ``L(x)``; its ``score`` is ``P(x)``, normalised over every
        allowed candidate (so the scores of all candidates sum to 1). The order is strict wherever the evidence
        differs. Each answer lists each item's contribution: its match (``exact``, ``hierarchy`` with the
        common term ``via``, or ``unmatched``), its likelihood ratio, its log-likelihood and the model's
        probability of the link.
        Candidates of the wrong type and the evidence entities themselves are left out.
        """
        from kgemb.reasoning.evidence import describe, log_likelihood, normalise, order, totals

        k = _check_k(k)
        if target not in ("head", "tail"):
            raise InputError(f"target {target!r} is unknown; use 'head' or 'tail'")
        items = list(evidence) if not isinstance(evidence, str) else [evidence]
        if not items:
            raise InputError(
                "the evidence is empty; give at least one (entity, relation) pair, e.g. [('fever', 'has_symptom')]"
            )
        side: Side = "head" if target == "head" else "tail"
        evidence_side: Side = "tail" if target == "head" else "head"
        cons = self._constraint(constraints)
        queries: list[_Query] = []
        rel_ids: list[int] = []
        for item in items:
            if isinstance(item, tuple | list):
                if len(item) != 2:
                    raise InputError(f"evidence {item!r} is not an (entity, relation) pair")
                name, rel = item
            elif relation is not None:
                name, rel = item, relation
            else:
                raise InputError(
                    f"evidence {item!r} has no relation; give (entity, relation) pairs or relation=..."
                )
            r = self.relation(rel)
            q = self._resolve(name, allow_new)
            if q.id is not None:
                cons.check(q.id, r, evidence_side)
            queries.append(q)
            rel_ids.append(r)
        if model_weight is not None and (not isinstance(model_weight, int | float) or model_weight < 0):
            raise InputError(f"model_weight must be a number >= 0; got {model_weight!r}")
        alpha = self.evidence_weight if model_weight is None else float(model_weight)
        anchors = self._anchors(queries)
        logp = self._model_log_probability(side, anchors, rel_ids) if alpha > 0 else None
        evidence_items = self.evidence_index.items(
            [(q.id, r) for q, r in zip(queries, rel_ids, strict=True)], target
        )
        total = totals(evidence_items, self.kg.num_entities)
        if logp is not None:
            total += alpha * logp[1]
        allowed = self._allowed(cons, rel_ids, side, [q.id for q in queries])
        probability = normalise(total, allowed)
        floor = self.min_score if min_score is None else _check_min_score(min_score)
        ranked = [int(i) for i in order(total, allowed, k)]
        if floor is not None:
            ranked = [i for i in ranked if probability[i] >= floor]
        if not ranked:
            return []
        scores = log_likelihood(  # each item's part, for the ranked candidates only
            evidence_items,
            self.kg.num_entities,
            None if logp is None else logp[0][ranked].T.double().numpy(),
            alpha=alpha,
            candidates=np.asarray(ranked),
        )
        # the model's probability of each evidence link from the interaction itself: the product form loses
        # digits to cancellation exactly where a link is likely (|q|² + |t|² - 2 q·t with q close to t)
        cand = torch.as_tensor(ranked)
        exact = self.scorer.exact(
            side, anchors, self.scorer.relations(rel_ids), cand[None].expand(len(queries), -1)
        )
        model_p = self.calibration.probability(exact.double(), torch.as_tensor(rel_ids)).numpy()
        # each item's names once (not once per answer), each common term's label once
        items = [
            (q.text, q.text, self.kg.relations[r])
            if q.id is None
            else (self.kg.entities[q.id].key, self._label(q.id), self.kg.relations[r])
            for q, r in zip(queries, rel_ids, strict=True)
        ]
        via_names = {
            v: (self.kg.entities[v].key, self._label(v)) for v in np.unique(scores.via).tolist() if v >= 0
        }
        out: list[Prediction] = []
        for j, i in enumerate(ranked):
            contributions = []
            for row, (key, label, rel_name) in enumerate(items):
                via_key, via_label = via_names.get(int(scores.via[row, j]), (None, None))
                contributions.append(
                    Contribution(
                        key,
                        label,
                        rel_name,
                        float(model_p[row, j]),
                        bool(scores.kind[row, j] == 2),
                        describe(scores.kind[row, j]),
                        via_key,
                        via_label,
                        float(scores.ratio[row, j]),
                        float(scores.per_item[row, j]),
                    )
                )
            out.append(
                Prediction(
                    self.kg.entities[i].key,
                    self._label(i),
                    float(probability[i]),
                    len(out) + 1,
                    i,
                    float(total[i]),
                    False,
                    contributions,
                )
            )
        return out

    # ------------------------------------------------------------------ text and explanations
    @property
    def text_index(self) -> TextIndex:
        """The text search index (built on first use)."""
        if self._text_index is None:
            from kgemb.reasoning.search import TextIndex

            self._text_index = TextIndex(self.model)
        return self._text_index

    def search(self, text: str, k: int = 10) -> Predictions:
        """Entities whose texts (any label or description, any language) are closest to a free text; the
        score is the cosine similarity of the best-matching text (see :mod:`kgemb.reasoning.search`)."""
        return self.search_many([text], k)[0]

    def search_many(self, texts: Sequence[str], k: int = 10) -> list[list[Prediction]]:
        """:meth:`search` for several texts at once: the queries are encoded in one batch."""
        k = _check_k(k)
        if isinstance(texts, str):
            raise InputError("search_many takes a list of texts; for one text call search(text)")
        return [
            Predictions(
                Prediction(self.kg.entities[i].key, self._label(i), sim, n + 1, i)
                for n, (i, sim) in enumerate(hits)
            )
            for hits in self.text_index.search_many(list(texts), k)
        ]

    def explain(self, head: EntityRef, relation: RelationRef, tail: EntityRef, **options: Any) -> Explanation:
        """Why ``(head, relation, tail)`` is (or is not) likely: its probability, the strongest supporting paths
        in the graph and the nearest entities by text; see :func:`kgemb.reasoning.explain.explain`."""
        from kgemb.reasoning.explain import explain

        return explain(self, head, relation, tail, **options)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise InputError(f"k must be a positive whole number of answers; got {k!r}")
    return int(k)


def _check_min_score(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise InputError(f"min_score must be a probability between 0 and 1; got {value!r}")
    return float(value)


def format_predictions(predictions: Sequence[Prediction], title: str = "") -> str:
    """A readable table of ranked answers (the CLI's output without ``--json``)."""
    lines = [title] if title else []
    if not predictions:
        lines.append("(no answers: every candidate was filtered out)")
        return "\n".join(lines)
    with_evidence = any(p.contributions for p in predictions)
    label_w = min(40, max(5, *(len(p.label) for p in predictions)))
    head = f"{'rank':>4}  {'score':>6}  {'label':<{label_w}}  key"
    lines.append(
        head
        + ("  evidence (= exact, ~ through the hierarchy: via term, x unmatched)" if with_evidence else "")
    )
    for p in predictions:
        label = p.label if len(p.label) <= label_w else p.label[: label_w - 1] + "…"
        mark = " *" if p.known else ""
        row = f"{p.rank:>4}  {p.score:>6.3f}  {label:<{label_w}}  {p.key}{mark}"
        if p.contributions:
            row += "  " + ", ".join(_contribution_text(c) for c in p.contributions)
        lines.append(row)
    return "\n".join(lines)


def _contribution_text(c: Contribution) -> str:
    """``fever =`` (exact), ``seizure ~ via Seizure`` (through the hierarchy) or ``cough x`` (unmatched)."""
    if c.match == "exact":
        return f"{c.label} ="
    if c.match == "hierarchy":
        return f"{c.label} ~ {c.via_label}"
    return f"{c.label} x"
