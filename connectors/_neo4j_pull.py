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
    has_procedure,
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


#: how a pull reads relationships: ``procedure`` (packed blocks from the kgemb plugin), ``cypher``, or ``auto``
RELATIONSHIP_FORMS = ("auto", "procedure", "cypher")
EXPORT_PROCEDURE = "kgemb.export.relationships"
#: one relationship in the procedure's blocks: start node id, type index (into the stream's type table), end node id
_RECORD = np.dtype([("start", "<i8"), ("type", "<i4"), ("end", "<i8")])
_BLOCK = 65_536


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
    relationship_form: str = "auto",
    progress: bool = True,
) -> KnowledgeGraph:
    """Read a graph from Neo4j: every node and relationship, those of some ``labels`` / ``relationship_types``,
    or the rows of a Cypher ``query`` returning ``head`` and ``tail`` nodes and a ``relation`` (relationship or
    string). All triples land in the ``train`` split (use ``kg.split()``).

    Entity keys are ``elementId(n)`` or the value of the ``key`` property. Texts come from ``text_properties``
    (``{"name": "label", "name_zh": "label@zh", "summary": "description@en"}``, or per label:
    ``{"Disease": {...}, "*": {...}}``); ``attributes`` names other properties to keep. Nodes come back in
    records of ``page_size`` nodes (the server holds only the list of node references), so no single huge result
    is built; a query's rows are streamed in ``page_size`` batches. ``relationship_form``: ``"procedure"`` reads
    the relationships as packed blocks of numbers from the kgemb plugin's ``kgemb.export.relationships`` (one
    Bolt value per 65,536 relationships), ``"cypher"`` as lists beside each page of nodes (any Neo4j 5),
    ``"auto"`` the procedure when the server has it; both give the same graph.
    """
    from tqdm import tqdm

    from kgemb.graph import GraphBuilder, gc_paused

    labels = list(labels or [])
    types = list(relationship_types or [])
    node_labels = label_expression(labels)
    rel_types = label_expression(types, "relationship type")
    key_part = "elementId({0})" if key == ELEMENT_ID else "{0}." + quote(key, "key property")
    for name in attributes:
        quote(name, "attribute property")
    if query is not None and (labels or types):
        raise ConfigError("pass either query or labels/relationship_types, not both")
    if relationship_form not in RELATIONSHIP_FORMS:
        raise ConfigError(
            f"relationship_form {relationship_form!r} is unknown; use one of {', '.join(RELATIONSHIP_FORMS)}"
        )
    database = default_database(database)
    began = time.perf_counter()
    with (
        open_driver(uri_or_driver, username, password) as (driver, where),
        translate_errors(where),
        gc_paused(),  # tens of thousands of new entities: nothing for the collector to find
    ):
        present = _property_keys(driver, database)
        specs = _text_specs(text_properties, present)
        # only keys the database has: a map projection returns every key asked for, null or not
        wanted = sorted(({p for spec in specs.values() for p in spec} | set(attributes)) & set(present))
        projection = ", ".join(f".{quote(p, 'text property')}" for p in wanted)
        form = relationship_form
        if query is None and form == "auto":
            form = "procedure" if has_procedure(driver, database, EXPORT_PROCEDURE) else "cypher"

        def node_row(v: str, out_edges: str = "") -> str:
            """One node as ``[element id, id, labels, key, {text properties}]`` (+ its outgoing edges). The
            integer ``id`` names a node within this one read (edges point to tails by it: a few bytes where an
            element id takes some 40)."""
            return f"[elementId({v}), id({v}), labels({v}), {key_part.format(v)}, {v} {{{projection}}}{out_edges}]"

        builder = GraphBuilder()
        plans = _NodePlans(specs, labels)
        position: dict[str, int] = {}
        key_types: set[str] = set()
        ids: list[str] = []
        triples: list[tuple[str, Any, str]] = []
        # the server's node ids in pull order with their entity ids, and the edges as (head node id, type code,
        # tail node id) columns, type codes indexing type_names
        node_ids, entity_ids = array("q"), array("q")
        heads, codes, tails = array("q"), array("q"), array("q")
        type_names: list[str] = []
        type_codes = _Codes(type_names)
        blocks: list[bytes] = []

        def add_nodes(rows: Sequence[Sequence[Any]]) -> None:
            """A page of node rows, column by column."""
            if not rows:
                return
            eids, nids, node_labels_, key_values, props, *edges = zip(*rows, strict=True)
            keys = eids if key == ELEMENT_ID else _entity_keys(eids, key, key_values, key_types)
            hs = list(map(builder.add_entity, keys))
            position.update(zip(eids, hs, strict=True))
            ids.extend(eids)
            node_ids.extend(nids)
            entity_ids.extend(hs)
            _add_nodes(builder, hs, keys, node_labels_, props, plans, attributes)
            for node_id, out in zip(nids, edges[0], strict=True) if edges else ():
                if out:
                    rel_types, tail_ids = zip(*out, strict=True)  # C loops, not one Python step per edge
                    heads.extend(repeat(node_id, len(tail_ids)))
                    codes.extend(map(type_codes.__getitem__, rel_types))
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
                skip = _predicted_types(driver, database)
                # node references are collected on the server (a few bytes each); the nodes come back page by
                # page, each with its outgoing relationships (cypher form) or without (procedure form)
                tail_filter = f"b{node_labels} AND " if labels else ""
                edges = (
                    f", [(x)-[r{rel_types}]->(b) WHERE {tail_filter}NOT b:{MODEL_LABEL} AND NOT b:{RELATION_LABEL}"
                    " AND NOT type(r) IN $skip | [type(r), id(b)]]"
                    if form == "cypher"
                    else ""
                )
                # one transaction: node ids name the same nodes in both reads
                with session.begin_transaction() as tx:
                    pages = tx.run(
                        f"MATCH (n{node_labels}) WHERE NOT n:{MODEL_LABEL} AND NOT n:{RELATION_LABEL} "
                        "WITH collect(n) AS nodes UNWIND range(0, size(nodes) - 1, $page) AS start "
                        f"RETURN size(nodes) AS total, [x IN nodes[start..start + $page] | {node_row('x', edges)}] "
                        "AS page",
                        page=page_size,
                        skip=skip,
                    )
                    for record in pages:
                        bar.total = record["total"]
                        add_nodes(record["page"])
                        bar.update(len(record["page"]))
                    if form == "procedure":
                        for block in tx.run(
                            f"CALL {EXPORT_PROCEDURE}($labels, $types, $exclude, $skip, $batch) YIELD types, data",
                            labels=labels,
                            types=types,
                            exclude=[MODEL_LABEL, RELATION_LABEL],
                            skip=skip,
                            batch=_BLOCK,
                        ):
                            type_names.extend(block["types"])
                            blocks.append(block["data"])
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
        relations = _Relations(builder)
        if query is None:
            if blocks:
                packed = np.frombuffer(b"".join(blocks), dtype=_RECORD)
                edge_columns = (packed["start"], packed["type"].astype(np.int64), packed["end"])
            else:
                edge_columns = tuple(np.frombuffer(c, dtype=np.int64) for c in (heads, codes, tails))
            node = (np.frombuffer(node_ids, dtype=np.int64), np.frombuffer(entity_ids, dtype=np.int64))
            builder.add_triple_id_rows(_edge_rows(*node, *edge_columns, type_names, relations))
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
        "pull": {
            "nodes": len(ids),
            "relationships": builder.num_triples,
            "seconds": round(seconds, 3),
            "relationship_form": form if query is None else "query",
        },
    }
    with gc_paused():
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


