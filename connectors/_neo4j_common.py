"""Shared pieces of the Neo4j connector: connecting, safe names in Cypher, bounded managed writes.

Names (labels, relationship types, property and index names) are the only things ever put into Cypher text: each
passes :func:`quote` (validated, then backtick-quoted). Every value goes as a query parameter.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from kgemb.errors import ConfigError, DependencyError, InputError

#: a name kgemb puts into Cypher: a letter or underscore, then letters, digits, underscores (any script), at most
#: 200 characters. Quotes, backticks, braces, slashes, spaces and the like are refused, so a hostile name can never
#: become Cypher, even before quoting.
_NAME = re.compile(r"[^\W\d]\w{0,199}")
ELEMENT_ID = "elementId"
ENTITY_LABEL = "KgembEntity"
MODEL_LABEL = "KgembModel"
RELATION_LABEL = "KgembRelation"
SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
#: seconds to wait for a server to connect and answer the Bolt handshake (``NEO4J_CONNECTION_TIMEOUT`` overrides)
DEFAULT_TIMEOUT = 15.0


class QuietRows(list):
    """A list of query rows whose ``repr`` is one short line.

    The driver formats every RUN message for its debug log with ``repr`` before deciding whether to log it; for a
    batch of vectors that costs more than sending it, and it would print vector values and keys into logs.
    """

    def __repr__(self) -> str:
        return f"<{len(self)} rows>"


def quote(name: str, what: str = "name") -> str:
    """``name`` validated and backtick-quoted for Cypher; :class:`InputError` naming ``what`` when unsafe."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(
            f"{what} {name!r} is not a safe Neo4j name: use letters, digits and underscores, starting with a "
            "letter or underscore (at most 200 characters)"
        )
    return "`" + name.replace("`", "``") + "`"


def label_expression(labels: Sequence[str], what: str = "label") -> str:
    """``:`A`|`B``` for use after a variable (``(n:`A`|`B`)``); empty for no labels."""
    if isinstance(labels, str):
        labels = [labels]
    return ":" + "|".join(quote(x, what) for x in labels) if labels else ""


def safe_uri(uri: str) -> str:
    """The URI without any user name or password in it, for messages and metadata."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return uri


def credentials(username: str | None = None, password: str | None = None) -> tuple[str, str] | None:
    """``(user, password)`` from the arguments, else ``NEO4J_USERNAME`` / ``NEO4J_PASSWORD``; None without a
    password (a server with authentication off)."""
    password = password if password is not None else os.environ.get("NEO4J_PASSWORD")
    if not password:
        return None
    user = username or os.environ.get("NEO4J_USERNAME") or "neo4j"
    return (user, password)


def default_database(database: str | None) -> str | None:
    """The database to use: the argument, else ``NEO4J_DATABASE``, else the server's default."""
    return database or os.environ.get("NEO4J_DATABASE") or None


def connection_timeout(timeout: float | None = None) -> float:
    """Seconds to wait for a connection: the argument, else ``NEO4J_CONNECTION_TIMEOUT``, else 15."""
    if timeout is None:
        text = os.environ.get("NEO4J_CONNECTION_TIMEOUT")
        if not text:
            return DEFAULT_TIMEOUT
        try:
            timeout = float(text)
        except ValueError:
            raise ConfigError(
                f"NEO4J_CONNECTION_TIMEOUT={text!r} is not a number of seconds; fix or unset it"
            ) from None
    if not timeout > 0:
        raise ConfigError(
            f"the Neo4j connection timeout must be a positive number of seconds, not {timeout!r}"
        )
    return float(timeout)


