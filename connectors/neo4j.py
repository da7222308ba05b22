"""Neo4j: pull a graph into a KnowledgeGraph, push a model's vectors, index and metadata, write predicted links,
and answer link prediction through ``db.index.vector.queryNodes`` calls that any Neo4j driver can make.

Every write is batched in bounded, managed (driver-retried) transactions and keyed (``MATCH``/``MERGE`` on the node
key), so a rerun after a crash completes the job without duplicates. Names are validated and backtick-quoted; values
always travel as parameters. The README's "Neo4j" section shows the Cypher that applications run.

The work is split by verb: ``_neo4j_pull`` (read a graph), ``_neo4j_push`` (vectors, index, model node),
``_neo4j_predict`` (predicted links written back), ``_neo4j_index`` (answering through the vector index).
"""

from __future__ import annotations

from kgemb.connectors._neo4j_common import ELEMENT_ID, ENTITY_LABEL, MODEL_LABEL, RELATION_LABEL, connect
from kgemb.connectors._neo4j_index import predict_via_index, search_via_index, tail_query_cypher
from kgemb.connectors._neo4j_predict import (
    Link,
    WriteReport,
    heads_for,
    predict_links,
    predicted_type,
    write_links,
)
from kgemb.connectors._neo4j_pull import DEFAULT_TEXT_PROPERTIES, pull
from kgemb.connectors._neo4j_push import PushReport, push, wait_for_index

__all__ = [
    "DEFAULT_TEXT_PROPERTIES",
    "ELEMENT_ID",
    "ENTITY_LABEL",
    "MODEL_LABEL",
    "RELATION_LABEL",
    "Link",
    "PushReport",
    "WriteReport",
    "connect",
    "heads_for",
    "predict_links",
    "predict_via_index",
    "predicted_type",
    "pull",
    "push",
    "search_via_index",
    "tail_query_cypher",
    "wait_for_index",
    "write_links",
]