class _Codes(dict):
    """Relationship type -> its index in ``names``, appending it when new."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def __missing__(self, rel_type: str) -> int:
        code = self[rel_type] = len(self.names)
        self.names.append(rel_type)
        return code


def _edge_rows(
    node_ids: np.ndarray,
    entity_ids: np.ndarray,
    heads: np.ndarray,
    codes: np.ndarray,
    tails: np.ndarray,
    type_names: Sequence[str],
    relations: _Relations,
) -> np.ndarray:
    """``(head, relation, tail)`` entity-id rows from edge columns of server node ids and type codes: edges with
    an end outside the pull (a kgemb model node) left out, ordered by the head's place in the pull (each head's
    edges in the order read), relations numbered in the order they first appear there."""
    if len(node_ids) == 0 or len(heads) == 0:
        return np.empty((0, 3), dtype=np.int64)
    order = np.argsort(node_ids, kind="stable")
    sorted_ids = node_ids[order]

    def place(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = np.searchsorted(sorted_ids, ids).clip(max=len(sorted_ids) - 1)
        return order[found], sorted_ids[found] == ids

    head_at, head_in = place(heads)
    tail_at, tail_in = place(tails)
    inside = head_in & tail_in
    head_at, tail_at, codes = head_at[inside], tail_at[inside], codes[inside]
    by_head = np.argsort(head_at, kind="stable")
    head_at, tail_at, codes = head_at[by_head], tail_at[by_head], codes[by_head]
    used, first = np.unique(codes, return_index=True)
    relation_of = np.zeros(len(type_names), dtype=np.int64)
    for code in used[np.argsort(first)].tolist():
        relation_of[code] = relations[type_names[code]]
    rows = np.empty((len(codes), 3), dtype=np.int64)
    rows[:, 0] = entity_ids[head_at]
    rows[:, 1] = relation_of[codes]
    rows[:, 2] = entity_ids[tail_at]
    return rows


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


def _entity_keys(eids: Sequence[str], key: str, values: Sequence[Any], key_types: set[str]) -> Sequence[str]:
    """:func:`_entity_key` of a page of nodes (all strings or all integers checked in one go)."""
    kinds = set(map(type, values))
    if kinds == {str}:
        key_types.add("str")
        return values
    if kinds == {int}:
        key_types.add("int")
        return list(map(str, values))
    return [_entity_key(e, key, v, key_types) for e, v in zip(eids, values, strict=True)]


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


class _NodePlans(dict):
    """A node's label set -> (its labels in order, preferred ones first; its text properties as (property, kind,
    language) in spec order): worked out once per label set, not per node."""

    def __init__(self, specs: Mapping[str, Mapping[str, tuple[str, str]]], preferred: Sequence[str]) -> None:
        super().__init__()
        self.specs = specs
        self.preferred = preferred

    def of(self, node_labels: Sequence[str]) -> tuple[list[str], list[tuple[str, str, str]]]:
        plan = self.get(tuple(node_labels))
        if plan is None:
            ordered = [x for x in self.preferred if x in node_labels] + sorted(
                x for x in node_labels if x not in self.preferred
            )
            spec = next((self.specs[x] for x in ordered if x in self.specs), self.specs.get("*", {}))
            plan = self[tuple(node_labels)] = (ordered, [(p, kind, lang) for p, (kind, lang) in spec.items()])
        return plan


def _add_nodes(
    builder: Any,
    entity_ids: Sequence[int],
    keys: Sequence[str],
    node_labels: Sequence[Sequence[str]],
    props: Sequence[Mapping[str, Any]],
    plans: _NodePlans,
    attributes: Sequence[str],
) -> None:
    """Types, texts and attributes of a page of new entities, one column (property) at a time for each set of
    labels (a page's nodes mostly share one)."""
    if node_labels.count(node_labels[0]) == len(node_labels):
        groups = {tuple(node_labels[0]): range(len(keys))}
    else:
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, labels in enumerate(node_labels):
            groups.setdefault(tuple(labels), []).append(i)
    for labels, members in groups.items():
        ordered, texts = plans.of(labels)
        ids = [entity_ids[i] for i in members]
        for entity in map(builder.entity, [keys[i] for i in members]):
            entity.types.extend(ordered)  # a new entity: no types yet
        for prop, kind, lang in texts:  # in spec order: the first label given is the preferred one
            builder.add_text_column(ids, [props[i].get(prop) for i in members], lang, kind)
    for name in attributes:
        for i, key in enumerate(keys):
            value = props[i].get(name)
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    builder.add_attribute(key, name, str(item))
