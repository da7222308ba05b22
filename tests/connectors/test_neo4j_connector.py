"""The Neo4j connector against the real server: pull, push + vector index + model node, predicted links (dry run
and written twice), link prediction through db.index.vector.queryNodes, hostile names, and a crash mid-push."""

from __future__ import annotations

import itertools
import os
import random
import threading

import numpy as np
import pytest
import torch
from kgemb.connectors import neo4j as kn
from kgemb.connectors._neo4j_common import credentials, quote
from kgemb.connectors._neo4j_vectors import cypher_query_vector, query_vectors
from kgemb.connectors.neo4j_dev import DevServer

import kgemb
from kgemb.cli import main
from kgemb.errors import ConfigError, InputError

pytestmark = pytest.mark.neo4j
external = pytest.mark.skipif(
    bool(os.environ.get("KGEMB_NEO4J_URI")),
    reason="KGEMB_NEO4J_URI is set: this test starts servers of its own",
)
HOSTILE = [
    "x`) DETACH DELETE n //",
    "MATCH (n) DETACH DELETE n",
    "a'b",
    'a"b',
    "a}b",
    "a//b",
    "`",
    "",
]


def create_graph(driver, database=None, diseases: int = 60, symptoms: int = 90, drugs: int = 20) -> None:
    """A small medical graph: diseases with symptoms, drugs treating diseases, names in several languages."""
    rnd = random.Random(7)
    rows = {
        "symptoms": [
            {"id": f"s{i}", "name": f"symptom {i}", "name_zh": f"症状 {i}", "name_de": f"Symptom {i}"}
            for i in range(symptoms)
        ],
        "diseases": [
            {"id": f"d{i}", "name": f"disease {i}", "description": f"a disorder number {i}"}
            for i in range(diseases)
        ],
        "drugs": [{"id": f"m{i}", "name": f"drug {i}", "synonyms": [f"medicine {i}"]} for i in range(drugs)],
        "has": [[f"d{i}", f"s{s}"] for i in range(diseases) for s in rnd.sample(range(symptoms), 4)],
        "treats": [[f"m{rnd.randrange(drugs)}", f"d{i}"] for i in range(diseases)],
    }
    for query in (
        "UNWIND $symptoms AS row CREATE (s:Symptom) SET s = row",
        "UNWIND $diseases AS row CREATE (d:Disease) SET d = row",
        "UNWIND $drugs AS row CREATE (m:Drug) SET m = row",
        "UNWIND $has AS p MATCH (d:Disease {id: p[0]}), (s:Symptom {id: p[1]}) CREATE (d)-[:HAS_SYMPTOM]->(s)",
        "UNWIND $treats AS p MATCH (m:Drug {id: p[0]}), (d:Disease {id: p[1]}) MERGE (m)-[:TREATS]->(d)",
    ):
        driver.execute_query(query, rows, database_=database)


def snapshot(driver, database=None) -> dict:
    """Everything a write could change: counts, labels, types, property keys, indexes, constraints."""
    one = lambda q: driver.execute_query(q, database_=database).records[0][0]  # noqa: E731
    return {
        "nodes": one("MATCH (n) RETURN count(n)"),
        "relationships": one("MATCH ()-[r]->() RETURN count(r)"),
        "labels": one("CALL db.labels() YIELD label RETURN collect(label)"),
        "types": one("CALL db.relationshipTypes() YIELD relationshipType RETURN collect(relationshipType)"),
        "keys": one("CALL db.propertyKeys() YIELD propertyKey RETURN collect(propertyKey)"),
        "properties": one("MATCH (n) RETURN sum(size(keys(n)))"),
        "indexes": one("SHOW INDEXES YIELD name RETURN collect(name)"),
        "constraints": one("SHOW CONSTRAINTS YIELD name RETURN collect(name)"),
    }


@pytest.fixture(scope="module")
def medical(neo4j_server):
    """The medical graph pulled (key = the ``id`` property, so keys stay valid after each test empties the
    database and creates the graph again) and a small RotatE model trained on it."""
    from neo4j import GraphDatabase

    with GraphDatabase.driver(neo4j_server.uri, auth=neo4j_server.auth) as driver:
        driver.execute_query("MATCH (n) DETACH DELETE n", database_=neo4j_server.database)
        create_graph(driver, neo4j_server.database)
        kg = kn.pull(driver, key="id", database=neo4j_server.database, progress=False)
    model = kgemb.train(kg, mode="structure", interaction="rotate", dim=32, epochs=5, show_progress=False)
    return kg, model


