"""The Neo4j connector under hostile or careless use: pulls only read, a push checks everything before its first
write, credentials in the URI are used (or a contradiction refused), and a silent server is given up on in time."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from kgemb.connectors import neo4j as kn
from kgemb.connectors._neo4j_common import uri_credentials

import kgemb
from kgemb.errors import ConfigError, InputError

from .test_neo4j_connector import create_graph, snapshot

pytestmark = pytest.mark.neo4j


def test_a_pull_query_that_writes_is_refused_and_changes_nothing(neo4j_driver, neo4j_server) -> None:
    db = neo4j_server.database
    create_graph(neo4j_driver, db, diseases=5, symptoms=5, drugs=2)
    before = snapshot(neo4j_driver, db)
    for query in (
        "MATCH (n) DETACH DELETE n RETURN n AS head, n AS relation, n AS tail",
        "MATCH (d:Disease)-[r]->(s) SET d.hacked = true RETURN d AS head, r AS relation, s AS tail",
        "CREATE (a:X)-[r:R]->(b:X) RETURN a AS head, r AS relation, b AS tail",
    ):
        with pytest.raises(InputError, match="pulls only read: nothing was changed"):
            kn.pull(neo4j_driver, query=query, database=db, progress=False)
    assert snapshot(neo4j_driver, db) == before
    # a read query still works
    kg = kn.pull(
        neo4j_driver,
        query="MATCH (d:Disease)-[r:HAS_SYMPTOM]->(s) RETURN d AS head, r AS relation, s AS tail",
        database=db,
        progress=False,
    )
    assert kg.num_relations == 1 and len(kg.all_triples()) == 20


def test_a_push_that_cannot_finish_writes_nothing(neo4j_driver, neo4j_server) -> None:
    db = neo4j_server.database
    neo4j_driver.execute_query(
        "CREATE (:`Body-Part` {id: 'a', name: 'arm'})-[:NEXT]->(:`Body-Part` {id: 'b', name: 'hand'}), "
        "(:`Body-Part` {id: 'c', name: 'leg'})-[:NEXT]->(:`Body-Part` {id: 'b2', name: 'foot'})",
        database_=db,
    )
    kg = kn.pull(neo4j_driver, key="id", database=db, progress=False)
    model = kgemb.train(kg, mode="structure", interaction="transe", dim=8, epochs=1, show_progress=False)
    before = snapshot(neo4j_driver, db)
    with pytest.raises(InputError, match="Body-Part"):
        kn.push(model, neo4j_driver, database=db, progress=False)
    assert snapshot(neo4j_driver, db) == before, "a stray model node, label or index was written"


def test_credentials_in_the_uri_are_used_or_refused_clearly(neo4j_server, monkeypatch) -> None:
    assert uri_credentials("bolt://alice:p%40ss@host:7687", None, None) == ("alice", "p@ss")
    assert uri_credentials("bolt://host:7687", "bob", "pw") == ("bob", "pw")
    assert uri_credentials("bolt://alice:pw@host", "alice", "pw") == ("alice", "pw")
    with pytest.raises(ConfigError, match="holds credentials and others were given") as err:
        uri_credentials("bolt://alice:secret@host", "bob", "other")
    assert "secret" not in str(err.value)
    with pytest.raises(ConfigError, match="no password"):
        uri_credentials("bolt://alice@host", None, None)
    # against the real server: the URI's credentials reach the driver, and never a message
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    host = neo4j_server.uri.split("://", 1)[1]
    with kn.connect(f"bolt://neo4j:secret-pw@{host}") as driver:
        assert driver.execute_query("RETURN 1").records[0][0] == 1


def test_a_server_that_never_answers_is_given_up_on(monkeypatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        monkeypatch.setenv("NEO4J_CONNECTION_TIMEOUT", "2")
        began = time.monotonic()
        with pytest.raises(ConfigError, match=r"cannot reach Neo4j at bolt://127\.0\.0\.1:\d+ within 2 s"):
            kn.connect(f"bolt://127.0.0.1:{port}")
        assert time.monotonic() - began < 30  # the driver's own defaults waited 62 s
        monkeypatch.setenv("NEO4J_CONNECTION_TIMEOUT", "soon")
        with pytest.raises(ConfigError, match="NEO4J_CONNECTION_TIMEOUT"):
            kn.connect(f"bolt://127.0.0.1:{port}")
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
