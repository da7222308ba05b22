"""Neo4j pull: read a graph (nodes, labels, texts, relationships) into a KnowledgeGraph."""

from __future__ import annotations

import re
import time
from array import array
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
from kgemb.connectors._neo4j_common import (
    ELEMENT_ID,
    MODEL_LABEL,
    RELATION_LABEL,
    chunks,
    default_database,
    label_expression,
    open_driver,
    quote,
    read,
    translate_errors,
)

from kgemb.errors import ConfigError, InputError
from kgemb.names import normalize_language, readable_key

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph


#: property -> text kind (``label``, ``alias``, ``description``), optionally ``@language``. ``name_*`` matches
#: ``name_zh``, ``name_pt_br`` …, the suffix giving the language.
DEFAULT_TEXT_PROPERTIES: dict[str, str] = {
    "name": "label",
    "title": "label",
    "label": "label",
    "prefLabel": "label",
    "name_*": "label",
    "label_*": "label",
    "aliases": "alias",
    "synonyms": "alias",
    "altLabel": "alias",
    "description": "description",
    "definition": "description",
    "description_*": "description",
}
_LANG_SUFFIX = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*")
_KINDS = ("label", "alias", "description")


def pull(
    uri_or_driver: Any,
    *,
    labels: Sequence[str] | None = None,
    relationship_types: Sequence[str] | None = None,
    query: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    key: str = ELEMENT_ID,
    text_properties: Mapping[str, Any] | None = None,
    attributes: Sequence[str] = (),
    database: str | None = None,
    username: str | None = None,
    password: str | None = None,
    page_size: int = 5000,
    progress: bool = True,
) -> KnowledgeGraph:
    """Read a graph from Neo4j: every node and relationship, those of some ``labels`` / ``relationship_types``,
    or the rows of a Cypher ``query`` returning ``head`` and ``tail`` nodes and a ``relation`` (relationship or
    string). All triples land in the ``train`` split (use ``kg.split()``).

    Entity keys are ``elementId(n)`` or the value of the ``key`` property. Texts come from ``text_properties``
    (``{"name": "label", "name_zh": "label@zh", "summary": "description@en"}``, or per label:
    ``{"Disease": {...}, "*": {...}}``); ``attributes`` names other properties to keep. Nodes come back in
    records of ``page_size`` nodes, each with its outgoing relationships (the server holds only the list of node
    references), so no single huge result is built; a query's rows are streamed in ``page_size`` batches.
    """
    from tqdm import tqdm

    from kgemb.graph import GraphBuilder

    labels = list(labels or [])
    types = list(relationship_types or [])
    node_labels = label_expression(labels)
    rel_types = label_expression(types, "relationship type")
    key_part = "elementId({0})" if key == ELEMENT_ID else "{0}." + quote(key, "key property")
    for name in attributes:
        quote(name, "attribute property")
    if query is not None and (labels or types):
        raise ConfigError("pass either query or labels/relationship_types, not both")
    database = default_database(database)
    began = time.perf_counter()
    with open_driver(uri_or_driver, username, password) as (driver, where), translate_errors(where):
        specs = _text_specs(text_properties, _property_keys(driver, database))
        wanted = sorted({p for spec in specs.values() for p in spec} | set(attributes))
        projection = ", ".join(f".{quote(p, 'text property')}" for p in wanted)

        def node_row(v: str, out_edges: str = "") -> str:
            """One node as ``[element id, id, labels, key, {text properties}]`` (+ its outgoing edges). The
            integer ``id`` names a node within this one read (edges point to tails by it: a few bytes where an
            element id takes some 40)."""
            return f"[elementId({v}), id({v}), labels({v}), {key_part.format(v)}, {v} {{{projection}}}{out_edges}]"

        builder = GraphBuilder()
        relations = _Relations(builder)
        position: dict[str, int] = {}
        key_types: set[str] = set()
        ids: list[str] = []
        triples: list[tuple[str, Any, str]] = []
        # until every node has its id: the server's node ids in pull order, and the edges as
        # (head entity id, relation id, tail node id) columns
        node_ids, heads, rels, tails = array("q"), array("q"), array("q"), array("q")

        def add_nodes(rows: Sequence[Sequence[Any]]) -> None:
            for eid, node_id, node_labels_, key_value, props, *edges in rows:
                entity_key = _entity_key(eid, key, key_value, key_types)
                h = position[eid] = builder.add_entity(entity_key)
                ids.append(eid)
                node_ids.append(node_id)
                _add_node(builder, entity_key, node_labels_, props, specs, labels, attributes)
                if edges and edges[0]:
                    rel_types, tail_ids = zip(*edges[0], strict=True)  # C loops, not one Python step per edge
                    heads.extend(repeat(h, len(tail_ids)))
                    rels.extend(map(relations.__getitem__, rel_types))
                    tails.extend(tail_ids)

        bar = tqdm(unit="node", desc="neo4j pull nodes", disable=not progress)
        from neo4j import READ_ACCESS

        with driver.session(  # read access: the server refuses any write a pull query attempts
            database=database,
            fetch_size=page_size,
            notifications_min_severity="OFF",
            default_access_mode=READ_ACCESS,
        ) as session:
            if query is None:
                # node references are collected on the server (a few bytes each); the nodes come back page by
                # page, each with its outgoing relationships
                tail_filter = f" AND b{node_labels}" if labels else ""
                edges = (
                    f", [(x)-[r{rel_types}]->(b) WHERE NOT type(r) IN $skip{tail_filter} | [type(r), id(b)]]"
                )
                pages = session.run(
                    f"MATCH (n{node_labels}) WHERE NOT n:{MODEL_LABEL} AND NOT n:{RELATION_LABEL} "
                    "WITH collect(n) AS nodes UNWIND range(0, size(nodes) - 1, $page) AS start "
                    f"RETURN size(nodes) AS total, [x IN nodes[start..start + $page] | {node_row('x', edges)}] AS page",
                    page=page_size,
                    skip=_predicted_types(driver, database),
                )
                for record in pages:
                    bar.total = record["total"]
                    add_nodes(record["page"])
                    bar.update(len(record["page"]))
            else:
                seen, triples = _query_rows(session, query, dict(parameters or {}))
        if query is not None:
            bar.total = len(seen)
            node_query = f"UNWIND $ids AS id MATCH (n) WHERE elementId(n) = id RETURN collect({node_row('n')}) AS nodes"
            for start, stop in chunks(len(seen), page_size):
                add_nodes(read(driver, database, node_query, ids=seen[start:stop])[0]["nodes"])
                bar.update(stop - start)
            if len(ids) != len(seen):
                raise InputError(f"{len(seen) - len(ids)} nodes vanished while pulling; pull again")
        bar.close()
        if len(key_types) > 1:
            raise InputError(
                f"key property {key!r} holds both numbers and strings; use one type, or pull with key='elementId'"
            )
        if query is None:
            builder.add_triple_id_rows(_edge_rows(node_ids, heads, rels, tails))
        else:
            for h, r, t in triples:
                builder.add_triple_ids(position[h], relations[r], position[t])
    seconds = time.perf_counter() - began
    metadata = {
        "source": "neo4j",
        "neo4j": {
            "uri": where,
            "database": database,
            "key": key,
            "key_type": key_types.pop() if key_types else "str",
            "labels": labels,
            "relationship_types": types,
            "query": query,
        },
        "pull": {"nodes": len(ids), "relationships": builder.num_triples, "seconds": round(seconds, 3)},
    }
    return builder.build(metadata)