# ------------------------------------------------------------------------------------------------------- pull
def test_pull_whole_graph_with_texts_types_and_keys(neo4j_driver, neo4j_server) -> None:
    db = neo4j_server.database
    create_graph(neo4j_driver, db)
    kg = kn.pull(neo4j_driver, key="id", database=db, page_size=50, progress=False)
    assert (kg.num_entities, kg.num_relations) == (170, 2)
    assert (
        len(kg.triples("train"))
        == 240
        + neo4j_driver.execute_query("MATCH (:Drug)-[r:TREATS]->() RETURN count(r)", database_=db).records[0][
            0
        ]
    )
    fever = kg.entities[kg.entity_id("s3")]
    assert fever.labels == {"": ["symptom 3"], "zh": ["症状 3"], "de": ["Symptom 3"]}
    assert fever.types == ["Symptom"]
    drug = kg.entities[kg.entity_id("m2")]
    assert drug.aliases == {"": ["medicine 2"]}
    assert kg.entities[kg.entity_id("d5")].descriptions == {"": ["a disorder number 5"]}
    assert kg.lookup("症状 3") == [kg.entity_id("s3")]
    assert kg.relation_text(kg.relation_id("HAS_SYMPTOM")) == "has symptom"
    h, r, t = kg.triples()[0]
    assert (
        kg.entities[h].types == ["Disease"]
        and kg.relations[r] == "HAS_SYMPTOM"
        and kg.entities[t].key[0] == "s"
    )
    assert kg.metadata["neo4j"]["key"] == "id" and kg.metadata["pull"]["relationships"] == len(
        kg.all_triples()
    )

    by_element = kn.pull(neo4j_driver, database=db, progress=False)
    eid = neo4j_driver.execute_query(
        "MATCH (s:Symptom {id: 's3'}) RETURN elementId(s)", database_=db
    ).records[0][0]
    assert by_element.entities[by_element.entity_id(eid)].labels[""] == ["symptom 3"]
    assert len(by_element.all_triples()) == len(kg.all_triples())


def test_pull_some_labels_types_or_a_query(neo4j_driver, neo4j_server) -> None:
    db = neo4j_server.database
    create_graph(neo4j_driver, db)
    only = kn.pull(neo4j_driver, labels=["Disease", "Symptom"], key="id", database=db, progress=False)
    assert only.num_entities == 150 and only.relations == ["HAS_SYMPTOM"] and len(only.all_triples()) == 240
    treats = kn.pull(neo4j_driver, relationship_types=["TREATS"], key="id", database=db, progress=False)
    assert treats.relations == ["TREATS"] and treats.num_entities == 170
    query = kn.pull(
        neo4j_driver,
        query="MATCH (d:Disease)-[r:HAS_SYMPTOM]->(s:Symptom) WHERE d.id IN $ids RETURN d AS head, r AS relation, "
        "s AS tail",
        parameters={"ids": ["d1", "d2"]},
        key="id",
        text_properties={"Disease": {"description": "label@en"}, "*": {"name_de": "label@de"}},
        database=db,
        progress=False,
    )
    assert query.num_entities == 10 and len(query.all_triples()) == 8
    assert query.entities[query.entity_id("d1")].labels == {"en": ["a disorder number 1"]}
    symptom = next(e for e in query.entities if e.key.startswith("s"))
    assert list(symptom.labels) == ["de"]
    strings = kn.pull(
        neo4j_driver,
        query="MATCH (d:Disease {id: 'd1'})-[:HAS_SYMPTOM]->(s) RETURN d AS head, 'shows' AS relation, s AS tail",
        key="id",
        database=db,
        progress=False,
    )
    assert strings.relations == ["shows"] and len(strings.all_triples()) == 4


