"""Neo4j: pull a graph into a KnowledgeGraph, push a model's vectors, index and metadata, write predicted links,
and answer link prediction through ``db.index.vector.queryNodes`` calls that any Neo4j driver can make.

Every write is batched in bounded, managed (driver-retried) transactions and keyed (``MATCH``/``MERGE`` on the node
key), so a rerun after a crash completes the job without duplicates. Names are validated and backtick-quoted; values
always travel as parameters. The README's "Neo4j" section shows the Cypher that applications run.
"""

from __future__ import annotations

import json
import os
import re
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from kgemb.connectors._neo4j_common import (
    ELEMENT_ID,
    chunks,
    connect,
    default_database,
    label_expression,
    open_driver,
    quote,
    read,
    translate_errors,
    write,
    write_batches,
)
from kgemb.connectors._neo4j_vectors import cypher_query_vector, query_vectors, similarity_for

from kgemb.errors import ConfigError, InputError, KgembError
from kgemb.names import normalize_language, readable_key

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph
    from kgemb.model import TrainedModel

__all__ = [
    "DEFAULT_TEXT_PROPERTIES",
    "ELEMENT_ID",
    "Link",
    "PushReport",
    "connect",
    "heads_for",
    "predict_links",
    "predict_via_index",
    "pull",
    "push",
    "search_via_index",
    "tail_query_cypher",
    "write_links",
]

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
ENTITY_LABEL = "KgembEntity"
MODEL_LABEL = "KgembModel"
RELATION_LABEL = "KgembRelation"
_LANG_SUFFIX = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*")
_KINDS = ("label", "alias", "description")


# ---------------------------------------------------------------------------------------------------------- pull
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
            """One node as ``[element id, labels, key, {text properties}]`` (+ its outgoing edges)."""
            return f"[elementId({v}), labels({v}), {key_part.format(v)}, {v} {{{projection}}}{out_edges}]"

        relations: dict[str, int] = {}

        def relation_id(rel_type: str) -> int:
            r = relations.get(rel_type)
            if r is None:
                text = readable_key(rel_type)
                r = relations[rel_type] = builder.add_relation(
                    rel_type, {"": [text.lower() if text.isupper() else text]}
                )
            return r

        builder = GraphBuilder()
        position: dict[str, int] = {}
        key_types: set[str] = set()
        ids: list[str] = []
        triples: list[tuple[str, Any, str]] = []
        # (head id, relation id, tail element id) until every node has its id
        pending: list[tuple[int, int, str]] = []

        def add_nodes(rows: Sequence[Sequence[Any]]) -> None:
            for eid, node_labels_, key_value, props, *edges in rows:
                entity_key = _entity_key(eid, key, key_value, key_types)
                h = position[eid] = builder.add_entity(entity_key)
                ids.append(eid)
                _add_node(builder, entity_key, node_labels_, props, specs, labels, attributes)
                for rel_type, tail in edges[0] if edges else ():
                    pending.append((h, relation_id(rel_type), tail))

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
                edges = f", [(x)-[r{rel_types}]->(b) WHERE NOT type(r) IN $skip{tail_filter} | [type(r), elementId(b)]]"
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
            for h, r, t_eid in pending:
                tail = position.get(t_eid)
                if tail is not None:  # a tail outside the pulled nodes (a kgemb model node)
                    builder.add_triple_ids(h, r, tail)
        else:
            for h, r, t in triples:
                builder.add_triple_ids(position[h], relation_id(r), position[t])
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


