"""Predicted links: the k most probable new tails per head, written back as relationships."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from kgemb.connectors._neo4j_common import (
    ENTITY_LABEL,
    MODEL_LABEL,
    chunks,
    default_database,
    open_driver,
    quote,
    translate_errors,
    write,
    write_batches,
)
from kgemb.connectors._neo4j_nodes import _Nodes

from kgemb.errors import ConfigError, InputError
from kgemb.names import readable_key

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph
    from kgemb.model import TrainedModel


@dataclass(frozen=True)
class Link:
    """One predicted link: entity keys, the relation key, its calibrated probability and rank for the head."""

    head: str
    relation: str
    tail: str
    score: float
    rank: int
    head_label: str
    tail_label: str


def predict_links(
    model: TrainedModel,
    relation: str,
    *,
    head_label: str | None = None,
    k: int = 5,
    min_score: float | None = None,
    directory: str | os.PathLike | None = None,
    batch_size: int = 1024,
) -> list[Link]:
    """The ``k`` most probable new tails of ``relation`` for every node of the head label, through
    :class:`~kgemb.reasoning.LinkPredictor`: known links and self-links left out, tails limited to the types the
    relation's tails have. ``score`` is the calibrated probability (the calibration saved in the model
    ``directory`` when given); ``min_score`` drops weaker links."""
    from kgemb.reasoning import LinkPredictor

    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ConfigError(f"min_score is a calibrated probability between 0 and 1, not {min_score!r}")
    kg = model.kg
    predictor = LinkPredictor(model, directory=directory)
    r = predictor.relation(relation)
    heads = heads_for(model, relation, head_label)
    links: list[Link] = []
    for start, stop in chunks(len(heads), batch_size):
        batch = heads[start:stop]
        ids, probs = predictor.top_tails(batch, r, k + 1)
        for h, row_ids, row_probs in zip(batch.tolist(), ids.tolist(), probs.tolist(), strict=True):
            rank = 0
            for t, p in zip(row_ids, row_probs, strict=True):
                if t < 0 or t == h or rank == k or (min_score is not None and p < min_score):
                    continue
                rank += 1
                links.append(
                    Link(
                        kg.entities[h].key,
                        kg.relations[r],
                        kg.entities[t].key,
                        p,
                        rank,
                        kg.label(h),
                        kg.label(t),
                    )
                )
    return links


def _labels(kg: KnowledgeGraph) -> list[str]:
    return sorted({t for e in kg.entities for t in e.types})[:20]


def heads_for(model: TrainedModel, relation: str, head_label: str | None = None) -> np.ndarray:
    """Entity ids to predict ``relation`` links for: those carrying ``head_label`` (default: the label most heads
    of the relation carry; the entities seen as its heads when the graph has no labels)."""
    kg = model.kg
    r = kg.relation_id(relation)
    triples = kg.all_triples()
    seen = np.unique(triples[triples[:, 1] == r, 0])
    if head_label is None:
        counts = Counter(kg.entities[i].types[0] for i in seen.tolist() if kg.entities[i].types)
        if not counts:
            return seen
        head_label = counts.most_common(1)[0][0]
    ids = np.array([i for i, e in enumerate(kg.entities) if head_label in e.types], dtype=np.int64)
    if not len(ids):
        raise InputError(f"no entity has the head label {head_label!r}; labels in the graph: {_labels(kg)}")
    return ids


def predicted_type(relation: str) -> str:
    """The default relationship type of predicted links: ``PREDICTED_`` + the relation's name in upper case."""
    stem = re.sub(r"\W+", "_", readable_key(relation) if "://" in relation else relation).strip("_")
    return "PREDICTED_" + (stem.upper() or "LINK")