def test_pull_explains_bad_keys_and_queries(neo4j_driver, neo4j_server) -> None:
    db = neo4j_server.database
    neo4j_driver.execute_query("CREATE (:A {id: 'x'})-[:R]->(:A {name: 'no id'})", database_=db)
    with pytest.raises(InputError, match=r"no key property 'id'.*key='elementId'"):
        kn.pull(neo4j_driver, key="id", database=db, progress=False)
    neo4j_driver.execute_query("MATCH (a:A) WHERE a.id IS NULL SET a.id = 7", database_=db)
    with pytest.raises(InputError, match="both numbers and strings"):
        kn.pull(neo4j_driver, key="id", database=db, progress=False)
    with pytest.raises(InputError, match="must return columns head and tail"):
        kn.pull(neo4j_driver, query="MATCH (n) RETURN n AS node", database=db, progress=False)
    with pytest.raises(ConfigError, match=r"cannot reach Neo4j at bolt://127\.0\.0\.1:1\b"):
        kn.pull("bolt://127.0.0.1:1", progress=False)


# ------------------------------------------------------------------------------------------------------- push
def test_push_vectors_index_and_model_node_twice(neo4j_driver, neo4j_server, medical) -> None:
    db = neo4j_server.database
    kg, model = medical
    create_graph(neo4j_driver, db)
    before = snapshot(neo4j_driver, db)
    report = kn.push(model, neo4j_driver, database=db, batch_size=64, progress=False)
    assert (report.nodes, report.missing, report.dim, report.similarity) == (170, 0, 32, "euclidean")
    rows = neo4j_driver.execute_query(
        "MATCH (n:KgembEntity) RETURN n.id AS id, n.embedding AS v", database_=db
    ).records
    assert len(rows) == 170
    vectors = model.entity_vectors()
    for row in rows[:20]:
        np.testing.assert_allclose(row["v"], vectors[kg.entity_id(row["id"])], rtol=1e-6)
    index = neo4j_driver.execute_query(
        "SHOW VECTOR INDEXES YIELD name, state, labelsOrTypes, properties, options RETURN *", database_=db
    ).records
    assert len(index) == 1 and index[0]["name"] == "kgemb_embedding" and index[0]["state"] == "ONLINE"
    assert index[0]["labelsOrTypes"] == ["KgembEntity"] and index[0]["properties"] == ["embedding"]
    config = index[0]["options"]["indexConfig"]
    assert config["vector.dimensions"] == 32 and config["vector.similarity_function"] == "EUCLIDEAN"
    node = neo4j_driver.execute_query("MATCH (m:KgembModel) RETURN m {.*} AS m", database_=db).records
    assert len(node) == 1
    meta = node[0]["m"]
    assert meta["interaction"] == "rotate" and meta["dim"] == 32 and meta["complete"] is True
    assert meta["index"] == "kgemb_embedding" and meta["key"] == "id" and meta["num_entities"] == 170
    assert meta["config"].startswith("{") and "signature" in meta
    relations = neo4j_driver.execute_query(
        "MATCH (:KgembModel {name: 'kgemb'})-[:HAS_RELATION]->(r:KgembRelation) RETURN r.key AS key, r.vector AS v",
        database_=db,
    ).records
    assert sorted(r["key"] for r in relations) == sorted(kg.relations)
    for r in relations:
        np.testing.assert_allclose(r["v"], model.relation_vectors()[kg.relation_id(r["key"])], rtol=1e-6)

    after_first = snapshot(neo4j_driver, db)
    assert after_first["nodes"] == before["nodes"] + 1 + kg.num_relations
    assert after_first["relationships"] == before["relationships"] + kg.num_relations
    kn.push(model, neo4j_driver, database=db, batch_size=1000, progress=False)
    assert snapshot(neo4j_driver, db) == after_first

    kn.push(model, neo4j_driver, database=db, similarity="cosine", progress=False)
    replaced = neo4j_driver.execute_query(
        "SHOW VECTOR INDEXES YIELD name, options RETURN name, options.indexConfig AS c", database_=db
    ).records
    assert len(replaced) == 1 and replaced[0]["c"]["vector.similarity_function"] == "COSINE"


