"""Answering link prediction through ``db.index.vector.queryNodes``, re-scored exactly with the model."""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from kgemb.connectors._neo4j_common import (
    ELEMENT_ID,
    ENTITY_LABEL,
    MODEL_LABEL,
    RELATION_LABEL,
    default_database,
    open_driver,
    read,
    translate_errors,
)
from kgemb.connectors._neo4j_nodes import _Nodes
from kgemb.connectors._neo4j_vectors import cypher_query_vector, query_vectors

from kgemb.errors import ConfigError, InputError, KgembError

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph
    from kgemb.model import TrainedModel


def tail_query_cypher(interaction: str, direction: str = "tail") -> str:
    """The Cypher that answers (node, relation, ?) — or (?, relation, node) with ``direction="head"`` — from the
    pushed vectors alone (no plugin: Aura too): the query vector the interaction implies, then
    ``db.index.vector.queryNodes``, leaving out links the graph has and nodes of types the relation does not take.

    Parameters: ``$model`` (model node name), ``$relation`` (relation key), ``$node`` (element id of the known
    node), ``$candidates`` (how many nearest nodes to fetch). Returns ``id`` (element id), ``key`` and ``score``
    (the approximate index similarity; re-score candidates exactly with the model, or use the kgemb plugin).
    """
    expr = cypher_query_vector(interaction, direction, known="v", relation="r")
    known = "(x)-[e]->(node)" if direction == "tail" else "(node)-[e]->(x)"
    side = "tail_types" if direction == "tail" else "head_types"
    return (
        f"MATCH (m:{MODEL_LABEL} {{name: $model}})-[:HAS_RELATION]->(rel:{RELATION_LABEL} {{key: $relation}})\n"
        "MATCH (x) WHERE elementId(x) = $node\n"
        f"WITH m, x, rel, x[m.vector_property] AS v, rel.vector AS r, coalesce(rel.{side}, []) AS allowed\n"
        f"WITH m, x, rel, allowed, {expr} AS q\n"
        "CALL db.index.vector.queryNodes(m.index, $candidates, q) YIELD node, score\n"
        f"WHERE NOT EXISTS {{ MATCH {known} WHERE type(e) = coalesce(rel.type, rel.key) }}\n"
        "  AND (size(allowed) = 0 OR any(l IN labels(node) WHERE l IN allowed)\n"
        "       OR none(l IN labels(node) WHERE l IN coalesce(m.type_labels, [])))\n"
        "RETURN elementId(node) AS id, node[m.key] AS key, score"
    )


@dataclass
class _QueryHelpers:
    """What answering through the index needs besides the database, built once per model."""

    signature: str
    links: Any  # reasoning.links.LinkIndex
    constraints: Any  # reasoning.constraints.TypeConstraints


_HELPERS: weakref.WeakKeyDictionary[Any, _QueryHelpers] = weakref.WeakKeyDictionary()


def _helpers(model: TrainedModel) -> _QueryHelpers:
    helpers = _HELPERS.get(model)
    if helpers is None:
        from kgemb.reasoning.calibration import model_signature
        from kgemb.reasoning.constraints import TypeConstraints
        from kgemb.reasoning.links import LinkIndex

        kg = model.kg
        helpers = _HELPERS[model] = _QueryHelpers(
            model_signature(model), LinkIndex(kg.all_triples(), kg.num_entities), TypeConstraints(kg)
        )
    return helpers


def _model_node(driver: Any, database: str | None, name: str, model: TrainedModel) -> dict[str, Any]:
    """The pushed model node's properties, checked to be complete and to belong to ``model``."""
    rows = read(driver, database, f"MATCH (m:{MODEL_LABEL} {{name: $name}}) RETURN m {{.*}} AS m", name=name)
    if not rows:
        raise ConfigError(f"no model {name!r} in this database: run `kgemb neo4j push DIR --uri URI` first")
    node = dict(rows[0]["m"])
    if not node.get("complete"):
        raise ConfigError(f"the push of model {name!r} did not finish; run `kgemb neo4j push` again")
    if node.get("signature") != _helpers(model).signature:
        raise ConfigError(
            f"model {name!r} in the database is another version than this one; push this model again "
            "(or pass the name it was pushed under)"
        )
    return node


def _candidates(k: int, candidates: int | None, n: int) -> int:
    if k < 1:
        raise ConfigError(f"k={k} must be at least 1")
    return max(1, min(candidates or max(10 * k, 100), n))


def _ranked(
    model: TrainedModel, ids: list[int], scores: np.ndarray, index_scores: list[float], k: int
) -> list:
    order = np.argsort(-scores, kind="stable")[:k]
    kg = model.kg
    return [
        {
            "key": kg.entities[ids[j]].key,
            "label": kg.label(ids[j]),
            "score": float(scores[j]),
            "rank": rank,
            "index_score": float(index_scores[j]),
        }
        for rank, j in enumerate(order.tolist(), start=1)
    ]