@dataclass
class WriteReport:
    """What writing predicted links changed: relationships created, updated (new score or rank), deleted (no
    longer predicted by this model for that head)."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    missing_nodes: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


def write_links(
    links: Sequence[Link],
    model: TrainedModel,
    uri_or_driver: Any,
    *,
    name: str = "kgemb",
    relation: str | None = None,
    relationship_type: str | None = None,
    heads: Sequence[str] | None = None,
    batch_size: int = 500,
    database: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> WriteReport:
    """Store predicted links as ``(head)-[:PREDICTED_R {model, score, rank, created_at}]->(tail)``, ``MERGE``d on
    (head, type, model, tail): a second run changes nothing, and a rerun after a crash completes the job.

    For every head in ``heads`` (default: the heads of ``links``) this model's links that are no longer predicted
    are deleted, so the database holds exactly the current predictions. Each batch of heads is one transaction.
    ``relation`` (key or label) is needed only when ``links`` is empty.
    """
    kg = model.kg
    relations = {link.relation for link in links}
    if relation is not None:
        relations.add(kg.relations[kg.relation_id(relation)])
    if len(relations) != 1:
        raise InputError(
            f"write_links takes the links of one relation at a time; got {sorted(relations) or 'none'} "
            "(pass relation= when there are no links)"
        )
    type_name = predicted_type(next(iter(relations))) if relationship_type is None else relationship_type
    rel_type = quote(type_name, "relationship type")
    quote(name, "model name")
    if not links and not heads:
        return WriteReport()
    by_head: dict[str, list[Link]] = {h: [] for h in heads or ()}
    for link in links:
        by_head.setdefault(link.head, []).append(link)
    ids = sorted({kg.entity_id(h) for h in by_head} | {kg.entity_id(x.tail) for x in links})
    database = default_database(database)
    report = WriteReport()
    with open_driver(uri_or_driver, username, password) as (driver, where), translate_errors(where):
        nodes = _Nodes.of(kg, ENTITY_LABEL)
        eid = {kg.entities[i].key: e for i, e in nodes.resolve(driver, database, kg, ids).items()}
        report.missing_nodes = len(ids) - len(eid)
        rows = [
            {
                "h": eid[h],
                "keep": [eid[x.tail] for x in items if x.tail in eid],
                "tails": [{"t": eid[x.tail], "s": x.score, "rank": x.rank} for x in items if x.tail in eid],
            }
            for h, items in by_head.items()
            if h in eid
        ]
        query = (
            "UNWIND $rows AS row MATCH (h) WHERE elementId(h) = row.h "
            "CALL (h, row) { "
            f"  MATCH (h)-[old:{rel_type} {{model: $model}}]->(t) WHERE NOT elementId(t) IN row.keep "
            "  DELETE old RETURN count(old) AS deleted } "
            "CALL (h, row) { "
            "  UNWIND row.tails AS link MATCH (t) WHERE elementId(t) = link.t "
            f"  MERGE (h)-[p:{rel_type} {{model: $model}}]->(t) "
            "  ON CREATE SET p.created_at = datetime(), p.new = true "
            "  WITH p, link WHERE p.new IS NOT NULL OR p.score <> link.s OR p.rank <> link.rank "
            "  SET p.score = link.s, p.rank = link.rank "
            "  WITH p, p.new IS NOT NULL AS created REMOVE p.new "
            "  RETURN sum(CASE WHEN created THEN 1 ELSE 0 END) AS created, "
            "         sum(CASE WHEN created THEN 0 ELSE 1 END) AS updated } "
            "RETURN sum(deleted) AS deleted, sum(created) AS created, sum(updated) AS updated"
        )

        def count(_: int, records: list[Any]) -> None:
            for rec in records:
                report.created += rec["created"] or 0
                report.updated += rec["updated"] or 0
                report.deleted += rec["deleted"] or 0

        write(
            driver,
            database,
            f"MERGE (m:{MODEL_LABEL} {{name: $name}}) WITH m WHERE NOT $type IN coalesce(m.predicted_types, []) "
            "SET m.predicted_types = coalesce(m.predicted_types, []) + $type",
            name=name,
            type=type_name,
        )
        write_batches(
            driver,
            database,
            query,
            (rows[a:b] for a, b in chunks(len(rows), batch_size)),
            on_batch=count,
            model=name,
        )
    return report