def test_push_a_graph_from_elsewhere_merges_its_nodes(neo4j_driver, neo4j_server) -> None:
    from kgemb.graph import GraphBuilder

    db = neo4j_server.database
    builder = GraphBuilder()
    for h, t in [("a", "b"), ("b", "c"), ("c", "a"), ("a", "d")]:
        builder.add_triple(f"http://ex.org/{h}", "http://ex.org/next", f"http://ex.org/{t}")
        builder.add_label(f"http://ex.org/{h}", f"node {h}", "en")
    model = kgemb.train(
        builder.build(), mode="structure", interaction="transe", dim=8, epochs=2, show_progress=False
    )
    for _ in range(2):
        report = kn.push(model, neo4j_driver, database=db, progress=False)
        assert report.nodes == 4 and report.similarity == "euclidean"
        rows = neo4j_driver.execute_query(
            "MATCH (n:KgembEntity) RETURN n.key AS key, n.name AS name, size(n.embedding) AS d ORDER BY key",
            database_=db,
        ).records
        assert [(r["key"], r["d"]) for r in rows] == [(f"http://ex.org/{x}", 8) for x in "abcd"]
        assert rows[0]["name"] == "node a"


def test_credentials_come_from_arguments_or_environment(monkeypatch) -> None:
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    monkeypatch.delenv("NEO4J_USERNAME", raising=False)
    assert credentials() is None
    assert credentials("alice", "pw") == ("alice", "pw")
    monkeypatch.setenv("NEO4J_PASSWORD", "from-env")
    assert credentials() == ("neo4j", "from-env")
    monkeypatch.setenv("NEO4J_USERNAME", "bob")
    assert credentials() == ("bob", "from-env")
    with pytest.raises(ConfigError, match="not a Neo4j URI"):
        kn.connect("http://localhost:7474")
    # neo4j+s:// is the driver's TLS scheme (Aura); no TLS server here, so it must fail to reach, not to parse
    with pytest.raises(ConfigError, match=r"cannot reach Neo4j at neo4j\+s://127\.0\.0\.1:1") as err:
        kn.connect("neo4j+s://127.0.0.1:1", connection_timeout=2)
    assert "from-env" not in str(err.value)


# ------------------------------------------------------------------------------------------------ predicted links
def test_predict_dry_run_then_write_twice(
    neo4j_driver, neo4j_server, medical, tmp_path, capsys, monkeypatch
) -> None:
    db = neo4j_server.database
    kg, model = medical
    create_graph(neo4j_driver, db)
    model.save(tmp_path / "model")
    dry_run = ["neo4j", "predict", str(tmp_path / "model"), "--relation", "has symptom", "--k", "3"]
    args = [*dry_run, "--uri", neo4j_server.uri] + (["--database", db] if db else [])
    before = snapshot(neo4j_driver, db)
    monkeypatch.delenv("NEO4J_URI", raising=False)
    assert main(dry_run) == 0  # a dry run needs no server
    assert capsys.readouterr().out.count("\n") == 60 * 3
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 60 * 3 and lines[0].startswith("disease ") and "\tHAS_SYMPTOM\tsymptom " in lines[0]
    assert snapshot(neo4j_driver, db) == before  # a dry run writes nothing

    assert main([*args, "--write"]) == 0
    assert "180 predicted links: 180 created, 0 updated, 0 removed" in capsys.readouterr().out
    query = (
        "MATCH (d:Disease)-[p:PREDICTED_HAS_SYMPTOM]->(s:Symptom) "
        "RETURN d.id AS d, s.id AS s, p.score AS score, p.rank AS rank, p.model AS model, p.created_at AS at "
        "ORDER BY d, rank"
    )
    first = [dict(r) for r in neo4j_driver.execute_query(query, database_=db).records]
    assert len(first) == 180 and {r["model"] for r in first} == {"kgemb"}
    known = {(kg.entities[h].key, kg.entities[t].key) for h, _, t in kg.all_triples()}
    assert not any((r["d"], r["s"]) in known for r in first)
    links = kn.predict_links(model, "HAS_SYMPTOM", k=3, directory=tmp_path / "model")
    assert sorted((x.head, x.rank, x.tail) for x in links) == [(r["d"], r["rank"], r["s"]) for r in first]
    scores = [r["score"] for r in first]
    assert all(0.0 <= p <= 1.0 for p in scores)
    assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(first) if a["d"] == b["d"])

    assert main([*args, "--write"]) == 0
    assert "180 predicted links: 0 created, 0 updated, 0 removed" in capsys.readouterr().out
    assert [dict(r) for r in neo4j_driver.execute_query(query, database_=db).records] == first

    links = kn.predict_links(
        model, "HAS_SYMPTOM", k=3, min_score=float(np.median(scores)), directory=tmp_path / "model"
    )
    heads = [kg.entities[i].key for i in kn.heads_for(model, "HAS_SYMPTOM")]
    report = kn.write_links(links, model, neo4j_driver, heads=heads, database=db)
    assert (report.created, report.updated, report.deleted) == (0, 0, 180 - len(links))
    assert len(neo4j_driver.execute_query(query, database_=db).records) == len(links)
    report = kn.write_links([], model, neo4j_driver, relation="has symptom", heads=heads, database=db)
    assert report.deleted == len(links) and not neo4j_driver.execute_query(query, database_=db).records
    assert (
        "PREDICTED_HAS_SYMPTOM" not in kn.pull(neo4j_driver, key="id", database=db, progress=False).relations
    )


