"""RDF files to a :class:`kgemb.KnowledgeGraph`, and predicted links written back into RDF (``enrich``).

``load`` reads Turtle, N-Triples, N-Quads, TriG, RDF/XML, JSON-LD and Notation3, single files, several files or a
folder, optionally gzip-compressed. Turtle, N-Triples, N-Quads, TriG and RDF/XML are parsed by pyoxigraph's Rust
parsers (:mod:`connectors._rdf_oxigraph`); JSON-LD and Notation3, or every format with ``parser="rdflib"``, by the
pure-Python readers: N-Triples and N-Quads streamed line by line (:mod:`connectors._rdf_lines`), the rest by rdflib.
Every parser runs with network access refused and XML entities guarded (see :mod:`connectors._rdf_safe`). What
becomes a relation, a text, a type or an attribute follows the defaults in :mod:`connectors._rdf_mapping`,
overridable by a mapping file (YAML or TOML).
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kgemb.errors import InputError
from kgemb.graph import KnowledgeGraph, gc_paused

from . import _rdf_lines, _rdf_oxigraph
from ._rdf_collect import Collector
from ._rdf_mapping import RdfMapping, load_mapping

#: file suffix -> rdflib format name ("nt" and "nquads" are streamed by kgemb itself)
FORMATS: dict[str, str] = {
    ".ttl": "turtle",
    ".turtle": "turtle",
    ".nt": "nt",
    ".ntriples": "nt",
    ".nq": "nquads",
    ".nquads": "nquads",
    ".trig": "trig",
    ".rdf": "xml",
    ".owl": "xml",
    ".xml": "xml",
    ".jsonld": "json-ld",
    ".json": "json-ld",
    ".n3": "n3",
}
_STREAMED = {"nt", "nquads"}
PARSERS = ("auto", "oxigraph", "rdflib")

__all__ = ["FORMATS", "PARSERS", "EnrichResult", "RdfMapping", "enrich", "load", "load_mapping"]


def load(
    path_or_paths: str | os.PathLike | Iterable[str | os.PathLike],
    mapping: str | os.PathLike | dict | RdfMapping | None = None,
    *,
    parser: str = "auto",
) -> KnowledgeGraph:
    """Read RDF into a knowledge graph.

    ``path_or_paths``: a file, a folder (every RDF file below it, in sorted order) or a list of them; ``.gz``
    files are decompressed; or an ``rdflib.Graph`` / ``Dataset`` already in memory. ``mapping``: a YAML/TOML mapping file, a dict of the same settings, or None for the
    defaults (IRI objects are relations; rdfs:label, skos:prefLabel/altLabel/definition, schema:name/description,
    rdfs:comment, dcterms:title/description are texts; rdf:type is the type; other literals are attributes).
    Entities and relations are numbered in the order first seen. Any error raises :class:`kgemb.KgembError` naming
    the file (and line and column where the parser knows them); nothing partial is returned.

    ``parser``: ``"auto"`` (pyoxigraph for Turtle, N-Triples, N-Quads, TriG and RDF/XML, rdflib for JSON-LD and
    Notation3), ``"oxigraph"`` (refuses the formats it does not read) or ``"rdflib"`` (the pure-Python readers).
    Both give the same graph, with two exceptions: the statements of an RDF collection (``( a b )``) come in
    another order, so ids may differ; typed literals are kept as written by oxigraph and the line streamer where
    rdflib rewrites some to a canonical form (``"01"^^xsd:integer`` as ``1``).
    """
    if parser not in PARSERS:
        raise InputError(f"parser {parser!r} is unknown; use one of {', '.join(PARSERS)}")
    rules = load_mapping(mapping)
    if _is_rdflib_graph(path_or_paths):
        return _load_graph(path_or_paths, rules)
    files = _expand(path_or_paths)
    collector = Collector(rules)
    per_file = []
    if parser == "oxigraph":
        other = sorted({fmt for _, fmt in files if fmt not in _rdf_oxigraph.FORMATS})
        if other:
            raise InputError(
                f"parser='oxigraph' reads {', '.join(_rdf_oxigraph.FORMATS)}, not {', '.join(other)}; "
                "use parser='auto' (rdflib for those) or parser='rdflib'"
            )
    with gc_paused():  # a bulk build: no cycles for the collector to find among the new entities
        for path, fmt in files:
            collector.new_file()
            before = collector.counts["statements"]
            statements = _read_file(path, fmt, collector, parser)
            collector.counts["statements"] = before + statements
            if statements == 0:
                raise InputError(f"{path} is empty (no RDF statements); remove it or give it content")
            per_file.append({"path": str(path), "format": fmt, "statements": statements})
        meta: dict[str, Any] = {"source": [str(p) for p, _ in files], "format": "rdf", "files": per_file}
        meta["mapping"] = rules.source
        kg = collector.build(meta)
    if sum(len(t) for t in kg.splits.values()) == 0:
        names = ", ".join(str(p) for p, _ in files[:3]) + (" ..." if len(files) > 3 else "")
        raise InputError(
            f"{names}: no statement links two resources (only literals or types: "
            f"{collector.counts['text']} texts, {collector.counts['attribute']} attributes, "
            f"{collector.counts['type']} types), so there is nothing to predict; add relation triples or map "
            "predicates as relations in a mapping file"
        )
    return kg


def _is_rdflib_graph(value: Any) -> bool:
    from rdflib import Graph

    return isinstance(value, Graph)


def _load_graph(graph: Any, rules: Any) -> KnowledgeGraph:
    """A knowledge graph from an in-memory rdflib graph (every statement of every named graph, in a sorted
    order so the ids do not depend on rdflib's hashing)."""
    from rdflib import Dataset

    if isinstance(graph, Dataset):
        triples = {(s, p, o) for s, p, o, _ in graph.quads((None, None, None, None))}
    else:
        triples = set(graph.triples((None, None, None)))
    collector = Collector(rules)
    collector.new_file()
    count = _feed(sorted(triples, key=lambda t: tuple(x.n3() for x in t)), collector)
    collector.counts["statements"] = count
    if count == 0:
        raise InputError("the rdflib graph is empty (no statements); parse some RDF into it first")
    name = f"rdflib.{type(graph).__name__}"
    kg = collector.build({"source": [name], "format": "rdf", "files": [], "mapping": rules.source})
    if sum(len(t) for t in kg.splits.values()) == 0:
        raise InputError(f"the {name} has no statement linking two resources, so there is nothing to predict")
    return kg


def format_of(path: Path) -> str | None:
    """The format name from the file suffix (``.gz`` looked through); None when not an RDF suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1]) if suffixes else None


def _expand(path_or_paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    items = [path_or_paths] if isinstance(path_or_paths, str | os.PathLike) else list(path_or_paths)
    if not items:
        raise InputError("no RDF file given; pass a file, a folder or a list of files")
    files: list[tuple[Path, str]] = []
    known = ", ".join(sorted(FORMATS))
    for item in items:
        path = Path(item)
        if path.is_dir():
            root = path.resolve()
            found = [
                (p, fmt)
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and (fmt := format_of(p)) is not None
                and _inside(p, root)
            ]
            if not found:
                raise InputError(f"folder {path} holds no RDF file (suffixes {known}, optionally .gz)")
            files.extend(found)
        elif path.is_file():
            fmt = format_of(path)
            if fmt is None:
                raise InputError(
                    f"{path}: unknown RDF file suffix; rename it to one of {known} (optionally .gz)"
                )
            files.append((path, fmt))
        else:
            raise InputError(f"{path} does not exist; give an RDF file or folder")
    return files


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (a file found in the folder ``root``) really lies in it: a symbolic link out of the folder
    is not followed, so a folder never reads (nor quotes in an error) a file from elsewhere."""
    return path.resolve().is_relative_to(root)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    if _is_gzip(path):
        try:
            with gzip.open(path, "rb") as g:
                return g.read()
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: broken gzip data ({exc}); re-compress or unpack the file") from None
    return path.read_bytes()


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")  # noqa: SIM115 (wrapped below)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(
            f"{path}:{line}:{column}: not UTF-8 (byte {data[exc.start]:#04x}); re-save the file as UTF-8"
        ) from None