def uri_credentials(uri: str, username: str | None, password: str | None) -> tuple[str | None, str | None]:
    """User name and password from ``bolt://user:pw@host`` when the URI has them (URL-decoded); the arguments
    otherwise. A URI's credentials that contradict explicit ones are refused rather than silently dropped."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return username, password
    user = unquote(parts.username or "") or None
    secret = unquote(parts.password) if parts.password is not None else None
    if (username is not None and username != user) or (password is not None and password != secret):
        raise ConfigError(
            f"{safe_uri(uri)}: the URI holds credentials and others were given too; keep one of them "
            "(NEO4J_USERNAME / NEO4J_PASSWORD are the safer place: a URI shows in process lists)"
        )
    if secret is None:
        raise ConfigError(
            f"{safe_uri(uri)}: the URI names user {user!r} but no password; write bolt://USER:PASSWORD@HOST "
            "or set NEO4J_USERNAME and NEO4J_PASSWORD"
        )
    return user, secret


def connect(
    uri: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Any:
    """A connected ``neo4j.Driver`` for ``uri`` (``bolt://``, ``neo4j://``, ``neo4j+s://`` …), connectivity checked.

    Credentials come from the URI (``bolt://user:pw@host``), the arguments, or ``NEO4J_USERNAME`` /
    ``NEO4J_PASSWORD``, and never appear in messages. ``timeout`` (default ``NEO4J_CONNECTION_TIMEOUT``, else 15 s)
    bounds the wait for a server that accepts connections but does not answer.
    """
    try:
        import neo4j
    except ImportError as exc:  # pragma: no cover - neo4j is a dependency
        raise DependencyError("the neo4j driver is missing; install it: pip install neo4j") from exc

    scheme = urlsplit(uri).scheme
    if scheme not in SCHEMES:
        raise ConfigError(
            f"{safe_uri(uri)!r} is not a Neo4j URI: use one starting with {', '.join(s + '://' for s in SCHEMES)}"
        )
    username, password = uri_credentials(uri, username, password)
    auth = credentials(username, password)
    seconds = connection_timeout(timeout)
    config.setdefault("notifications_min_severity", "OFF")
    config.setdefault("connection_timeout", seconds)
    config.setdefault("connection_acquisition_timeout", seconds)
    driver = neo4j.GraphDatabase.driver(safe_uri(uri), auth=auth, **config)
    with translate_errors(uri, auth, seconds):
        try:
            driver.verify_connectivity()
        except BaseException:
            driver.close()
            raise
    return driver


@contextlib.contextmanager
def translate_errors(
    uri: str, auth: tuple[str, str] | None = None, timeout: float | None = None
) -> Iterator[None]:
    """Turn "cannot reach" and "wrong credentials" into one-line :class:`ConfigError` (never showing a password)."""
    from neo4j.exceptions import AuthError, ServiceUnavailable

    try:
        yield
    except AuthError as exc:
        who = f"user {auth[0]!r}" if auth else "no credentials"
        raise ConfigError(
            f"Neo4j at {safe_uri(uri)} refused {who}: set NEO4J_USERNAME and NEO4J_PASSWORD "
            "(or pass username/password)"
        ) from exc
    except ServiceUnavailable as exc:
        waited = f" within {timeout:g} s (NEO4J_CONNECTION_TIMEOUT / --timeout)" if timeout else ""
        raise ConfigError(
            f"cannot reach Neo4j at {safe_uri(uri)}{waited}: start it (`make neo4j`, Docker neo4j:5, Aura) or "
            "fix the URI"
        ) from exc


@contextlib.contextmanager
def open_driver(
    uri_or_driver: Any, username: str | None = None, password: str | None = None
) -> Iterator[tuple[Any, str]]:
    """``(driver, uri)`` for a URI (connected here, closed afterwards) or a driver the caller owns."""
    if isinstance(uri_or_driver, str):
        driver = connect(uri_or_driver, username=username, password=password)
        try:
            yield driver, safe_uri(uri_or_driver)
        finally:
            driver.close()
        return
    if not hasattr(uri_or_driver, "session"):
        raise InputError(
            f"expected a Neo4j URI or a neo4j.Driver, got {type(uri_or_driver).__name__}; pass e.g. "
            "'bolt://localhost:7687'"
        )
    address = getattr(uri_or_driver, "_address", None)  # the driver keeps no URI; its address is enough
    yield uri_or_driver, f"{address}" if address else "the given neo4j driver"


def write(driver: Any, database: str | None, query: str, **params: Any) -> Any:
    """Run one write query in a managed transaction (retried by the driver on transient errors); its summary."""

    params = _quiet(params)

    def work(tx: Any) -> Any:
        return tx.run(query, **params).consume()

    with driver.session(database=database, notifications_min_severity="OFF") as session:
        return session.execute_write(work)


#: what a server answers when another client created the same index or constraint a moment before
_SCHEMA_RACE = ("EquivalentSchemaRuleAlreadyExists", "IndexAlreadyExists", "ConstraintAlreadyExists")


def write_schema(driver: Any, database: str | None, query: str, **params: Any) -> None:
    """Run a ``CREATE INDEX|CONSTRAINT ... IF NOT EXISTS``; parallel pushes (``--shard``) race to create the same
    one, and the loser's error that an equivalent rule already exists means the rule is there."""
    from neo4j.exceptions import ClientError

    try:
        write(driver, database, query, **params)
    except ClientError as exc:
        if not any(name in (exc.code or "") for name in _SCHEMA_RACE):
            raise


def read(driver: Any, database: str | None, query: str, **params: Any) -> list[Any]:
    """Run one read query in a managed transaction; its records."""

    params = _quiet(params)

    def work(tx: Any) -> list[Any]:
        return list(tx.run(query, **params))

    with driver.session(database=database, notifications_min_severity="OFF") as session:
        return session.execute_read(work)


def has_procedure(driver: Any, database: str | None, name: str) -> bool:
    """Whether the server offers the procedure ``name`` (the kgemb plugin is installed)."""
    rows = read(
        driver, database, "SHOW PROCEDURES YIELD name WHERE name = $name RETURN count(*) AS n", name=name
    )
    return bool(rows and rows[0]["n"])


def _quiet(params: dict[str, Any]) -> dict[str, Any]:
    return {k: QuietRows(v) if isinstance(v, list) else v for k, v in params.items()}


def write_batches(
    driver: Any,
    database: str | None,
    query: str,
    batches: Iterable[list[Any]],
    *,
    on_batch: Callable[[int, list[Any]], None] | None = None,
    workers: int = 1,
    **params: Any,
) -> int:
    """Run ``query`` once per batch with the batch as ``$rows``, each in its own managed (retried) transaction, so
    every transaction stays bounded; ``on_batch(rows, records)`` after each commit. The number of rows written.

    With ``workers > 1`` that many sessions write at once (for order-independent, idempotent writes): the client
    encodes the next batch while the server stores the previous one. The first error stops the rest.
    """

    def work(tx: Any, rows: QuietRows) -> list[Any]:
        return list(tx.run(query, rows=rows, **params))

    def one(rows: list[Any]) -> tuple[int, list[Any]]:
        with driver.session(database=database, notifications_min_severity="OFF") as session:
            return len(rows), session.execute_write(work, QuietRows(rows))

    done = 0
    if workers <= 1:
        for rows in batches:
            n, records = one(rows)
            done += n
            if on_batch is not None:
                on_batch(n, records)
        return done
    with ThreadPoolExecutor(workers) as pool:
        running: set[Future[tuple[int, list[Any]]]] = set()
        iterator = iter(batches)
        while True:
            for rows in itertools.islice(iterator, workers - len(running)):
                running.add(pool.submit(one, rows))
            if not running:
                return done
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                n, records = future.result()  # re-raises the first failure; the pool finishes what is running
                done += n
                if on_batch is not None:
                    on_batch(n, records)


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive slices of ``range(n)``, ``size`` long (the last may be shorter)."""
    if size < 1:
        raise ConfigError(f"batch_size={size} must be at least 1")
    for start in range(0, n, size):
        yield start, min(start + size, n)