# ------------------------------------------------------------------------------------------------ finding nodes
@dataclass(frozen=True)
class _Nodes:
    """How a model's entities are found in Neo4j: by element id, or by a key property (per label)."""

    key: str
    key_type: str
    create_label: str | None  # the graph did not come from Neo4j: nodes are MERGEd with this label

    @classmethod
    def of(cls, kg: KnowledgeGraph, entity_label: str) -> _Nodes:
        info = kg.metadata.get("neo4j") if kg.metadata.get("source") == "neo4j" else None
        if isinstance(info, dict) and info.get("key"):
            return cls(str(info["key"]), str(info.get("key_type") or "str"), None)
        return cls("key", "str", entity_label)

    def value(self, entity_key: str) -> str | int:
        return int(entity_key) if self.key_type == "int" else entity_key

    def resolve(
        self, driver: Any, database: str | None, kg: KnowledgeGraph, ids: Sequence[int]
    ) -> dict[int, str]:
        """Entity id -> element id of its node, for the given entity ids that exist in the database (looked up
        10,000 at a time)."""
        out: dict[int, str] = {}
        if self.key == ELEMENT_ID:
            ids = list(ids)
            for start, stop in chunks(len(ids), 10_000):
                keys = [kg.entities[i].key for i in ids[start:stop]]
                found = read(
                    driver,
                    database,
                    "UNWIND $ids AS id MATCH (n) WHERE elementId(n) = id RETURN collect(id) AS found",
                    ids=keys,
                )[0]["found"]
                present = set(found)
                out.update({i: key for i, key in zip(ids[start:stop], keys, strict=True) if key in present})
            return out
        groups: dict[str | None, list[int]] = {}
        for i in ids:
            types = kg.entities[i].types
            label = self.create_label or (types[0] if types else None)
            groups.setdefault(label, []).append(i)
        prop = quote(self.key, "key property")
        for label, members in groups.items():
            node = f"(n{label_expression([label]) if label else ''} {{{prop}: k}})"
            by_value = {self.value(kg.entities[i].key): i for i in members}
            values = list(by_value)
            for start, stop in chunks(len(values), 10_000):
                rec = read(
                    driver,
                    database,
                    f"UNWIND $keys AS k MATCH {node} RETURN collect(k) AS keys, collect(elementId(n)) AS ids",
                    keys=values[start:stop],
                )[0]
                out.update({by_value[k]: eid for k, eid in zip(rec["keys"], rec["ids"], strict=True)})
        return out

    def check(self, kg: KnowledgeGraph) -> None:
        """Raise before any write when a key or a label the lookups would use cannot go into Cypher."""
        if self.key == ELEMENT_ID:
            return
        quote(self.key, "key property")
        labels = {self.create_label} if self.create_label else {e.types[0] for e in kg.entities if e.types}
        for label in sorted(labels):
            quote(label, "node label (an entity type) of the model's graph")
        if self.key_type == "int":
            bad = next((e.key for e in kg.entities if not e.key.lstrip("-").isdigit()), None)
            if bad is not None:
                raise InputError(
                    f"entity key {bad!r} is not a whole number, though the graph's keys are; pull again"
                )

    def ensure_key_index(self, driver: Any, database: str | None, kg: KnowledgeGraph) -> None:
        """A range index on (label, key) for each label the lookups use (a uniqueness constraint for nodes
        kgemb creates), so writing back is one index seek per node, not a label scan."""
        if self.key == ELEMENT_ID:
            return
        prop = quote(self.key, "key property")
        if self.create_label:
            label = label_expression([self.create_label])
            write(
                driver, database, f"CREATE CONSTRAINT IF NOT EXISTS FOR (n{label}) REQUIRE n.{prop} IS UNIQUE"
            )
            return
        indexed = {
            (tuple(r["labelsOrTypes"] or ()), tuple(r["properties"] or ()))
            for r in read(
                driver,
                database,
                "SHOW INDEXES YIELD entityType, labelsOrTypes, properties, type "
                "WHERE entityType = 'NODE' AND type IN ['RANGE', 'TEXT'] RETURN labelsOrTypes, properties",
            )
        }
        for label in sorted({e.types[0] for e in kg.entities if e.types}):
            if ((label,), (self.key,)) not in indexed:
                write(
                    driver,
                    database,
                    f"CREATE INDEX IF NOT EXISTS FOR (n{label_expression([label])}) ON (n.{prop})",
                )


# ---------------------------------------------------------------------------------------------------------- push
@dataclass
class PushReport:
    """What a push wrote: node vectors, the vector index (ONLINE) and the model node; ``write_seconds`` is the
    time spent writing vectors, ``index_seconds`` the time until the index was ONLINE, ``seconds`` the whole."""

    model: str
    nodes: int
    missing: int
    dim: int
    index: str
    similarity: str
    seconds: float
    write_seconds: float
    index_seconds: float

    @property
    def vectors_per_second(self) -> float:
        """Vectors written per second (the write phase alone)."""
        return self.nodes / self.write_seconds if self.write_seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "vectors_per_second": round(self.vectors_per_second, 1)}