def _read_file(path: Path, fmt: str, collector: Collector, parser: str = "rdflib") -> int:
    """Feed one file's statements to ``collector`` with ``parser``; returns how many were read."""
    if parser != "rdflib" and fmt in _rdf_oxigraph.FORMATS:
        return _rdf_oxigraph.read(path, fmt, collector, _is_gzip(path))
    if fmt in _STREAMED:
        try:
            with _open_text(path) as handle:
                return _rdf_lines.stream(
                    handle, str(path), fmt == "nquads", collector.bnode, collector.resource, collector.literal
                )
        except UnicodeDecodeError:
            _decode(_read_bytes(path), path)  # raises with line and column
            raise
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: cannot be read ({exc}); check the file (and its gzip data)") from None
    return _feed(_parse_rdflib(_read_bytes(path), fmt, path), collector)


def _parse_rdflib(data: bytes, fmt: str, path: Path, graphs: bool = False) -> list[tuple]:
    """The (s, p, o) rdflib terms of a file in parse order (graph names dropped; with ``graphs``, (s, p, o, g)
    with the graph name ``g``, as the enrichment writer needs)."""
    from xml.sax import SAXException

    from rdflib.exceptions import Error as RdflibError
    from rdflib.plugins.parsers.notation3 import BadSyntax

    from ._rdf_safe import NetworkRefused, no_network, ordered_dataset, parse_jsonld, parse_rdfxml

    base = path.resolve().as_uri()
    dataset = ordered_dataset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", DeprecationWarning
            )  # rdflib's parsers use its own deprecated classes
            if fmt == "xml":
                parse_rdfxml(data, base, str(path), dataset.default_graph)
            elif fmt == "json-ld":
                parse_jsonld(_decode(data, path), base, str(path), dataset)
            else:
                text = _decode(data, path)
                with no_network():
                    dataset.parse(data=text, format=fmt, publicID=base)
        if graphs:
            return [(*t, g) for t, g in zip(dataset.store.ordered, dataset.store.graphs, strict=True)]
        return dataset.store.ordered
    except InputError:
        raise
    except BadSyntax as exc:
        source = exc._str.decode("utf-8", "replace")
        index = len(source) if exc._i < 0 else min(exc._i, len(source))  # -1: at the end
        column = index - (source.rfind("\n", 0, index) + 1) + 1
        raise InputError(
            f"{path}:{exc.lines + 1}:{column}: malformed {fmt}: {exc._why}; fix the syntax there"
        ) from None
    except NetworkRefused as exc:
        raise InputError(f"{path}: {exc}; kgemb never fetches anything while reading RDF") from None
    except (RdflibError, SAXException, ValueError, KeyError, TypeError, SyntaxError, AssertionError) as exc:
        # the types rdflib's parsers raise for bad input
        raise InputError(f"{path}: cannot be parsed as {fmt}: {exc}; fix the file") from exc


def _feed(triples: list[tuple], collector: Collector) -> int:
    """rdflib (s, p, o) terms into the collector."""
    from rdflib import BNode, Literal

    count = 0
    for s, p, o in triples:
        skey = collector.bnode(str(s)) if isinstance(s, BNode) else str(s)
        if isinstance(o, Literal):
            collector.literal(skey, str(p), str(o), o.language)
        else:
            collector.resource(skey, str(p), collector.bnode(str(o)) if isinstance(o, BNode) else str(o))
        count += 1
    return count


# ---------------------------------------------------------------------- writing: batch enrichment
# ``enrich`` lives in rdf_enrich.py (the job) and rdf_write.py (vocabulary and serializers); it reads INPUT with the
# functions above, so it is imported last.
from .rdf_enrich import EnrichResult, enrich  # noqa: E402