# ------------------------------------------------------------------------------------ answering through the index
def test_query_vectors_give_the_model_scores(medical) -> None:
    """The query vector each interaction implies reproduces the model's exact scores (so the index's nearest
    neighbours are the model's best links)."""
    kg, _ = medical
    for interaction in ("rotate", "transe", "distmult", "complex"):
        model = kgemb.train(
            kg, mode="structure", interaction=interaction, dim=16, epochs=1, show_progress=False, rules=False
        )
        e, rel = model.entity_vectors().astype(np.float64), model.relation_vectors()
        assert model.config["reciprocal"] and len(rel) == 2 * kg.num_relations
        heads, r = np.arange(5), 1
        q = query_vectors(interaction, "tail", e[heads], rel[[r] * 5])
        exact = model.score_tails(torch.as_tensor(heads), torch.full((5,), r)).numpy()
        if interaction == "rotate":
            implied = -np.linalg.norm(q[:, None, :] - e[None], axis=-1)
        elif interaction == "transe":
            implied = -np.abs(q[:, None, :] - e[None]).sum(-1)
        else:
            implied = q @ e.T
        np.testing.assert_allclose(implied, exact, rtol=1e-4, atol=1e-4, err_msg=interaction)
        # a reciprocal model answers (?, r, t) as (t, r + R, ?): the tail query of the inverse relation's row
        q = query_vectors(interaction, "tail", e[heads], rel[[r + kg.num_relations] * 5])
        exact = model.score_heads(torch.full((5,), r), torch.as_tensor(heads)).numpy()
        if interaction == "rotate":
            implied = -np.linalg.norm(q[:, None, :] - e[None], axis=-1)
        elif interaction == "transe":
            implied = -np.abs(q[:, None, :] - e[None]).sum(-1)
        else:
            implied = q @ e.T
        np.testing.assert_allclose(implied, exact, rtol=1e-4, atol=1e-4, err_msg=interaction)


def test_cypher_query_vector_equals_numpy(neo4j_driver) -> None:
    """The pure-Cypher query vector (what an application runs) is the one kgemb computes in Python."""
    rnd = np.random.default_rng(0)
    v = rnd.standard_normal(8)
    for interaction in ("rotate", "transe", "distmult", "complex", "pairre"):
        r = rnd.standard_normal(16 if interaction == "pairre" else 8)
        for direction in ("tail", "head"):
            expr = cypher_query_vector(interaction, direction, "v", "r")
            got = neo4j_driver.execute_query(
                f"WITH $v AS v, $r AS r RETURN {expr} AS q", v=v.tolist(), r=r.tolist()
            )
            want = query_vectors(interaction, direction, v, r)[0]
            np.testing.assert_allclose(
                got.records[0]["q"], want, rtol=1e-5, err_msg=f"{interaction} {direction}"
            )


