"""Session-wide fixtures: the real Neo4j server and the shared benchmark data.

Neo4j: the dev server under connectors/neo4j/ is built and started once per session, unless KGEMB_NEO4J_URI
(with NEO4J_USERNAME / NEO4J_PASSWORD) points at a running Neo4j 5, which is then used instead. Each test that
asks for ``neo4j_driver`` starts from an empty database.
"""

from __future__ import annotations

import os

# MKL's results depend on the memory alignment of the operands unless this is set before it starts: a model and
# the same model reloaded from disk then differ in the last bit of a score (seen as 5e-7 in test_artifact)
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kgemb.connectors.neo4j_dev import DevServer

from kgemb.errors import KgembError

REPO = Path(__file__).resolve().parents[1]
NEO4J_REPORT: list[str] = []


@dataclass
class Neo4jTarget:
    uri: str
    auth: tuple[str, str] | None
    database: str | None
    server: DevServer | None  # None when the tests use an external server


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (CI lays it there too); KGEMB_SHARED_DATA overrides."""
    path = Path(os.environ.get("KGEMB_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "wn18rr" / "train.txt").exists():
        pytest.fail(
            f"the shared benchmark data is not at {path}: put ../shared beside the checkout", pytrace=False
        )
    return path


@pytest.fixture(scope="session", autouse=True)
def kgemb_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Embedding caches written during the tests go to a temporary folder, never the user's ~/.cache/kgemb."""
    path = tmp_path_factory.mktemp("kgemb-cache")
    before = os.environ.get("KGEMB_CACHE_DIR")
    os.environ["KGEMB_CACHE_DIR"] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("KGEMB_CACHE_DIR", None)
        else:
            os.environ["KGEMB_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jTarget]:
    uri = os.environ.get("KGEMB_NEO4J_URI")
    if uri:
        NEO4J_REPORT.append(f"Neo4j tests ran against KGEMB_NEO4J_URI={uri}")
        user = os.environ.get("NEO4J_USERNAME", "neo4j")
        password = os.environ.get("NEO4J_PASSWORD")
        yield Neo4jTarget(uri, (user, password) if password else None, os.environ.get("NEO4J_DATABASE"), None)
        return
    server = DevServer(data_dir=tmp_path_factory.mktemp("neo4j-data"))
    try:
        server.start()
    except KgembError as exc:
        pytest.fail(str(exc), pytrace=False)
    NEO4J_REPORT.append(
        f"Neo4j dev server (connectors/neo4j) ready on {server.uri} in {server.startup_seconds:.1f} s"
    )
    try:
        yield Neo4jTarget(server.uri, None, None, server)
    finally:
        server.stop()


def clear_database(driver: object, database: str | None = None) -> None:
    """Delete every node, index and constraint, so a test starts from an empty database."""
    with driver.session(database=database) as session:  # type: ignore[attr-defined]
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()
        for kind, show in (
            ("CONSTRAINT", "SHOW CONSTRAINTS YIELD name RETURN name"),
            ("INDEX", "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"),
        ):
            for name in session.run(show).value("name"):
                session.run(f"DROP {kind} `{name.replace('`', '``')}` IF EXISTS").consume()


@pytest.fixture
def neo4j_driver(neo4j_server: Neo4jTarget) -> Iterator[object]:
    """A driver connected to the test server, with an empty database."""
    from neo4j import GraphDatabase

    driver = GraphDatabase.driver(neo4j_server.uri, auth=neo4j_server.auth)
    try:
        clear_database(driver, neo4j_server.database)
        yield driver
    finally:
        driver.close()


@pytest.fixture(scope="session")
def fold_similarity() -> Callable[..., tuple[Any, Any]]:
    """A function ``(trained, u, v=None) -> (with, without)``: a trained text or late model (no rules) with its
    similarity channel's weights set to ``u`` per oriented relation (a late model's text weights to ``v``), folded
    as training folds them, and the same model without the channel."""

    def fold(trained: Any, u: np.ndarray, v: np.ndarray | None = None) -> tuple[Any, Any]:
        from kgemb.model import TrainedModel, similarity_map, unfold_text_channel
        from kgemb.training import TrainingConfig, _fold_text_channel, model_for

        kg, rep, features = trained.kg, trained.representation, trained.features
        cfg = TrainingConfig.from_saved(trained.config["training"])
        channel = trained.config.get("text_channel") or {}
        state = trained.pykeen_model.state_dict()
        if channel.get("used"):  # back to the training layout
            state = unfold_text_channel(state, channel["weights"] if rep.late else None)
        plain = model_for(kg, cfg, features, seen=rep.seen)
        plain.load_state_dict(state)
        mapping = similarity_map(rep.text_mean, cfg.dim)

        def wrap(folded: Any) -> Any:
            model, info = folded
            return TrainedModel(
                kg, model, {**trained.config, "text_channel": info}, features, trained.encoder
            )

        if rep.late:
            without = wrap(_fold_text_channel(kg, plain, cfg, features, v, {}))
            return wrap(_fold_text_channel(kg, plain, cfg, features, v, {}, mapping, u)), without
        without = TrainedModel(kg, plain, {**trained.config, "text_channel": None}, features, trained.encoder)
        return wrap(_fold_text_channel(kg, plain, cfg, features, u, {}, mapping)), without

    return fold


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which real Neo4j server the Neo4j tests used, and how many ran."""
    if not NEO4J_REPORT:
        return
    ran = sum(
        1
        for outcome in ("passed", "failed", "error")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", "call") == "call" and "neo4j" in getattr(report, "keywords", {})
    )
    terminalreporter.write_sep("-", "neo4j")
    for line in NEO4J_REPORT:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"{ran} tests marked neo4j ran against it")