class _Relations(dict):
    """Relationship type -> relation id, adding the relation (with a readable label) to the builder when new."""

    def __init__(self, builder: Any) -> None:
        super().__init__()
        self.builder = builder

    def __missing__(self, rel_type: str) -> int:
        text = readable_key(rel_type)
        r = self[rel_type] = self.builder.add_relation(
            rel_type, {"": [text.lower() if text.isupper() else text]}
        )
        return r


def _edge_rows(node_ids: array, heads: array, rels: array, tails: array) -> np.ndarray:
    """``(head, relation, tail)`` entity-id rows from edge columns whose tails are server node ids, in pull
    order; edges to nodes outside the pull (a kgemb model node) are left out."""
    node = np.frombuffer(node_ids, dtype=np.int64)
    tail = np.frombuffer(tails, dtype=np.int64)
    order = np.argsort(node, kind="stable")
    found = np.searchsorted(node, tail, sorter=order).clip(max=max(len(node) - 1, 0))
    rows = np.empty((len(tail), 3), dtype=np.int64)
    if len(node) == 0:
        return rows[:0]
    position = order[found]
    inside = node[position] == tail
    rows[:, 0] = np.frombuffer(heads, dtype=np.int64)
    rows[:, 1] = np.frombuffer(rels, dtype=np.int64)
    rows[:, 2] = position
    return rows[inside]


def _predicted_types(driver: Any, database: str | None) -> list[str]:
    """Relationship types kgemb wrote predicted links as (kept on the model nodes); a pull leaves them out."""
    rows = read(
        driver,
        database,
        f"MATCH (m:{MODEL_LABEL}) UNWIND coalesce(m.predicted_types, []) AS t RETURN collect(DISTINCT t) AS types",
    )
    return list(rows[0]["types"]) if rows else []


