"""Neo4j push: entity vectors onto nodes, the vector index, and the model node with its relation vectors."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from kgemb.connectors._neo4j_common import (
    ENTITY_LABEL,
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
    write,
    write_batches,
    write_schema,
)
from kgemb.connectors._neo4j_graph import push_graph, relationship_types, type_labels
from kgemb.connectors._neo4j_nodes import _Nodes
from kgemb.connectors._neo4j_vectors import similarity_for

from kgemb.errors import ConfigError

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph
    from kgemb.model import TrainedModel


@dataclass
class PushReport:
    """What a push wrote: node vectors, the vector index (ONLINE) and the model node; ``write_seconds`` is the
    time spent writing vectors, ``index_seconds`` the time until the index was ONLINE, ``seconds`` the whole."""

    model: str
    nodes: int
    missing: int
    dim: int
    index: str | None  # None: no vector index was made (vector_index=False)
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
    workers: int = 4,
    database: str | None = None,
    username: str | None = None,
    password: str | None = None,
    wait_seconds: float = 600.0,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
    graph: bool = True,
    directory: str | os.PathLike | None = None,
    calibration: Any = None,
    vector_index: bool = True,
    evidence_weight: float | None = None,
    hierarchy: Sequence[str] | None = None,
    shard: tuple[int, int] | None = None,
    vector_form: str = "auto",
) -> PushReport:
    """Write each entity's vector onto its node, create (or replace) a vector index over them and wait until it is
    ONLINE, and store the relation vectors and the model's metadata on a ``(:KgembModel {name})`` node.

    Nodes are found by the key the graph was pulled with; a graph from elsewhere (RDF, TSV) gets its nodes
    ``MERGE``d as ``(:KgembEntity {key, name})``. Every node written also gets ``entity_label`` (the index's label).
    Vectors go ``batch_size`` nodes per managed transaction, ``workers`` transactions at a time (the client encodes
    one batch while the server stores another); rerunning after a failure completes the job.
    ``on_batch(written, total)`` is called after each committed batch.

    With ``graph`` (default) a graph from elsewhere also gets its type labels and its relationships (all splits),
    ``MERGE``d, so kgemb's procedures (``CALL kgemb.predict.tails`` …) can leave known links and wrong types out.
    The model node carries every relation row (2R for a reciprocal model) and the per-relation calibration:
    ``calibration``, else the one saved in the model ``directory``, else one fitted now; and, for a model with a
    rule channel, its rules, their weights and the training triples they ground on, so that
    ``kgemb.predict.tails/heads`` add the rules as ``LinkPredictor`` does. ``vector_index=False``
    skips the vector index (kgemb's procedures do not need it; the plugin-free Cypher path does).

    For ``CALL kgemb.rank`` (the port of :mod:`kgemb.reasoning.evidence`) the model node also gets the model's
    weight in the evidence score (``evidence_weight``, default ``LinkPredictor(model).evidence_weight``, chosen on
    the validation split) and the formula's constants, each relation node whether it is a hierarchy relation
    (``hierarchy``: names, default is_a / subClassOf / broader found automatically), and each entity node its
    entity id (``<vector_property>_id``, Python's tie-break); the plugin reads the annotations and the hierarchy
    from the relationships themselves.

    ``shard = (I, N)``: write only the I-th of N contiguous blocks of the entities sorted by key (their nodes, type
    labels, outgoing relationships and vectors), so N pushes can run side by side; shard 0 also writes the vector
    index and the relation nodes, and the model node turns ``complete`` when all N shards are done. Sharded pushes
    add a uniqueness constraint on ``:KgembModel(name)``, so parallel shards share one model node.

    ``vector_form``: ``"procedure"`` sends each vector as float32 bytes to the plugin's ``kgemb.vectors.set`` (a
    quarter of the bytes of a list of doubles, no per-number decoding), ``"cypher"`` as a list through
    ``db.create.setNodeVectorProperty`` (any Neo4j 5.13+), ``"auto"`` the procedure when the server has it.
    """
    from kgemb.reasoning.calibration import model_signature
    from kgemb.reasoning.evidence import EPS, GAMMA, KAPPA, RHO
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
    if vector_form not in VECTOR_FORMS:
        raise ConfigError(f"vector_form {vector_form!r} is unknown; use one of {', '.join(VECTOR_FORMS)}")
    kg = model.kg
    vectors = np.ascontiguousarray(model.entity_vectors(), dtype=np.float32)
    dim = int(vectors.shape[1])
    if not 1 <= dim <= 4096:
        raise ConfigError(f"entity vectors have {dim} dimensions; Neo4j vector indexes take 1 to 4096")
    nodes = _Nodes.of(kg, entity_label)
    nodes.check(kg)  # every name and key is checked before the first write
    id_property = f"{vector_property}_id"
    quote(id_property, "entity id property")
    predictor = _predictor(model, calibration, directory, hierarchy, evidence_weight)
    hierarchy_ids = set(predictor.evidence_index.hierarchy.relations)
    weight = predictor.evidence_weight
    database = default_database(database)
    block = _shard_entities(kg, shard)
    began = time.perf_counter()
    with open_driver(uri_or_driver, username, password) as (driver, where), translate_errors(where):
        if shard is not None:  # shards side by side MERGE the one model node: only a constraint keeps it one
            write_schema(
                driver,
                database,
                f"CREATE CONSTRAINT IF NOT EXISTS FOR (m:{MODEL_LABEL}) REQUIRE m.name IS UNIQUE",
            )
        write(
            driver,
            database,
            f"MERGE (m:{MODEL_LABEL} {{name: $name}}) SET m.complete = false, m.updated_at = datetime()"
            + (_SHARD_STARTED if shard else ""),
            name=name,
            **_shard_params(shard),
        )
        nodes.ensure_key_index(driver, database, kg)
        if nodes.create_label:
            _merge_entities(driver, database, kg, nodes, batch_size, progress, block)
            if graph:
                push_graph(driver, database, kg, nodes, batch_size, progress, block)
        element_ids = nodes.resolve(driver, database, kg, range(kg.num_entities) if block is None else block)
        present = sorted(element_ids)
        query, encode = _vector_writer(driver, database, vector_form, entity_label, id_property)
        bar = tqdm(total=len(present), unit="vec", desc="neo4j push vectors", disable=not progress)

        def batches() -> Iterator[list[list[Any]]]:
            for start, stop in chunks(len(present), batch_size):
                ids = present[start:stop]
                yield encode([element_ids[i] for i in ids], vectors[ids], ids)

        written = 0
        writing = time.perf_counter()

        def committed(n: int, _: list[Any]) -> None:
            nonlocal written
            written += n
            bar.update(n)
            if on_batch is not None:
                on_batch(written, len(present))

        write_batches(
            driver,
            database,
            query,
            batches(),
            on_batch=committed,
            workers=workers,
            property=vector_property,
            label=entity_label,
            id_property=id_property,
        )
        bar.close()
        indexing = time.perf_counter()
        # the pure-Cypher path and predict_via_index use the vector index
        if vector_index and (shard is None or shard[0] == 0):
            _ensure_vector_index(
                driver, database, index, entity_label, vector_property, dim, similarity, wait_seconds
            )
        online = time.perf_counter()
        if shard is not None and shard[0] != 0:  # shard 0 writes the model's relations and metadata
            write(driver, database, f"MATCH (m:{MODEL_LABEL} {{name: $name}})" + _SHARD_DONE, name=name,
                  **_shard_params(shard))  # fmt: skip
        else:
            _write_model_node(
                driver,
                database,
                model,
                calibration=predictor.calibration,
                entity_label=entity_label,
                hierarchy=hierarchy_ids,
                name=name,
                props={
                    "interaction": interaction,
                    "mode": model.config.get("mode"),
                    "dim": dim,
                    "similarity": similarity,
                    "entity_label": entity_label,
                    "vector_property": vector_property,
                    "index": index if vector_index else None,
                    "key": nodes.key,
                    "key_type": nodes.key_type,
                    "num_entities": kg.num_entities,
                    "num_relations": kg.num_relations,
                    "encoder_fingerprint": model.encoder_fingerprint,
                    "signature": model_signature(model),
                    "kgemb_version": _version(),
                    "config": json.dumps(model.config, sort_keys=True, default=str),
                    "evidence_weight": float(weight),
                    "evidence_params": [EPS, RHO, GAMMA, KAPPA],
                    "id_property": id_property,
                },
                shard=shard,
            )
    missing = (kg.num_entities if block is None else len(block)) - len(present)
    return PushReport(
        name,
        written,
        missing,
        dim,
        index if vector_index else None,
        similarity,
        time.perf_counter() - began,
        indexing - writing,
        online - indexing,
    )


#: a sharded push: forget this shard's earlier completion (or all, when the shard count changed)
_SHARD_STARTED = (
    ", m.shards_done = CASE WHEN m.shards = $shards "
    "THEN [x IN coalesce(m.shards_done, []) WHERE x <> $shard] ELSE [] END, m.shards = $shards"
)
#: a sharded push is done: the model is complete when every shard is
_SHARD_DONE = (
    " SET m.shards_done = [x IN coalesce(m.shards_done, []) WHERE x <> $shard] + $shard "
    "WITH m SET m.complete = size(m.shards_done) = $shards, m.updated_at = datetime()"
)


def _shard_params(shard: tuple[int, int] | None) -> dict[str, int]:
    return {} if shard is None else {"shard": shard[0], "shards": shard[1]}


def _shard_entities(kg: KnowledgeGraph, shard: tuple[int, int] | None) -> list[int] | None:
    """The entity ids of ``shard`` (contiguous blocks of the entities sorted by key), None for all."""
    if shard is None:
        return None
    from kgemb.distributed import shard_block

    order = sorted(range(kg.num_entities), key=lambda i: kg.entities[i].key)
    start, stop = shard_block(len(order), shard)
    return sorted(order[start:stop])


VECTOR_FORMS = ("auto", "procedure", "cypher")
VECTOR_PROCEDURE = "kgemb.vectors.set"


def _vector_writer(
    driver: Any, database: str | None, form: str, entity_label: str, id_property: str
) -> tuple[str, Callable[[list[str], np.ndarray, list[int]], list[list[Any]]]]:
    """The batched write query (``$rows``, ``$property``, ``$label``, ``$id_property``) of ``form`` and the encoder
    of its rows ``[elementId, vector, entity id]`` (the entity id goes to ``id_property``, kgemb.rank's tie-break)."""
    if form == "auto":
        form = "procedure" if has_procedure(driver, database, VECTOR_PROCEDURE) else "cypher"
    if form == "procedure":

        def as_bytes(element_ids: list[str], block: np.ndarray, ids: list[int]) -> list[list[Any]]:
            block = np.ascontiguousarray(block, dtype="<f4")
            return [[e, row.tobytes(), i] for e, row, i in zip(element_ids, block, ids, strict=True)]

        query = (
            f"CALL {VECTOR_PROCEDURE}($rows, $property, $label, $id_property) YIELD written RETURN written"
        )
        return query, as_bytes

    def as_lists(element_ids: list[str], block: np.ndarray, ids: list[int]) -> list[list[Any]]:
        return [[e, v, i] for e, v, i in zip(element_ids, block.tolist(), ids, strict=True)]

    query = (
        f"UNWIND $rows AS row MATCH (n) WHERE elementId(n) = row[0] "
        f"SET n{label_expression([entity_label])}, n.{quote(id_property, 'entity id property')} = row[2] "
        "WITH n, row CALL db.create.setNodeVectorProperty(n, $property, row[1])"
    )
    return query, as_lists


def _default_similarity(interaction: str) -> str:
    try:
        return similarity_for(interaction)
    except ConfigError:
        return "cosine"


def _version() -> str:
    from kgemb._version import __version__

    return __version__


def _merge_entities(
    driver: Any,
    database: str | None,
    kg: KnowledgeGraph,
    nodes: _Nodes,
    batch_size: int,
    progress: bool,
    block: list[int] | None = None,
) -> None:
    """Create the nodes of a graph that did not come from Neo4j (those in ``block``, default all), keyed, with
    their display name."""
    from tqdm import tqdm

    assert nodes.create_label is not None
    query = (
        f"UNWIND $rows AS row MERGE (n{label_expression([nodes.create_label])} "
        f"{{{quote(nodes.key, 'key property')}: row[0]}}) SET n.name = coalesce(n.name, row[1])"
    )
    ids = list(range(kg.num_entities)) if block is None else block
    bar = tqdm(total=len(ids), unit="node", desc="neo4j merge nodes", disable=not progress)
    rows = ([[kg.entities[i].key, kg.label(i)] for i in ids[a:b]] for a, b in chunks(len(ids), batch_size))
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
        write_schema(
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


def _predictor(
    model: TrainedModel,
    calibration: Any,
    directory: str | os.PathLike | None,
    hierarchy: Sequence[str] | None,
    evidence_weight: float | None,
) -> Any:
    """The LinkPredictor whose calibration (given, saved, or fitted now), evidence weight (given, or chosen on the
    validation split) and hierarchy relations the procedures reproduce."""
    from kgemb.reasoning import LinkPredictor

    return LinkPredictor(
        model,
        calibration=calibration,
        directory=directory,
        hierarchy=hierarchy,
        evidence_weight=evidence_weight,
    )


def _write_model_node(
    driver: Any,
    database: str | None,
    model: TrainedModel,
    *,
    name: str,
    props: dict[str, Any],
    calibration: Any,
    entity_label: str,
    hierarchy: set[int],
    shard: tuple[int, int] | None = None,
) -> None:
    """Relation vectors as ``(:KgembRelation {model, key})`` nodes linked from the model node, each with its
    relationship type, calibration ``[a, b]``, allowed head/tail labels and whether it is a hierarchy relation
    (child -> parent); then the model node's metadata, every
    relation row (``relation_vectors``, flat) and ``complete = true`` (written last, so a reader never trusts a
    half-done push)."""
    from kgemb.reasoning.constraints import TypeConstraints

    kg = model.kg
    rows_all = np.asarray(model.relation_vectors(), dtype=np.float32)
    relation_vectors = rows_all.tolist()
    labels = type_labels(kg, entity_label)
    types = relationship_types(kg)
    constraints = TypeConstraints(kg)

    def allowed(r: int, side: str) -> list[str]:
        found = constraints.allowed_types(r, side)  # type: ignore[arg-type]
        return sorted({labels[t] for t in found or () if t in labels})

    irreflexive = model.pykeen_model.irreflexive  # such a relation's queries never answer their anchor
    rows = [
        {
            "key": key,
            "id": r,
            "label": kg.relation_text(r),
            "vector": relation_vectors[r],
            "type": types[r],
            "calibration": [float(calibration.a[r]), float(calibration.b[r])],
            "head_types": allowed(r, "head"),
            "tail_types": allowed(r, "tail"),
            "hierarchy": r in hierarchy,
            "irreflexive": bool(irreflexive is not None and irreflexive[r]),
        }
        for r, key in enumerate(kg.relations)
    ]
    write(
        driver,
        database,
        f"MATCH (m:{MODEL_LABEL} {{name: $name}}) "
        f"UNWIND $rows AS row MERGE (r:{RELATION_LABEL} {{model: $name, key: row.key}}) "
        "SET r.id = row.id, r.label = row.label, r.vector = row.vector, r.type = row.type, "
        "r.calibration = row.calibration, r.head_types = row.head_types, r.tail_types = row.tail_types, "
        "r.hierarchy = row.hierarchy, r.irreflexive = row.irreflexive "
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
    interaction = model.pykeen_model.interaction
    write(
        driver,
        database,
        f"MATCH (m:{MODEL_LABEL} {{name: $name}}) SET m += $props, m.relation_dim = $relation_dim, "
        "m.relation_rows = $relation_rows, m.relation_vectors = $relation_vectors, m.reciprocal = $reciprocal, "
        "m.transe_p = $p, m.type_labels = $type_labels, m.rule_weights = $rules.weights, "
        "m.rule_relations = $rules.relations, m.rule_aggregate = $rules.aggregate, m.rule_table = $rules.table, "
        "m.rule_confidence = $rules.confidence, m.rule_support = $rules.support, "
        "m.rule_body_support = $rules.body_support, m.rule_triples = $rules.triples, "
        "m.rule_vote_weights = $rules.vote_weights, m.rule_vote_near = $rules.vote_near, "
        "m.rule_vote_strength = $rules.vote_strength, m.rule_vote_k = $rules.vote_k, m.updated_at = datetime()"
        + (_SHARD_DONE if shard else ", m.complete = true"),
        name=name,
        **_shard_params(shard),
        props={k: v for k, v in props.items() if v is not None},
        relation_dim=int(rows_all.shape[1]) if rows_all.size else 0,
        relation_rows=int(rows_all.shape[0]),
        relation_vectors=rows_all.reshape(-1).tolist(),
        reciprocal=bool(model.config.get("reciprocal", False)),
        p=int(getattr(interaction, "p", 2) or 2),
        type_labels=sorted(set(labels.values())),
        rules=_rule_properties(model),
    )


def _rule_properties(model: TrainedModel) -> dict[str, Any]:
    """The model's rule channel as the plugin reads it (``RuleChannel.java``): the per-relation weights (2R), the
    rule table (flat, 7 columns), the confidences, supports and body supports (for ``kgemb.explain.rules``), the
    aggregate and the training triples the rules ground on (flat, entity ids), and its text-neighbour vote (the
    weights, the neighbours per entity, each entity's neighbours and their strengths, flat; None without one); all None (the properties
    removed) for a model without one."""
    channel = model.pykeen_model.rule_channel
    keys = ("weights", "relations", "aggregate", "table", "confidence", "support", "body_support", "triples")
    votes = ("vote_weights", "vote_k", "vote_near", "vote_strength")
    if channel is None:
        return dict.fromkeys(keys + votes)
    rules = channel.rules
    vote = dict.fromkeys(votes)
    if channel.votes is not None:
        vote = {
            "vote_weights": [float(w) for w in channel.vote_weights.tolist()],
            "vote_k": int(channel.votes.near.shape[1]),
            "vote_near": channel.votes.near.reshape(-1).tolist(),
            "vote_strength": channel.votes.strength.reshape(-1).tolist(),
        }
    return vote | {
        "weights": [float(w) for w in channel.weights.tolist()],
        "relations": int(rules.num_relations),
        "aggregate": rules.aggregate,
        "table": rules.rules.reshape(-1).tolist(),
        "confidence": rules.confidence.tolist(),
        "support": rules.support.tolist(),
        "body_support": rules.body_support.tolist(),
        "triples": rules.triples.reshape(-1).tolist(),
    }
