"""The graph in the database: entities with their type labels and their asserted relationships, for a graph that
came from RDF or TSV, so Neo4j holds what the model learned from and kgemb's procedures can leave known links and
wrong types out.

Type keys and relation keys (often IRIs) become Neo4j names: a key that is already a safe name is kept; otherwise
its local name (after the last ``#``, ``/`` or ``:``) with other characters as ``_``. Writes are ``MERGE``s keyed on
``(:KgembEntity {key})``, batched in bounded transactions: a second push changes nothing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
from kgemb.connectors._neo4j_common import _NAME, chunks, label_expression, quote, write_batches

if TYPE_CHECKING:
    from kgemb.connectors._neo4j_nodes import _Nodes

    from kgemb.graph import KnowledgeGraph


def neo4j_name(key: str, fallback: str = "T") -> str:
    """A safe Neo4j name for a type or relation key: the key itself when safe, else its cleaned local name."""
    if _NAME.fullmatch(key):
        return key
    local = re.split(r"[#/:]", key.rstrip("/#:"))[-1]
    name = re.sub(r"\W+", "_", local).strip("_")[:200]
    if not name or not _NAME.fullmatch(name):
        name = f"{fallback}_{name}"[:200] if name else fallback
    return name


def type_labels(kg: KnowledgeGraph, entity_label: str) -> dict[str, str]:
    """Type key -> the node label that carries it in Neo4j (a graph from Neo4j: the label itself)."""
    out = {t: neo4j_name(t) for t in sorted({t for e in kg.entities for t in e.types})}
    return {t: label for t, label in out.items() if label != entity_label}


def relationship_types(kg: KnowledgeGraph) -> list[str]:
    """Per relation id, the relationship type its links have in Neo4j (unique: a clash gets ``_2``, ``_3`` …)."""
    seen: dict[str, int] = {}
    out: list[str] = []
    for key in kg.relations:
        name = neo4j_name(key, "REL")
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}"[:200])
    return out


def push_graph(
    driver: Any,
    database: str | None,
    kg: KnowledgeGraph,
    nodes: _Nodes,
    batch_size: int,
    progress: bool,
    block: list[int] | None = None,
) -> dict[str, int]:
    """Give the ``(:KgembEntity {key})`` nodes their type labels and ``MERGE`` every triple of the graph (all splits:
    the links Python's predictor counts as known) as a relationship. Returns what was asked for (not what changed).

    ``block`` (a sharded push): only those entities' labels and outgoing links; a tail another shard has not written
    yet is ``MERGE``d by its key and name."""
    from tqdm import tqdm

    assert nodes.create_label is not None, "a graph from Neo4j is already there"
    node = f"(n{label_expression([nodes.create_label])} {{{quote(nodes.key, 'key property')}: k}})"
    labels = type_labels(kg, nodes.create_label)
    by_label: dict[str, list[str]] = {label: [] for label in labels.values()}
    mine = None if block is None else np.zeros(kg.num_entities, dtype=bool)
    if mine is not None:
        mine[block] = True
    for i, e in enumerate(kg.entities):
        if mine is not None and not mine[i]:
            continue
        for t in e.types:
            if t in labels:
                by_label[labels[t]].append(e.key)
    labelled = 0
    for label, keys in by_label.items():
        query = f"UNWIND $rows AS k MATCH {node} SET n{label_expression([label])}"
        labelled += write_batches(
            driver, database, query, (keys[a:b] for a, b in chunks(len(keys), batch_size))
        )
    triples = kg.all_triples()
    if mine is not None:
        triples = triples[mine[triples[:, 0]]]
    types = relationship_types(kg)
    head = f"(h{label_expression([nodes.create_label])} {{{quote(nodes.key, 'key property')}: row[0]}})"
    tail = f"(t{label_expression([nodes.create_label])} {{{quote(nodes.key, 'key property')}: row[1]}})"
    bar = tqdm(total=len(triples), unit="rel", desc="neo4j merge relationships", disable=not progress)
    keys = [e.key for e in kg.entities]
    for r, rel_type in enumerate(types):
        pairs = triples[triples[:, 1] == r][:, [0, 2]].tolist()
        find_tail = f"MATCH {tail}" if mine is None else f"MERGE {tail} SET t.name = coalesce(t.name, row[2])"
        query = f"UNWIND $rows AS row MATCH {head} {find_tail} MERGE (h)-[:{quote(rel_type, 'relationship type')}]->(t)"
        rows = (
            [
                [keys[h], keys[t], kg.label(t)] if mine is not None else [keys[h], keys[t]]
                for h, t in pairs[a:b]
            ]
            for a, b in chunks(len(pairs), batch_size)
        )
        write_batches(driver, database, query, rows, on_batch=lambda n, _: bar.update(n))
    bar.close()
    return {"labels": labelled, "relationships": len(triples)}
