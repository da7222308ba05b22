"""Neo4j beyond one process: ``neo4j://`` routing URIs (reads to any member, writes to the leader) for pull and
push against the single dev server, and ``push --shard I/N`` run side by side giving what one push gives."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
from kgemb.connectors import neo4j as kn

import kgemb
from kgemb.cli import main

from .test_neo4j_connector import create_graph, snapshot

pytestmark = pytest.mark.neo4j


def routing(uri: str) -> str:
    """The server's Bolt URI with the routing scheme: ``bolt://h:p`` -> ``neo4j://h:p``."""
    parts = urlsplit(uri)
    scheme = {"bolt": "neo4j", "bolt+s": "neo4j+s", "bolt+ssc": "neo4j+ssc"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, *parts[1:]))


@pytest.fixture(scope="module")
def medical(neo4j_server):
    from neo4j import GraphDatabase

    with GraphDatabase.driver(neo4j_server.uri, auth=neo4j_server.auth) as driver:
        driver.execute_query("MATCH (n) DETACH DELETE n", database_=neo4j_server.database)
        create_graph(driver, neo4j_server.database, diseases=30, symptoms=40, drugs=10)
        kg = kn.pull(driver, key="id", database=neo4j_server.database, progress=False)
    model = kgemb.train(kg, mode="structure", interaction="rotate", dim=16, epochs=3, show_progress=False)
    return kg, model


def _creds(monkeypatch, neo4j_server) -> None:
    if neo4j_server.auth:
        monkeypatch.setenv("NEO4J_USERNAME", neo4j_server.auth[0])
        monkeypatch.setenv("NEO4J_PASSWORD", neo4j_server.auth[1])


def test_pull_and_push_through_a_routing_uri(neo4j_driver, neo4j_server, medical, monkeypatch) -> None:
    db = neo4j_server.database
    kg, model = medical
    create_graph(neo4j_driver, db, diseases=30, symptoms=40, drugs=10)
    _creds(monkeypatch, neo4j_server)
    uri = routing(neo4j_server.uri)
    assert uri.startswith("neo4j")
    pulled = kn.pull(uri, key="id", database=db, progress=False)
    assert pulled.num_entities == kg.num_entities and len(pulled.all_triples()) == len(kg.all_triples())
    report = kn.push(model, uri, database=db, progress=False)
    assert report.nodes == kg.num_entities and report.missing == 0
    node = neo4j_driver.execute_query("MATCH (m:KgembModel) RETURN m.complete AS c", database_=db).records
    assert node[0]["c"] is True


@pytest.mark.parametrize("shards", [1, 3])
def test_sharded_pushes_side_by_side_equal_one_push(neo4j_driver, neo4j_server, medical, shards) -> None:
    db = neo4j_server.database
    kg, model = medical
    create_graph(neo4j_driver, db, diseases=30, symptoms=40, drugs=10)
    kn.push(model, neo4j_driver, database=db, progress=False)
    one = snapshot(neo4j_driver, db)
    vectors_one = _vectors(neo4j_driver, db)
    meta_one = _meta(neo4j_driver, db)
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n", database_=db)
    for name in neo4j_driver.execute_query("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name",
                                           database_=db).records:  # fmt: skip
        neo4j_driver.execute_query(f"DROP INDEX `{name['name']}`", database_=db)
    create_graph(neo4j_driver, db, diseases=30, symptoms=40, drugs=10)
    reports, errors = [], []

    def run(i: int) -> None:
        try:
            reports.append(kn.push(model, neo4j_driver, database=db, progress=False, shard=(i, shards)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(shards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(r.nodes for r in reports) == kg.num_entities
    _assert_same_but_shard_marks(snapshot(neo4j_driver, db), one)
    assert _vectors(neo4j_driver, db) == vectors_one
    meta = _meta(neo4j_driver, db)
    assert meta.pop("complete") is True and meta_one.pop("complete") is True
    assert sorted(meta.pop("shards_done")) == list(range(shards)) and meta.pop("shards") == shards
    meta.pop("updated_at"), meta_one.pop("updated_at")
    assert meta == meta_one


def test_graph_from_elsewhere_in_shards_and_the_command_line(
    neo4j_driver, neo4j_server, tmp_path, monkeypatch
) -> None:
    from kgemb.graph import GraphBuilder

    db = neo4j_server.database
    builder = GraphBuilder()
    for h, t in [("a", "b"), ("b", "c"), ("c", "a"), ("a", "d"), ("e", "a")]:
        builder.add_triple(f"http://ex.org/{h}", "http://ex.org/next", f"http://ex.org/{t}")
        builder.add_label(f"http://ex.org/{h}", f"node {h}", "en")
    builder.add_label("http://ex.org/d", "node d", "en")
    model = kgemb.train(builder.build(), mode="structure", interaction="transe", dim=8, epochs=2,
                        show_progress=False)  # fmt: skip
    model.save(tmp_path / "m")
    kn.push(model, neo4j_driver, database=db, progress=False)
    one = snapshot(neo4j_driver, db)
    names = _names(neo4j_driver, db)
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n", database_=db)
    _creds(monkeypatch, neo4j_server)
    for i in (1, 0):  # shard 1 first: its links reach nodes shard 0 has not written yet
        args = ["neo4j", "push", str(tmp_path / "m"), "--uri", routing(neo4j_server.uri), "--shard", f"{i}/2",
                "--quiet"] + (["--database", db] if db else [])  # fmt: skip
        assert main(args) == 0
        complete = neo4j_driver.execute_query("MATCH (m:KgembModel) RETURN m.complete AS c", database_=db)
        assert complete.records[0]["c"] is (i == 0)
    _assert_same_but_shard_marks(snapshot(neo4j_driver, db), one)
    assert _names(neo4j_driver, db) == names
    assert main(["neo4j", "push", str(tmp_path / "m"), "--uri", neo4j_server.uri, "--shard", "2/2"]) == 2


def _assert_same_but_shard_marks(sharded: dict, one: dict) -> None:
    """The database after sharded pushes is the one after a single push, plus the model node's shard marks."""
    assert sharded.pop("properties") == one.pop("properties") + 2
    assert set(sharded.pop("keys")) == set(one.pop("keys")) | {"shards", "shards_done"}
    assert len(sharded.pop("constraints")) == len(one.pop("constraints")) + 1  # one model node per name
    extra = set(sharded.pop("indexes")) - set(indexes := one.pop("indexes"))
    assert len(extra) == 1 and next(iter(extra)).startswith("constraint") and len(indexes) > 0
    assert sharded == one


def _vectors(driver, db) -> dict:
    rows = driver.execute_query(
        "MATCH (n:KgembEntity) RETURN n.id AS id, n.embedding AS v", database_=db
    ).records
    return {r["id"]: np.asarray(r["v"]).tobytes() for r in rows}


def _names(driver, db) -> list:
    rows = driver.execute_query(
        "MATCH (n:KgembEntity) RETURN n.key AS k, n.name AS n ORDER BY k", database_=db
    )
    return [(r["k"], r["n"]) for r in rows.records]


def _meta(driver, db) -> dict:
    return dict(driver.execute_query("MATCH (m:KgembModel) RETURN m {.*} AS m", database_=db).records[0]["m"])