def test_predict_via_index_matches_exact_ranking(neo4j_driver, neo4j_server, medical) -> None:
    db = neo4j_server.database
    kg, model = medical
    create_graph(neo4j_driver, db)
    kn.push(model, neo4j_driver, database=db, progress=False)
    r = kg.relation_id("HAS_SYMPTOM")
    agree = []
    for head in [f"d{i}" for i in range(0, 60, 6)]:
        got = kn.predict_via_index(
            model, neo4j_driver, head=head, relation="HAS_SYMPTOM", k=5, candidates=40, database=db
        )
        h = kg.entity_id(head)
        scores = model.score_tails([h], [r])[0]
        scores[kg.triples()[(kg.triples()[:, 0] == h) & (kg.triples()[:, 1] == r), 2]] = -torch.inf
        scores[h] = -torch.inf
        scores[
            [not e.key.startswith("s") for e in kg.entities]
        ] = -torch.inf  # HAS_SYMPTOM's tails are symptoms
        exact = [kg.entities[i].key for i in torch.topk(scores, 5).indices.tolist()]
        assert [x["rank"] for x in got] == [1, 2, 3, 4, 5]
        assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(got))
        agree.append(len({x["key"] for x in got} & set(exact)) / 5)
    # 40 candidates of 170 nodes: blind candidates would share about a quarter of the top 5
    assert np.mean(agree) >= 0.9, agree
    # one candidate asked for, known links and diseases among the index's nearest: the request widens until 5 remain
    few = kn.predict_via_index(
        model, neo4j_driver, head="d0", relation="HAS_SYMPTOM", k=5, candidates=1, database=db
    )
    assert [x["rank"] for x in few] == [1, 2, 3, 4, 5] and all(x["key"].startswith("s") for x in few)
    heads = kn.predict_via_index(model, neo4j_driver, tail="s3", relation="has symptom", k=3, database=db)
    assert len(heads) == 3 and all(x["key"].startswith("d") or x["key"].startswith("m") for x in heads)
    row = model.score_heads([r], [kg.entity_id("s3")])[0]  # the head query's own score (inverse relation)
    want = [float(row[kg.entity_id(x["key"])]) for x in heads]
    assert [x["score"] for x in heads] == pytest.approx(want, rel=1e-5)


def test_text_search_and_text_queries_through_the_index(neo4j_driver, neo4j_server, medical) -> None:
    db = neo4j_server.database
    kg, _ = medical
    create_graph(neo4j_driver, db)
    model = kgemb.train(kg, mode="text", interaction="distmult", dim=64, epochs=3, show_progress=False)
    kn.push(model, neo4j_driver, database=db, progress=False)
    found = kn.search_via_index(model, neo4j_driver, "drug 7", k=5, database=db)
    assert [x["rank"] for x in found] == [1, 2, 3, 4, 5]
    assert "m7" in [x["key"] for x in found]
    tails = kn.predict_via_index(
        model, neo4j_driver, text="a new disease", relation="HAS_SYMPTOM", k=4, database=db
    )
    assert len(tails) == 4 and tails[0]["score"] >= tails[-1]["score"]
    exact = model.score_tails_from_vectors(
        model.embed_texts(["a new disease"]), [kg.relation_id("HAS_SYMPTOM")]
    )[0]
    assert tails[0]["score"] == pytest.approx(float(exact[kg.entity_id(tails[0]["key"])]), rel=1e-5)


