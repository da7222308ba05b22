"""Neo4j pull in each relationship form (packed blocks from the plugin's ``kgemb.export.relationships``, lists
through Cypher) gives the same KnowledgeGraph: entities, texts, relations and triples, under every filter; both
agree with the triples Cypher itself counts; the procedure refuses bad arguments."""

from __future__ import annotations

import random

import numpy as np
import pytest
from kgemb.connectors import _neo4j_pull
from kgemb.connectors import neo4j as kn
from kgemb.connectors._neo4j_common import has_procedure

from kgemb.errors import ConfigError

pytestmark = pytest.mark.neo4j

LABELS = ["Gene", "Disease", "Drug"]
TYPES = ["CAUSES", "TREATS", "LINKED", "SAME_AS"]


def create_graph(driver, database=None, n: int = 90, edges: int = 400) -> None:
    """Nodes of three labels (some with two, some with none), four relationship types, self-loops, parallel
    relationships, isolated nodes, texts in two languages; a kgemb model node with links in and out, and a
    predicted type it names (both left out of every pull)."""
    rnd = random.Random(3)
    nodes = []
    for i in range(n):
        labels = [LABELS[i % 3]] + ([LABELS[(i + 1) % 3]] if i % 7 == 0 else [])
        nodes.append(
            {
                "labels": [] if i % 23 == 5 else labels,
                "props": {
                    "id": f"n{i}",
                    "name": f"node  {i} ",
                    "name_de": f"Knoten {i}",
                    "description": f"no. {i}",
                },
            }
        )
    rels = [[f"n{rnd.randrange(n)}", f"n{rnd.randrange(n)}", rnd.choice(TYPES)] for _ in range(edges)]
    rels += [[f"n{i}", f"n{i}", "LINKED"] for i in range(0, n, 11)]  # self-loops
    rels += [["n1", "n2", "CAUSES"], ["n1", "n2", "CAUSES"]]  # parallel: one triple
    for (
        row
    ) in nodes:  # labels cannot be parameters in plain Cypher: one label set at a time (test-only names)
        label = "".join(f":`{x}`" for x in row["labels"])
        driver.execute_query(f"CREATE (x{label}) SET x = $props", props=row["props"], database_=database)
    for rel_type in TYPES:
        driver.execute_query(
            f"UNWIND $rows AS r MATCH (a {{id: r[0]}}), (b {{id: r[1]}}) CREATE (a)-[:`{rel_type}`]->(b)",
            rows=[r for r in rels if r[2] == rel_type],
            database_=database,
        )
    driver.execute_query(
        "CREATE (m:KgembModel {name: 'm', predicted_types: ['PREDICTED_CAUSES']}) "
        "WITH m MATCH (a {id: 'n3'}), (b {id: 'n4'}) "
        "CREATE (m)-[:HAS_RELATION]->(:KgembRelation {key: 'CAUSES'}), (a)-[:CAUSES]->(m), (m)-[:TREATS]->(b), "
        "(a)-[:PREDICTED_CAUSES]->(b)",
        database_=database,
    )


def cypher_triples(driver, database, labels=(), types=()) -> set[tuple[str, str, str]]:
    """The (head id, type, tail id) set the pull should read, as Cypher finds it."""
    rows = driver.execute_query(
        "MATCH (a)-[r]->(b) WHERE NOT a:KgembModel AND NOT a:KgembRelation AND NOT b:KgembModel "
        "AND NOT b:KgembRelation AND type(r) <> 'PREDICTED_CAUSES' "
        "AND ($labels = [] OR (any(l IN labels(a) WHERE l IN $labels) AND any(l IN labels(b) WHERE l IN $labels))) "
        "AND ($types = [] OR type(r) IN $types) RETURN a.id AS h, type(r) AS r, b.id AS t",
        labels=list(labels),
        types=list(types),
        database_=database,
    ).records
    return {(x["h"], x["r"], x["t"]) for x in rows}


def same_graph(a, b) -> None:
    assert [e.to_json() for e in a.entities] == [e.to_json() for e in b.entities]
    assert a.relations == b.relations
    assert [a.relation_text(r) for r in range(a.num_relations)] == [
        b.relation_text(r) for r in range(b.num_relations)
    ]
    np.testing.assert_array_equal(a.all_triples(), b.all_triples())


