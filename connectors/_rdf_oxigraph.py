"""Fast RDF reading with pyoxigraph (Rust parsers) for Turtle, N-Triples, N-Quads, TriG and RDF/XML.

The statements go to the same :class:`connectors._rdf_collect.Collector` as rdflib's, in parse order, so the
knowledge graph is the same. Safety, as for the rdflib path:

- RDF/XML is first read by the guarded expat reader of :mod:`connectors._rdf_safe` (refusing external, parameter
  and nested entities with ``file:line``), because oxigraph's own XML reader expands nested entities.
- oxigraph's parsers read only the bytes they are given (no IRI is ever dereferenced, owl:imports included); the
  parse also runs inside :func:`~connectors._rdf_safe.no_network` as for every parser.
- ``lenient=True``: IRIs are not validated beyond the syntax (as kgemb's N-Triples streamer and rdflib, which
  accept the same files); this halves the parse time.
- Syntax errors name ``file:line:column``; N-Triples/N-Quads errors say what was expected there, as the line
  streamer does.
"""

from __future__ import annotations

import gzip
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from kgemb.errors import InputError

from . import _rdf_lines
from ._rdf_collect import Collector
from ._rdf_safe import check_xml, no_network

#: kgemb's format name -> pyoxigraph's RdfFormat attribute
FORMATS = {
    "turtle": "TURTLE",
    "nt": "N_TRIPLES",
    "nquads": "N_QUADS",
    "trig": "TRIG",
    "xml": "RDF_XML",
}


def read(path: Path, fmt: str, collector: Collector, gzipped: bool) -> int:
    """Feed the statements of one file to ``collector``; returns how many were read."""
    import pyoxigraph as ox

    rdf_format = getattr(ox.RdfFormat, FORMATS[fmt])
    base = path.resolve().as_uri()
    opened = None
    try:
        if fmt == "xml":
            data = gzip.decompress(path.read_bytes()) if gzipped else path.read_bytes()
            check_xml(data, str(path))
            source: dict[str, Any] = {"input": data}
        elif gzipped:
            opened = gzip.open(path, "rb")  # noqa: SIM115 (closed below)
            source = {"input": opened}
        else:
            source = {"path": str(path)}
        with no_network():
            quads = ox.parse(**source, format=rdf_format, base_iri=base, lenient=True)
            return _feed(quads, collector)
    except SyntaxError as exc:
        raise _syntax_error(exc, path, fmt) from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot be read ({exc}); check the file (and its gzip data)") from None
    finally:
        if opened is not None:
            opened.close()


def _feed(quads: Any, collector: Collector) -> int:
    """Every statement into ``collector`` in parse order (graph names dropped); returns the count.

    Plain relation statements (most of a graph) skip the collector: their entities are numbered in place (so ids
    keep the first-seen order) and their id triples collected here, then added in one call, in the order read.
    """
    from pyoxigraph import BlankNode, Literal, NamedNode

    builder = collector.builder
    bnode = collector.bnode
    add_entity = builder.add_entity
    is_plain = collector.is_plain_relation
    relation_of: dict[str, int] = {}  # predicate -> relation id, -1 when not a plain relation
    rows = array("q")
    append = rows.append
    # collector.resource adds triples of its own only with type_as_relation: then those already read go first
    flush_first = collector.mapping.type_as_relation
    count = 0

    def flush() -> None:
        builder.add_triple_id_rows(np.frombuffer(rows, dtype=np.int64).reshape(-1, 3))
        collector.counts["relation"] += len(rows) // 3
        del rows[:]

    for count, quad in enumerate(quads, 1):
        s = quad.subject
        skey = s.value if s.__class__ is NamedNode else bnode(s.value)
        p = quad.predicate.value
        o = quad.object
        kind = o.__class__
        if kind is NamedNode or kind is BlankNode:
            okey = o.value if kind is NamedNode else bnode(o.value)
            r = relation_of.get(p)
            if r is None:
                r = relation_of[p] = builder.add_relation(p) if is_plain(p) else -1
            if r >= 0:
                append(add_entity(skey))
                append(r)
                append(add_entity(okey))
            else:
                if flush_first and rows:
                    flush()
                collector.resource(skey, p, okey)
        elif kind is Literal:
            collector.literal(skey, p, o.value, o.language)
        else:
            raise InputError(f"RDF 1.2 triple terms (<<( ... )>>) are not supported (statement {count})")
    if rows:
        flush()
    return count


def _syntax_error(exc: SyntaxError, path: Path, fmt: str) -> InputError:
    """The parser's error as ``file:line:column: ...`` (a bad N-Triples line described as the streamer does)."""
    message = str(exc.msg) if exc.msg else str(exc)
    line, column = exc.lineno, exc.offset
    if "UTF-8" in message:
        where = f"{line}:{column}:" if line else ""
        return InputError(f"{path}:{where} not UTF-8 ({message}); re-save the file as UTF-8")
    if line is None:
        return InputError(f"{path}: malformed {fmt}: {message}; fix the file")
    quads = fmt == "nquads"
    # the statement at the reported line, or the one before it when the parser stopped at the next line's start
    for number in (line, line - 1) if fmt in ("nt", "nquads") and column in (0, 1) else (line,):
        text = _line_of(path, number) if fmt in ("nt", "nquads") else None
        if (
            text
            and text.strip()
            and (_rdf_lines.NQUADS if quads else _rdf_lines.NTRIPLES).match(text) is None
        ):
            column, expected = _rdf_lines.describe_error(text.rstrip("\r\n"), quads)
            return InputError(
                f"{path}:{number}:{column}: malformed {'N-Quads' if quads else 'N-Triples'} statement, "
                f"expected {expected}: {text.strip()[:100]!r}; fix or remove that line"
            )
    return InputError(f"{path}:{line}:{column}: malformed {fmt}: {message}; fix the syntax there")


def _line_of(path: Path, number: int) -> str | None:
    """Line ``number`` (1-based) of a text file, gzip looked through; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
            for i, raw in enumerate(f, 1):
                if i == number:
                    return raw.decode("utf-8", "replace")
    except (OSError, EOFError):
        return None
    return None