# ------------------------------------------------------------------------------------------------------ safety
def test_hostile_names_are_refused_and_change_nothing(neo4j_driver, neo4j_server, medical) -> None:
    db = neo4j_server.database
    _kg, model = medical
    create_graph(neo4j_driver, db)
    kn.push(model, neo4j_driver, database=db, progress=False)
    before = snapshot(neo4j_driver, db)
    links = kn.predict_links(model, "HAS_SYMPTOM", k=1)
    attempts = []
    for name in HOSTILE:
        attempts += [
            lambda n=name: kn.pull(neo4j_driver, labels=[n], database=db, progress=False),
            lambda n=name: kn.pull(
                neo4j_driver, relationship_types=["HAS_SYMPTOM", n], database=db, progress=False
            ),
            lambda n=name: kn.pull(neo4j_driver, key=n, database=db, progress=False),
            lambda n=name: kn.pull(neo4j_driver, text_properties={n: "label"}, database=db, progress=False),
            lambda n=name: kn.pull(neo4j_driver, attributes=[n], database=db, progress=False),
            lambda n=name: kn.push(model, neo4j_driver, entity_label=n, database=db, progress=False),
            lambda n=name: kn.push(model, neo4j_driver, vector_property=n, database=db, progress=False),
            lambda n=name: kn.push(model, neo4j_driver, index=n, database=db, progress=False),
            lambda n=name: kn.push(model, neo4j_driver, name=n, database=db, progress=False),
            lambda n=name: kn.write_links(links, model, neo4j_driver, relationship_type=n, database=db),
            lambda n=name: kn.write_links(links, model, neo4j_driver, name=n, database=db),
        ]
    for attempt in attempts:
        with pytest.raises(InputError, match="not a safe Neo4j name"):
            attempt()
    assert snapshot(neo4j_driver, db) == before
    assert quote("Disease") == "`Disease`" and quote("症状_2") == "`症状_2`"

    # hostile *values* are only ever parameters: stored and read back verbatim
    evil = "x'}) MATCH (n) DETACH DELETE n //`"
    neo4j_driver.execute_query(
        "CREATE (:Evil {id: $v, name: $v})-[:R]->(:Evil {id: 'ok', name: 'ok'})", v=evil, database_=db
    )
    pulled = kn.pull(neo4j_driver, labels=["Evil"], key="id", database=db, progress=False)
    assert pulled.entities[pulled.entity_id(evil)].labels == {"": [evil]}
    evil_model = kgemb.train(
        pulled, mode="structure", interaction="transe", dim=8, epochs=1, show_progress=False
    )
    kn.push(evil_model, neo4j_driver, name="evil", vector_property="evil_vec", database=db, progress=False)
    assert snapshot(neo4j_driver, db)["nodes"] == before["nodes"] + 2 + 1 + 1


# ------------------------------------------------------------------------------------------ crash and restart
@external
def test_push_killed_midway_then_rerun_gives_exact_result(tmp_path, medical, monkeypatch) -> None:
    """SIGKILL the server during a push, restart it on the same data, push again: exactly one vector per node,
    one index, one model node, and predicted links written twice without duplicates. Also: credentials from the
    environment, never shown in messages."""
    from neo4j import GraphDatabase

    kg, model = medical
    monkeypatch.setenv("NEO4J_USERNAME", "neo4j")
    monkeypatch.setenv("NEO4J_PASSWORD", "crash-test-secret")
    server = DevServer(data_dir=tmp_path / "data", password="crash-test-secret")
    try:
        server.start()
        with GraphDatabase.driver(server.uri, auth=server.auth) as driver:
            create_graph(driver)
            expected = snapshot(driver)
        with pytest.raises(ConfigError, match="refused user 'neo4j'") as denied:
            kn.connect(server.uri, password="wrong-secret")
        assert "wrong-secret" not in str(denied.value)

        batches = []

        def kill_after_three(written: int, total: int) -> None:
            batches.append(written)
            if len(batches) == 3:
                threading.Timer(0.05, server.kill).start()

        # a driver of our own with short retries, so the failed push gives up quickly
        driver = kn.connect(server.uri, max_transaction_retry_time=1.0)
        try:
            with pytest.raises(ConfigError, match="cannot reach Neo4j"):
                kn.push(model, driver, batch_size=10, on_batch=kill_after_three, progress=False)
        finally:
            driver.close()
        assert 3 <= len(batches) < 17

        server.start()
        with GraphDatabase.driver(server.uri, auth=server.auth) as driver:
            partial = driver.execute_query("MATCH (n) WHERE n.embedding IS NOT NULL RETURN count(n)").records[
                0
            ][0]
            assert 30 <= partial < 170
            assert driver.execute_query("MATCH (m:KgembModel) RETURN m.complete").records[0][0] is False
        report = kn.push(model, server.uri, batch_size=10, progress=False)
        assert report.nodes == 170
        for _ in range(2):
            links = kn.predict_links(model, "HAS_SYMPTOM", k=2)
            kn.write_links(links, model, server.uri)
        with GraphDatabase.driver(server.uri, auth=server.auth) as driver:
            one = lambda q: driver.execute_query(q).records[0][0]  # noqa: E731
            assert one("MATCH (n:KgembEntity) WHERE size(n.embedding) = 32 RETURN count(n)") == 170
            assert one("MATCH (n) WHERE n.embedding IS NOT NULL RETURN count(n)") == 170
            assert one("MATCH (m:KgembModel {complete: true}) RETURN count(m)") == 1
            assert one("MATCH (r:KgembRelation) RETURN count(r)") == kg.num_relations
            assert one("SHOW VECTOR INDEXES YIELD state RETURN collect(state)") == ["ONLINE"]
            assert one("MATCH ()-[p:PREDICTED_HAS_SYMPTOM]->() RETURN count(p)") == 120
            assert (
                one(
                    "MATCH (a)-[p:PREDICTED_HAS_SYMPTOM]->(b) WITH a, b, count(p) AS c WHERE c > 1 RETURN count(*)"
                )
                == 0
            )
            assert one("MATCH (n) RETURN count(n)") == expected["nodes"] + 1 + kg.num_relations
            assert (
                one("MATCH ()-[r]->() RETURN count(r)") == expected["relationships"] + kg.num_relations + 120
            )
    finally:
        server.stop()