@pytest.mark.parametrize(
    ("labels", "types"),
    [
        ((), ()),
        (("Gene", "Disease"), ()),
        ((), ("CAUSES", "LINKED")),
        (("Drug",), ("TREATS", "SAME_AS", "NO_SUCH_TYPE")),
        (("NoSuchLabel",), ()),
        ((), ("NO_SUCH_TYPE",)),
    ],
)
def test_procedure_and_cypher_pull_the_same_graph(
    neo4j_driver, neo4j_server, monkeypatch, labels, types
) -> None:
    db = neo4j_server.database
    create_graph(neo4j_driver, db)
    monkeypatch.setattr(_neo4j_pull, "_BLOCK", 17)  # many blocks: the type table grows across them
    pulled = {
        form: kn.pull(
            neo4j_driver,
            labels=list(labels),
            relationship_types=list(types),
            key="id",
            database=db,
            relationship_form=form,
            progress=False,
        )
        for form in ("procedure", "cypher", "auto")
    }
    assert pulled["auto"].metadata["pull"]["relationship_form"] == "procedure"
    assert pulled["cypher"].metadata["pull"]["relationship_form"] == "cypher"
    same_graph(pulled["procedure"], pulled["cypher"])
    same_graph(pulled["procedure"], pulled["auto"])
    kg = pulled["procedure"]
    want = cypher_triples(neo4j_driver, db, labels, types)
    got = {(kg.entities[h].key, kg.relations[r], kg.entities[t].key) for h, r, t in kg.all_triples().tolist()}
    assert got == want
    assert len(kg.all_triples()) == len(want)  # parallel relationships are one triple
    if not labels and not types:
        assert kg.num_entities == 90 and set(kg.relations) == set(TYPES)
        assert ("n0", "LINKED", "n0") in got  # a self-loop
        assert kg.entities[kg.entity_id("n7")].types == ["Disease", "Drug"]
        assert kg.entities[kg.entity_id("n7")].labels == {"": ["node 7"], "de": ["Knoten 7"]}


def test_element_id_keys_match_across_forms_and_auto_falls_back(
    neo4j_driver, neo4j_server, monkeypatch
) -> None:
    db = neo4j_server.database
    create_graph(neo4j_driver, db, n=30, edges=60)
    a = kn.pull(neo4j_driver, database=db, relationship_form="procedure", progress=False)
    b = kn.pull(neo4j_driver, database=db, relationship_form="cypher", progress=False)
    same_graph(a, b)
    assert a.entities[0].key.count(":") == 2  # element ids, as before
    monkeypatch.setattr(_neo4j_pull, "has_procedure", lambda *_: False)  # a server without kgemb's plugin
    c = kn.pull(neo4j_driver, database=db, progress=False)
    assert c.metadata["pull"]["relationship_form"] == "cypher"
    same_graph(a, c)


def test_export_procedure_blocks_and_refusals(neo4j_driver, neo4j_server) -> None:
    from neo4j.exceptions import ClientError

    db = neo4j_server.database
    assert has_procedure(neo4j_driver, db, "kgemb.export.relationships")
    neo4j_driver.execute_query(
        "CREATE (a:X)-[:R]->(b:X)-[:S]->(a), (b)-[:R]->(b), (a)-[:T]->(:Y)", database_=db
    )
    records = neo4j_driver.execute_query(
        "CALL kgemb.export.relationships(['X'], [], [], [], 2) YIELD types, data RETURN types, data",
        database_=db,
    ).records
    assert [len(r["data"]) for r in records] == [40, 20]  # 20 bytes a relationship, 2 per block
    names = [t for r in records for t in r["types"]]
    rows = np.frombuffer(b"".join(r["data"] for r in records), dtype=_neo4j_pull._RECORD)
    ids = dict(
        neo4j_driver.execute_query(
            "MATCH (n:X) RETURN id(n) AS i, CASE WHEN (n)-[:S]->() THEN 'b' ELSE 'a' END AS who", database_=db
        ).records
    )
    got = sorted((ids[s], names[t], ids[e]) for s, t, e in rows.tolist())
    assert got == [("a", "R", "b"), ("b", "R", "b"), ("b", "S", "a")]  # (a)-[:T]->(:Y) has a tail outside
    for bad in (0, -1, 1 << 30):
        with pytest.raises(ClientError, match="batchSize must be 1 to"):
            neo4j_driver.execute_query(
                "CALL kgemb.export.relationships([], [], [], [], $b)", b=bad, database_=db
            )
    with pytest.raises(ConfigError, match="relationship_form 'rows' is unknown"):
        kn.pull(neo4j_driver, database=db, relationship_form="rows", progress=False)


def test_nodes_sharing_a_key_are_one_entity_in_both_forms(neo4j_driver, neo4j_server) -> None:
    db = neo4j_server.database
    neo4j_driver.execute_query(
        "CREATE (a:P {id: 'x', name: 'first'}), (b:P {id: 'x', name: 'second'}), (c:P {id: 'y'}), "
        "(a)-[:R]->(c), (c)-[:R]->(b), (b)-[:S]->(a)",
        database_=db,
    )
    for form in ("procedure", "cypher"):
        kg = kn.pull(neo4j_driver, key="id", database=db, relationship_form=form, progress=False)
        # entities come in node id order, which a reused id can change
        assert sorted(e.key for e in kg.entities) == ["x", "y"]
        assert sorted(kg.entities[kg.entity_id("x")].labels[""]) == ["first", "second"]
        got = {
            (kg.entities[h].key, kg.relations[r], kg.entities[t].key) for h, r, t in kg.all_triples().tolist()
        }
        assert got == {("x", "R", "y"), ("y", "R", "x"), ("x", "S", "x")}
