"""Neo4j push in each vector form (float32 bytes through the plugin's ``kgemb.vectors.set``, a list through
``db.create.setNodeVectorProperty``) stores the same vectors; the procedure refuses malformed rows."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from kgemb.connectors import neo4j as kn
from kgemb.connectors._neo4j_push import has_procedure

import kgemb
from kgemb.errors import ConfigError
from kgemb.graph import GraphBuilder

pytestmark = pytest.mark.neo4j


@pytest.fixture(scope="module")
def model():
    builder = GraphBuilder()
    for i in range(30):
        builder.add_triple(f"http://ex.org/n{i}", "http://ex.org/next", f"http://ex.org/n{(i * 7 + 1) % 30}")
        builder.add_label(f"http://ex.org/n{i}", f"node {i}", "en")
    return kgemb.train(
        builder.build(), mode="structure", interaction="rotate", dim=16, epochs=2, show_progress=False
    )


def stored(driver, db, prop: str) -> dict[str, list[float]]:
    rows = driver.execute_query(
        f"MATCH (n:KgembEntity) WHERE n.`{prop}` IS NOT NULL RETURN n.key AS key, n.`{prop}` AS v",
        database_=db,
    ).records
    return {r["key"]: r["v"] for r in rows}


def test_both_forms_store_the_same_float32_vectors(neo4j_driver, neo4j_server, model) -> None:
    db = neo4j_server.database
    assert has_procedure(neo4j_driver, db, "kgemb.vectors.set")
    expected = np.asarray(model.entity_vectors(), dtype=np.float32)
    results = {}
    for form in ("procedure", "cypher", "auto"):
        report = kn.push(
            model,
            neo4j_driver,
            database=db,
            vector_property=f"v_{form}",
            vector_form=form,
            batch_size=7,
            workers=2,
            vector_index=False,
            progress=False,
        )
        assert (report.nodes, report.missing) == (30, 0)
        results[form] = stored(neo4j_driver, db, f"v_{form}")
        assert len(results[form]) == 30
        for key, vector in results[form].items():
            np.testing.assert_array_equal(
                np.asarray(vector, dtype=np.float32), expected[model.kg.entity_id(key)]
            )
        ids = stored(neo4j_driver, db, f"v_{form}_id")  # kgemb.rank's tie-break: the graph's entity id
        assert ids == {key: model.kg.entity_id(key) for key in results[form]}
    assert results["procedure"] == results["cypher"] == results["auto"]
    with pytest.raises(ConfigError, match="vector_form 'json' is unknown"):
        kn.push(model, neo4j_driver, database=db, vector_form="json", progress=False)


def test_vectors_set_counts_missing_nodes_and_refuses_bad_rows(neo4j_driver, neo4j_server) -> None:
    from neo4j.exceptions import ClientError

    db = neo4j_server.database
    eid = neo4j_driver.execute_query("CREATE (n:Probe) RETURN elementId(n) AS e", database_=db).records[0][
        "e"
    ]
    gone = neo4j_driver.execute_query("CREATE (n:Probe) RETURN elementId(n) AS e", database_=db).records[0][
        "e"
    ]
    neo4j_driver.execute_query("MATCH (n) WHERE elementId(n) = $e DELETE n", e=gone, database_=db)
    call = "CALL kgemb.vectors.set($rows, 'v', 'Vec') YIELD written, missing RETURN written, missing"
    good = struct.pack("<3f", 1.5, -2.0, 0.25)
    record = neo4j_driver.execute_query(call, rows=[[eid, good], [gone, good]], database_=db).records[0]
    assert (record["written"], record["missing"]) == (1, 1)
    node = neo4j_driver.execute_query("MATCH (n:Probe:Vec) RETURN n.v AS v", database_=db).records
    assert [list(r["v"]) for r in node] == [[1.5, -2.0, 0.25]]
    for rows, message in (
        ([[eid, b"\x00" * 6]], "not a whole number"),
        ([[eid, good], [eid, good + good]], "dimensions"),
        ([[eid, struct.pack("<2f", 1.0, float("nan"))]], "finite"),
        ([[eid]], "must be \\[elementId"),
    ):
        with pytest.raises(ClientError, match=message):
            neo4j_driver.execute_query(call, rows=rows, database_=db)
    assert [
        list(r["v"])
        for r in neo4j_driver.execute_query("MATCH (n:Probe) RETURN n.v AS v", database_=db).records
    ] == [[1.5, -2.0, 0.25]]  # a refused batch wrote nothing