def test_command_line_train_from_neo4j_push_and_pull(neo4j_driver, neo4j_server, tmp_path, capsys) -> None:
    """``kgemb train bolt://…`` reads the graph from Neo4j; ``kgemb neo4j push`` and ``pull`` round-trip."""
    import json

    from kgemb.graph import KnowledgeGraph

    db = neo4j_server.database
    create_graph(neo4j_driver, db, diseases=10, symptoms=15, drugs=3)
    out = tmp_path / "model"
    train = [
        "train",
        neo4j_server.uri,
        "--out",
        str(out),
        "--mode",
        "structure",
        "--dim",
        "8",
        "--epochs",
        "1",
    ]
    assert main([*train, "--quiet"]) == 0
    database = ["--database", db] if db else []
    capsys.readouterr()
    assert main(["neo4j", "push", str(out), "--uri", neo4j_server.uri, "--quiet", "--json", *database]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nodes"] == 28 and report["missing"] == 0 and report["index"] == "kgemb_embedding"
    # the push options of the Python API, on the command line
    flags = ["--name", "k2", "--vector-form", "cypher", "--no-vector-index", "--workers", "1",
             "--hierarchy", "HAS_SYMPTOM", "--evidence-weight", "0.25"]  # fmt: skip
    assert (
        main(["neo4j", "push", str(out), "--uri", neo4j_server.uri, "--quiet", "--json", *database, *flags])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["nodes"] == 28 and report["index"] is None
    with neo4j_driver.session(database=db) as session:
        weight = session.run("MATCH (m:KgembModel {name: 'k2'}) RETURN m.evidence_weight AS w").single()["w"]
        rows = session.run(
            "MATCH (r:KgembRelation {model: 'k2'}) RETURN r.key AS key, r.hierarchy AS h"
        ).data()
        indexes = session.run("SHOW INDEXES YIELD name RETURN collect(name) AS names").single()["names"]
    assert weight == 0.25 and "k2_embedding" not in indexes and "kgemb_embedding" in indexes
    assert {r["key"]: r["h"] for r in rows}["HAS_SYMPTOM"] is True
    assert main(["neo4j", "push", str(out), "--uri", neo4j_server.uri, "--workers", "0"]) == 2
    assert "--workers must be a positive number" in capsys.readouterr().err
    pulled = [
        "neo4j",
        "pull",
        "--uri",
        neo4j_server.uri,
        "--key",
        "id",
        "--label",
        "Disease",
        "--label",
        "Symptom",
    ]
    assert (
        main([*pulled, "--text", "name_zh=label@zh", "--out", str(tmp_path / "kg"), "--quiet", *database])
        == 0
    )
    kg = KnowledgeGraph.load(tmp_path / "kg")
    assert kg.num_entities == 25 and kg.relations == ["HAS_SYMPTOM"]
    assert kg.entities[kg.entity_id("s1")].labels == {"zh": ["症状 1"]}
    assert main(["neo4j", "push", str(out), "--uri", "bolt://127.0.0.1:1", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("kgemb: error: cannot reach Neo4j at bolt://127.0.0.1:1")