def push(
    model: TrainedModel,
    uri_or_driver: Any,
    *,
    name: str = "kgemb",
    entity_label: str = ENTITY_LABEL,
    vector_property: str = "embedding",
    index: str | None = None,
    similarity: str | None = None,
    batch_size: int = 1000,
    workers: int = 2,
    database: str | None = None,
    username: str | None = None,
    password: str | None = None,
    wait_seconds: float = 600.0,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> PushReport:
    """Write each entity's vector onto its node, create (or replace) a vector index over them and wait until it is
    ONLINE, and store the relation vectors and the model's metadata on a ``(:KgembModel {name})`` node.

    Nodes are found by the key the graph was pulled with; a graph from elsewhere (RDF, TSV) gets its nodes
    ``MERGE``d as ``(:KgembEntity {key, name})``. Every node written also gets ``entity_label`` (the index's label).
    Vectors go ``batch_size`` nodes per managed transaction, ``workers`` transactions at a time (the client encodes
    one batch while the server stores another); rerunning after a failure completes the job.
    ``on_batch(written, total)`` is called after each committed batch.
    """
    from kgemb.reasoning.calibration import model_signature
    from tqdm import tqdm

    quote(name, "model name")
    quote(entity_label, "entity label")
    quote(vector_property, "vector property")
    index = f"{name}_{vector_property}" if index is None else index
    quote(index, "index name")
    interaction = str(model.config.get("interaction", "")).lower()
    similarity = (similarity or _default_similarity(interaction)).lower()
    if similarity not in ("cosine", "euclidean"):
        raise ConfigError(f"similarity {similarity!r} is unknown; use 'cosine' or 'euclidean'")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    kg = model.kg
    vectors = np.ascontiguousarray(model.entity_vectors(), dtype=np.float32)
    dim = int(vectors.shape[1])
    if not 1 <= dim <= 4096:
        raise ConfigError(f"entity vectors have {dim} dimensions; Neo4j vector indexes take 1 to 4096")
    nodes = _Nodes.of(kg, entity_label)
    nodes.check(kg)  # every name and key is checked before the first write
    database = default_database(database)
    began = time.perf_counter()
    with open_driver(uri_or_driver, username, password) as (driver, where), translate_errors(where):
        write(
            driver,
            database,
            f"MERGE (m:{MODEL_LABEL} {{name: $name}}) SET m.complete = false, m.updated_at = datetime()",
            name=name,
        )
        nodes.ensure_key_index(driver, database, kg)
        if nodes.create_label:
            _merge_entities(driver, database, kg, nodes, batch_size, progress)
        element_ids = nodes.resolve(driver, database, kg, range(kg.num_entities))
        present = sorted(element_ids)
        label = label_expression([entity_label])
        query = (
            f"UNWIND $rows AS row MATCH (n) WHERE elementId(n) = row[0] SET n{label} "
            "WITH n, row CALL db.create.setNodeVectorProperty(n, $property, row[1])"
        )
        bar = tqdm(total=len(present), unit="vec", desc="neo4j push vectors", disable=not progress)

        def batches() -> Iterator[list[list[Any]]]:
            for start, stop in chunks(len(present), batch_size):
                ids = present[start:stop]
                yield [[element_ids[i], v] for i, v in zip(ids, vectors[ids].tolist(), strict=True)]

        written = 0
        writing = time.perf_counter()

        def committed(n: int, _: list[Any]) -> None:
            nonlocal written
            written += n
            bar.update(n)
            if on_batch is not None:
                on_batch(written, len(present))

        write_batches(
            driver, database, query, batches(), on_batch=committed, workers=workers, property=vector_property
        )
        bar.close()
        indexing = time.perf_counter()
        _ensure_vector_index(
            driver, database, index, entity_label, vector_property, dim, similarity, wait_seconds
        )
        online = time.perf_counter()
        _write_model_node(
            driver,
            database,
            model,
            name=name,
            props={
                "interaction": interaction,
                "mode": model.config.get("mode"),
                "dim": dim,
                "similarity": similarity,
                "entity_label": entity_label,
                "vector_property": vector_property,
                "index": index,
                "key": nodes.key,
                "key_type": nodes.key_type,
                "num_entities": kg.num_entities,
                "num_relations": kg.num_relations,
                "encoder_fingerprint": model.encoder_fingerprint,
                "signature": model_signature(model),
                "kgemb_version": _version(),
                "config": json.dumps(model.config, sort_keys=True, default=str),
            },
        )
    missing = kg.num_entities - len(present)
    return PushReport(
        name,
        written,
        missing,
        dim,
        index,
        similarity,
        time.perf_counter() - began,
        indexing - writing,
        online - indexing,
    )


def _default_similarity(interaction: str) -> str:
    try:
        return similarity_for(interaction)
    except ConfigError:
        return "cosine"


def _version() -> str:
    from kgemb._version import __version__

    return __version__


def _merge_entities(
    driver: Any, database: str | None, kg: KnowledgeGraph, nodes: _Nodes, batch_size: int, progress: bool
) -> None:
    """Create the nodes of a graph that did not come from Neo4j, keyed, with their display name."""
    from tqdm import tqdm

    assert nodes.create_label is not None
    query = (
        f"UNWIND $rows AS row MERGE (n{label_expression([nodes.create_label])} "
        f"{{{quote(nodes.key, 'key property')}: row[0]}}) ON CREATE SET n.name = row[1]"
    )
    bar = tqdm(total=kg.num_entities, unit="node", desc="neo4j merge nodes", disable=not progress)
    rows = (
        [[kg.entities[i].key, kg.label(i)] for i in range(a, b)]
        for a, b in chunks(kg.num_entities, batch_size)
    )
    write_batches(driver, database, query, rows, on_batch=lambda n, _: bar.update(n))
    bar.close()


def _ensure_vector_index(
    driver: Any,
    database: str | None,
    index: str,
    label: str,
    prop: str,
    dim: int,
    similarity: str,
    wait_seconds: float,
) -> None:
    """Create the vector index, or replace it when its label, property, dimension or similarity differ; then wait
    until it is ONLINE."""
    rows = read(
        driver,
        database,
        "SHOW VECTOR INDEXES YIELD name, labelsOrTypes, properties, options "
        "WHERE name = $index OR (labelsOrTypes = [$label] AND properties = [$prop]) RETURN *",
        index=index,
        label=label,
        prop=prop,
    )
    for row in rows:
        config = (row["options"] or {}).get("indexConfig") or {}
        same = (
            row["name"] == index
            and list(row["labelsOrTypes"] or []) == [label]
            and list(row["properties"] or []) == [prop]
            and int(config.get("vector.dimensions") or 0) == dim
            and str(config.get("vector.similarity_function", "")).lower() == similarity
        )
        if same:
            break
        if row["name"] != index:
            raise ConfigError(
                f"vector index {row['name']!r} already covers :{label}({prop}); push with index={row['name']!r}, "
                "or drop that index, or use another vector_property"
            )
        write(driver, database, f"DROP INDEX {quote(index, 'index name')} IF EXISTS")
    else:
        write(
            driver,
            database,
            f"CREATE VECTOR INDEX {quote(index, 'index name')} IF NOT EXISTS "
            f"FOR (n{label_expression([label])}) ON (n.{quote(prop, 'vector property')}) "
            "OPTIONS {indexConfig: {`vector.dimensions`: $dim, `vector.similarity_function`: $similarity}}",
            dim=dim,
            similarity=similarity,
        )
    wait_for_index(driver, database, index, wait_seconds)


def wait_for_index(driver: Any, database: str | None, index: str, wait_seconds: float = 600.0) -> None:
    """Block until ``index`` is ONLINE; :class:`ConfigError` when it FAILED or took longer than ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    while True:
        rows = read(
            driver,
            database,
            "SHOW INDEXES YIELD name, state, populationPercent, failureMessage WHERE name = $index RETURN *",
            index=index,
        )
        if not rows:
            raise ConfigError(f"vector index {index!r} disappeared while waiting for it; push again")
        state = rows[0]["state"]
        if state == "ONLINE":
            return
        if state == "FAILED":
            raise ConfigError(
                f"vector index {index!r} FAILED: {rows[0]['failureMessage']}; drop it and push again"
            )
        if time.monotonic() > deadline:
            raise ConfigError(
                f"vector index {index!r} is still {state} ({rows[0]['populationPercent']:.0f}%) after "
                f"{wait_seconds:.0f} s; wait longer (wait_seconds) and push again"
            )
        time.sleep(0.2)


def _write_model_node(
    driver: Any, database: str | None, model: TrainedModel, *, name: str, props: dict[str, Any]
) -> None:
    """Relation vectors as ``(:KgembRelation {model, key})`` nodes linked from the model node; then the model
    node's metadata and ``complete = true`` (written last, so a reader never trusts a half-done push)."""
    kg = model.kg
    relation_vectors = np.asarray(model.relation_vectors(), dtype=np.float32).tolist()
    rows = [
        {"key": key, "id": r, "label": kg.relation_text(r), "vector": relation_vectors[r]}
        for r, key in enumerate(kg.relations)
    ]
    write(
        driver,
        database,
        f"MATCH (m:{MODEL_LABEL} {{name: $name}}) "
        f"UNWIND $rows AS row MERGE (r:{RELATION_LABEL} {{model: $name, key: row.key}}) "
        "SET r.id = row.id, r.label = row.label, r.vector = row.vector "
        "MERGE (m)-[:HAS_RELATION]->(r)",
        name=name,
        rows=rows,
    )
    write(
        driver,
        database,
        f"MATCH (r:{RELATION_LABEL} {{model: $name}}) WHERE NOT r.key IN $keys DETACH DELETE r",
        name=name,
        keys=list(kg.relations),
    )
    write(
        driver,
        database,
        f"MATCH (m:{MODEL_LABEL} {{name: $name}}) SET m += $props, m.relation_dim = $relation_dim, "
        "m.complete = true, m.updated_at = datetime()",
        name=name,
        props={k: v for k, v in props.items() if v is not None},
        relation_dim=len(relation_vectors[0]) if relation_vectors else 0,
    )


# ------------------------------------------------------------------------------------------------ predicted links
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


# ------------------------------------------------------------------------------------- answering through the index
def tail_query_cypher(interaction: str, direction: str = "tail") -> str:
    """The Cypher that answers (node, relation, ?) — or (?, relation, node) with ``direction="head"`` — from the
    pushed vectors alone: the query vector the interaction implies, then ``db.index.vector.queryNodes``.

    Parameters: ``$model`` (model node name), ``$relation`` (relation key), ``$node`` (element id of the known
    node), ``$candidates`` (how many nearest nodes to fetch). Returns ``id`` (element id), ``key`` and ``score``
    (the index similarity; re-score candidates exactly for the model's ranking).
    """
    expr = cypher_query_vector(interaction, direction, known="v", relation="r")
    return (
        f"MATCH (m:{MODEL_LABEL} {{name: $model}})-[:HAS_RELATION]->(rel:{RELATION_LABEL} {{key: $relation}})\n"
        "MATCH (x) WHERE elementId(x) = $node\n"
        "WITH m, x[m.vector_property] AS v, rel.vector AS r\n"
        f"WITH m, {expr} AS q\n"
        "CALL db.index.vector.queryNodes(m.index, $candidates, q) YIELD node, score\n"
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
        rows = read(
            driver,
            database,
            tail_query_cypher(interaction, direction),
            model=name,
            relation=kg.relations[r],
            node=element_id,
            candidates=n,
        )
    if not rows:
        raise ConfigError(
            f"relation {kg.relations[r]!r} has no vector in model {name!r}; push the model again"
        )
    ids, index_scores = _entity_ids(kg, meta, rows)
    if constraints:
        mask = _helpers(model).constraints.mask(r, direction)
        if mask is not None:
            keep = [j for j, i in enumerate(ids) if mask[i]]
            ids, index_scores = [ids[j] for j in keep], [index_scores[j] for j in keep]
    if exclude_known:
        links = _helpers(model).links
        known = set((links.tails_of(x, r) if direction == "tail" else links.heads_of(r, x)).tolist()) | {x}
        keep = [j for j, i in enumerate(ids) if i not in known]
        ids, index_scores = [ids[j] for j in keep], [index_scores[j] for j in keep]
    if not ids:
        return []
    hrt = np.array([[x, r, i] if direction == "tail" else [i, r, x] for i in ids], dtype=np.int64)
    return _ranked(model, ids, model.score_hrt(hrt), index_scores, k)


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
