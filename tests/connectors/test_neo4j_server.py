"""The Neo4j dev server: a real Neo4j 5 over Bolt, its vector index, restarts on the same data, clear failures."""

from __future__ import annotations

import os

import pytest
from kgemb.connectors import neo4j_dev
from kgemb.connectors.neo4j_dev import DevServer

from kgemb.errors import ConfigError, DependencyError

pytestmark = pytest.mark.neo4j
external = pytest.mark.skipif(
    bool(os.environ.get("KGEMB_NEO4J_URI")),
    reason="KGEMB_NEO4J_URI is set: the tests use that server, not ours",
)


def test_vector_index_nearest_neighbour(neo4j_driver, neo4j_server) -> None:
    db = neo4j_server.database
    neo4j_driver.execute_query(
        "CREATE VECTOR INDEX smoke_vec IF NOT EXISTS FOR (n:Smoke) ON n.vec "
        "OPTIONS {indexConfig: {`vector.dimensions`: 3, `vector.similarity_function`: 'cosine'}}",
        database_=db,
    )
    vectors = {"x": [1.0, 0.0, 0.0], "y": [0.0, 1.0, 0.0], "z": [0.0, 0.0, 1.0], "xy": [0.7, 0.7, 0.0]}
    neo4j_driver.execute_query(
        "UNWIND $rows AS row CREATE (n:Smoke {name: row.name}) "
        "WITH n, row CALL db.create.setNodeVectorProperty(n, 'vec', row.vec)",
        rows=[{"name": k, "vec": v} for k, v in vectors.items()],
        database_=db,
    )
    neo4j_driver.execute_query("CALL db.awaitIndexes(60)", database_=db)
    records, _, _ = neo4j_driver.execute_query(
        "CALL db.index.vector.queryNodes('smoke_vec', 2, $q) YIELD node, score RETURN node.name AS name, score",
        q=[0.1, 0.95, 0.0],
        database_=db,
    )
    assert [r["name"] for r in records] == ["y", "xy"]
    assert records[0]["score"] > records[1]["score"]
    version, _, _ = neo4j_driver.execute_query(
        "CALL dbms.components() YIELD versions RETURN versions[0] AS v"
    )
    print(f"vector smoke test ran against Neo4j {version[0]['v']} at {neo4j_server.uri}")
    assert version[0]["v"].startswith("5.")


def test_each_test_starts_empty(neo4j_driver) -> None:
    count = neo4j_driver.execute_query("MATCH (n) RETURN count(n) AS c").records[0]["c"]
    assert count == 0
    neo4j_driver.execute_query("CREATE (:Leftover)")


def test_each_test_starts_empty_again(neo4j_driver) -> None:
    assert neo4j_driver.execute_query("MATCH (n) RETURN count(n) AS c").records[0]["c"] == 0


@external
def test_restart_on_same_data_with_password(tmp_path) -> None:
    from neo4j import GraphDatabase
    from neo4j.exceptions import AuthError

    server = DevServer(data_dir=tmp_path / "data", password="kgemb-secret")
    with server:
        with GraphDatabase.driver(server.uri, auth=server.auth) as driver:
            driver.execute_query("CREATE (:Kept {n: 7})")
        with pytest.raises(AuthError), GraphDatabase.driver(server.uri, auth=("neo4j", "wrong-pw")) as bad:
            bad.execute_query("RETURN 1")
    with server, GraphDatabase.driver(server.uri, auth=server.auth) as driver:
        assert driver.execute_query("MATCH (k:Kept) RETURN k.n AS n").records[0]["n"] == 7


@external
def test_port_taken_is_one_clear_sentence(neo4j_server, capsys) -> None:
    port = int(neo4j_server.uri.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match=f"port {port} .* already in use"):
        DevServer(port).start()
    assert neo4j_dev.main(["--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already in use" in err[0] and "NEO4J_PORT" in err[0]


def test_missing_java_names_the_fix(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(DependencyError, match=r"Java is not installed.*openjdk-17"):
        neo4j_dev.java_executable()


def test_missing_maven_names_the_fix(monkeypatch, tmp_path) -> None:
    project = tmp_path / "neo4j"
    (project / "src").mkdir(parents=True)
    (project / "pom.xml").write_text("<project/>")
    java = neo4j_dev.java_executable()
    monkeypatch.setenv("JAVA_HOME", os.path.dirname(os.path.dirname(os.path.realpath(java))))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DependencyError, match=r"Maven is not installed.*apt-get install maven"):
        neo4j_dev.ensure_built(project)