def _property_keys(driver: Any, database: str | None) -> list[str]:
    return [
        r[0] for r in read(driver, database, "CALL db.propertyKeys() YIELD propertyKey RETURN propertyKey")
    ]


def _query_rows(session: Any, query: str, parameters: dict[str, Any]) -> tuple[list[str], list[tuple]]:
    """Stream a user query's (head, relation, tail) rows as element ids; the node ids in first-seen order."""
    from neo4j.exceptions import ClientError

    wrapped = f"CALL () {{ {query} }} RETURN elementId(head) AS h, relation AS r, elementId(tail) AS t"
    seen: dict[str, None] = {}
    triples: list[tuple[str, Any, str]] = []
    try:
        for h, r, t in session.run(wrapped, parameters):
            rel = r if isinstance(r, str) else getattr(r, "type", None)
            if rel is None or h is None or t is None:
                raise InputError(
                    "the query returned a row without head, tail or relation; return nodes as head and tail "
                    "and a relationship or string as relation"
                )
            seen.setdefault(h)
            seen.setdefault(t)
            triples.append((h, rel, t))
    except ClientError as exc:
        if "AccessMode" in (exc.code or "") or "read access mode" in (exc.message or ""):
            raise InputError(
                "the pull query tries to write to the database, and pulls only read: nothing was changed; "
                "remove CREATE, MERGE, SET, DELETE and the like from --query"
            ) from None
        raise InputError(
            f"the pull query failed ({exc.message}); it must return columns head and tail (nodes) and relation "
            "(a relationship or a string), e.g. MATCH (d:Disease)-[r:HAS_SYMPTOM]->(s) "
            "RETURN d AS head, r AS relation, s AS tail"
        ) from None
    return list(seen), triples


def _entity_key(eid: str, key: str, value: Any, key_types: set[str]) -> str:
    if key == ELEMENT_ID:
        return eid
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(
            f"node {eid} has {'no' if value is None else 'a non-text'} key property {key!r} ({value!r}); "
            "give every node a string or integer key, or pull with key='elementId'"
        )
    key_types.add("int" if isinstance(value, int) else "str")
    return str(value)


def _text_specs(
    text_properties: Mapping[str, Any] | None, present: Sequence[str]
) -> dict[str, dict[str, tuple[str, str]]]:
    """Per label (``*`` = any): concrete property -> (text kind, language), patterns expanded against the
    property keys the database has."""
    given = DEFAULT_TEXT_PROPERTIES if text_properties is None else text_properties
    per_label = any(isinstance(v, Mapping) for v in given.values())
    if per_label and not all(isinstance(v, Mapping) for v in given.values()):
        raise ConfigError(
            "text_properties mixes per-label maps and property specs; use {'Label': {'prop': 'label'}, ...} "
            "or {'prop': 'label', ...}"
        )
    groups = given if per_label else {"*": given}
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for label, spec in groups.items():
        if label != "*":
            quote(label, "label in text_properties")
        resolved: dict[str, tuple[str, str]] = {}
        for prop, kind_spec in spec.items():
            kind, _, lang = str(kind_spec).partition("@")
            if kind not in _KINDS:
                raise ConfigError(
                    f"text_properties[{prop!r}] = {kind_spec!r}: the kind must be one of {', '.join(_KINDS)}, "
                    "optionally with @language, e.g. 'label@zh'"
                )
            if prop.endswith("_*"):
                stem = prop[:-1]
                for name in present:
                    suffix = name[len(stem) :]
                    if name.startswith(stem) and _LANG_SUFFIX.fullmatch(suffix):
                        resolved.setdefault(name, (kind, normalize_language(suffix)))
            else:
                quote(prop, "text property")
                resolved[prop] = (kind, normalize_language(lang))
        out[label] = {p: v for p, v in resolved.items() if p in present or p in spec}
    return out


def _add_node(
    builder: Any,
    key: str,
    node_labels: Sequence[str],
    props: Mapping[str, Any],
    specs: Mapping[str, Mapping[str, tuple[str, str]]],
    preferred: Sequence[str],
    attributes: Sequence[str],
) -> None:
    ordered = [x for x in preferred if x in node_labels] + sorted(
        x for x in node_labels if x not in preferred
    )
    builder.entity(key).types.extend(ordered)  # a new entity: no types yet
    spec = next((specs[x] for x in ordered if x in specs), specs.get("*", {}))
    for prop, (kind, lang) in spec.items():  # in spec order: the first label given is the preferred one
        value = props.get(prop)
        if value is None:
            continue
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                builder.add_label(key, text, lang, kind)
    for name in attributes:
        value = props.get(name)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                builder.add_attribute(key, name, str(item))