def predict_via_index(
    model: TrainedModel,
    uri_or_driver: Any,
    *,
    relation: str,
    head: str | None = None,
    tail: str | None = None,
    text: str | None = None,
    k: int = 10,
    candidates: int | None = None,
    exclude_known: bool = True,
    constraints: bool = True,
    name: str = "kgemb",
    database: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> list[dict[str, Any]]:
    """Link prediction through Neo4j: the query vector from the pushed vectors, ``db.index.vector.queryNodes``
    for candidates, then exact re-scoring with the model. Give ``head`` (find tails), ``tail`` (find heads) —
    by key or label — or ``text``: a new entity described in words, as head.

    Known links are left out (``exclude_known``), and so are candidates whose labels that side of the relation
    does not take (``constraints``, see ``reasoning.constraints``). Returns ``[{"key", "label", "score", "rank",
    "index_score"}]``, best first.
    """
    if sum(x is not None for x in (head, tail, text)) != 1:
        raise InputError("give exactly one of head, tail or text")
    kg = model.kg
    r = kg.relation_id(relation)
    n = _candidates(k, candidates, kg.num_entities)
    database = default_database(database)
    with open_driver(uri_or_driver, username, password) as (driver, where), translate_errors(where):
        meta = _model_node(driver, database, name, model)
        interaction = meta["interaction"]
        if text is not None:
            vector = model.embed_texts([text])
            q = query_vectors(interaction, "tail", vector.numpy(), model.relation_vectors()[r])[0]
            rows = read(
                driver,
                database,
                "CALL db.index.vector.queryNodes($index, $candidates, $q) YIELD node, score "
                "RETURN elementId(node) AS id, node[$key] AS key, score",
                index=meta["index"],
                candidates=n,
                q=q.tolist(),
                key=meta["key"],
            )
            ids, index_scores = _entity_ids(kg, meta, rows)
            scores = model.score_tails_from_vectors(vector, [r])[0].numpy()[ids]
            return _ranked(model, ids, scores, index_scores, k)
        known_name = head if head is not None else tail
        direction = "tail" if head is not None else "head"
        x = _one_entity(kg, str(known_name))
        element_id = _Nodes.of(kg, ENTITY_LABEL).resolve(driver, database, kg, [x]).get(x)
        if element_id is None:
            raise InputError(
                f"{known_name!r} ({kg.entities[x].key}) has no node in this database; push first"
            )
        keep = _survivor_filter(model, x, r, direction, exclude_known, constraints)
        # the index's neighbours include known links and nodes of other types, dropped after the fact: widen the
        # request until k survive or every node was asked for (so k answers never come back as fewer)
        while True:
            rows = read(
                driver,
                database,
                tail_query_cypher(interaction, direction),
                model=name,
                relation=kg.relations[r],
                node=element_id,
                candidates=n,
            )
            if not rows and n >= kg.num_entities:
                raise ConfigError(
                    f"relation {kg.relations[r]!r} has no vector in model {name!r}; push the model again"
                )
            ids, index_scores = _entity_ids(kg, meta, rows)
            survivors = [j for j, i in enumerate(ids) if keep(i)]
            if len(survivors) >= k or n >= kg.num_entities:
                break
            n = min(2 * n, kg.num_entities)
    if not survivors:
        return []
    ids, index_scores = [ids[j] for j in survivors], [index_scores[j] for j in survivors]
    # the model's whole score of the query, as LinkPredictor ranks it (a reciprocal model scores head queries
    # with the inverse relation; the rule and text channels are included)
    row = model.score_tails([x], [r]) if direction == "tail" else model.score_heads([r], [x])
    return _ranked(model, ids, row[0].numpy()[ids], index_scores, k)


def _survivor_filter(
    model: TrainedModel, x: int, r: int, direction: str, exclude_known: bool, constraints: bool
) -> Any:
    """Whether a candidate entity may answer (x, r, ?) (or (?, r, x)): not a known link, not x itself, and of a type
    that side of the relation takes."""
    helpers = _helpers(model)
    mask = helpers.constraints.mask(r, direction) if constraints else None
    known: set[int] = set()
    if exclude_known:
        links = helpers.links
        known = set((links.tails_of(x, r) if direction == "tail" else links.heads_of(r, x)).tolist()) | {x}
    return lambda i: i not in known and (mask is None or bool(mask[i]))


def search_via_index(
    model: TrainedModel,
    uri_or_driver: Any,
    text: str,
    *,
    k: int = 10,
    name: str = "kgemb",
    database: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> list[dict[str, Any]]:
    """Entities nearest to a free text (any language the encoder knows): the model's text vector for it, then
    ``db.index.vector.queryNodes``. Returns ``[{"key", "label", "score", "rank"}]`` with the index score."""
    kg = model.kg
    database = default_database(database)
    q = model.embed_texts([text])[0].numpy()
    with open_driver(uri_or_driver, username, password) as (driver, where), translate_errors(where):
        meta = _model_node(driver, database, name, model)
        rows = read(
            driver,
            database,
            "CALL db.index.vector.queryNodes($index, $k, $q) YIELD node, score "
            "RETURN elementId(node) AS id, node[$key] AS key, score",
            index=meta["index"],
            k=_candidates(k, k, kg.num_entities),
            q=q.astype(np.float32).tolist(),
            key=meta["key"],
        )
    ids, scores = _entity_ids(kg, meta, rows)
    return [
        {"key": kg.entities[i].key, "label": kg.label(i), "score": float(s), "rank": rank}
        for rank, (i, s) in enumerate(zip(ids, scores, strict=True), start=1)
    ]


def _entity_ids(
    kg: KnowledgeGraph, meta: Mapping[str, Any], rows: Sequence[Any]
) -> tuple[list[int], list[float]]:
    """Entity ids and index scores of queryNodes rows (nodes that are not entities of this graph skipped)."""
    ids: list[int] = []
    scores: list[float] = []
    for row in rows:
        key = row["id"] if meta["key"] == ELEMENT_ID else row["key"]
        if key is None:
            continue
        try:
            ids.append(kg.entity_id(str(key)))
        except KgembError:
            continue
        scores.append(float(row["score"]))
    return ids, scores


def _one_entity(kg: KnowledgeGraph, name: str) -> int:
    found = kg.lookup(name)
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"no entity is called {name!r}; give its key or one of its labels")
    shown = ", ".join(f"{kg.entities[i].key} ({kg.label(i)})" for i in found[:5])
    raise InputError(f"{name!r} names {len(found)} entities ({shown}); give the key of the one you mean")
