"""Fast RDF reading with pyoxigraph (Rust parsers) for Turtle, N-Triples, N-Quads, TriG and RDF/XML.

The statements go to the same :class:`connectors._rdf_collect.Collector` (its rules, its builder) as rdflib's, in
parse order, so the knowledge graph is the same; they are converted column-wise, a chunk at a time (:func:`_feed`),
which makes the conversion cost less than the parse. Safety, as for the rdflib path:

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
from itertools import compress, islice, repeat
from operator import attrgetter, is_, ne
from pathlib import Path
from typing import Any

import numpy as np

from kgemb.errors import InputError
from kgemb.names import clean_text, normalize_language

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


#: statements converted at a time, column by column (their term objects are then freed)
CHUNK = 16_384
_SUBJECT, _OBJECT, _PREDICATE = attrgetter("subject"), attrgetter("object"), attrgetter("predicate.value")
_VALUE, _LANGUAGE = attrgetter("value"), attrgetter("language")
#: the collector's rules as small codes (index in these tuples)
_RESOURCE_RULES = ("skip", "relation", "type", "domain", "range")
_LITERAL_RULES = ("skip", "label", "alias", "description", "attribute")


class _Numbering(dict):
    """Key -> number, a new key numbered on its first lookup with ``[]`` in the order first seen."""

    def __missing__(self, key: str) -> int:
        number = self[key] = len(self)
        return number


def _feed(quads: Any, collector: Collector) -> int:
    """Every statement into ``collector`` in parse order (graph names dropped); returns the count.

    The same graph as :meth:`Collector.resource` / :meth:`Collector.literal` called per statement (the rdflib
    readers do that; tests compare the two), built column-wise a chunk of statements at a time: term strings
    taken with ``map``, keys numbered by dict lookups in bulk (first-seen order: subject then object of each
    statement that makes an entity), the rules applied once per predicate and spread with numpy masks.
    """
    count = 0
    while chunk := list(islice(quads, CHUNK)):
        _feed_chunk(chunk, collector, count)
        count += len(chunk)
    return count


def _feed_chunk(chunk: list, collector: Collector, before: int) -> None:
    from pyoxigraph import BlankNode, Literal, NamedNode

    n = len(chunk)
    subjects = list(map(_SUBJECT, chunk))
    objects = list(map(_OBJECT, chunk))
    predicates = list(map(_PREDICATE, chunk))
    del chunk
    s_class = list(map(type, subjects))
    o_class = list(map(type, objects))
    s_kinds, o_kinds = set(s_class), set(o_class)  # the term classes present, for both checks below
    for classes, kinds, allowed in (
        (s_class, s_kinds, {NamedNode, BlankNode}),
        (o_class, o_kinds, {NamedNode, BlankNode, Literal}),
    ):
        odd = kinds - allowed
        if odd:
            first = min(classes.index(c) for c in odd)
            raise InputError(
                f"RDF 1.2 triple terms (<<( ... )>>) are not supported (statement {before + first + 1})"
            )
    # statement i: its subject's key at 2i, its object's key (or literal text) at 2i + 1
    keys: list = [None] * (2 * n)
    keys[0::2] = map(_VALUE, subjects)
    keys[1::2] = map(_VALUE, objects)
    del subjects
    if BlankNode in s_kinds or BlankNode in o_kinds:
        kinds: list = [None] * (2 * n)
        kinds[0::2] = s_class
        kinds[1::2] = o_class
        bnode = collector.bnode
        for i in np.flatnonzero(np.fromiter(map(is_, kinds, repeat(BlankNode)), bool, 2 * n)).tolist():
            keys[i] = bnode(keys[i])  # renamed in the order seen, subject before object
        del kinds
    literal = np.fromiter(map(is_, o_class, repeat(Literal)), bool, n)

    codes = _Numbering()
    p_code = np.fromiter(map(codes.__getitem__, predicates), np.intp, n)
    del predicates
    unique = list(codes)
    literal_rules = [collector.literal_rule(p) for p in unique]
    for rule in literal_rules:
        if rule not in _LITERAL_RULES:
            raise InputError(f"text kind {rule!r} is unknown; use one of label, alias, description")
    res_rule = np.array([_RESOURCE_RULES.index(collector.resource_rule(p)) for p in unique], np.int8)[p_code]
    lit_rule = np.array([_LITERAL_RULES.index(rule) for rule in literal_rules], np.int8)[p_code]
    res_rule[literal] = -1
    lit_rule[~literal] = -1
    relation, typed, attribute = res_rule == 1, res_rule == 2, lit_rule == 4
    text = (lit_rule >= 1) & (lit_rule <= 3)
    triple = relation | typed if collector.mapping.type_as_relation else relation

    # texts: tidied first, as an empty one makes no entity
    text_at = np.flatnonzero(text)
    cleaned = list(map(clean_text, map(keys.__getitem__, (2 * text_at + 1).tolist())))
    has_text = np.zeros(n, bool)
    has_text[text_at[np.fromiter(map(bool, cleaned), bool, len(cleaned))]] = True

    # entities, numbered in the order the per-statement collector creates them; a subject repeated from the
    # statement before (Turtle's ';' and ',', and files grouped by subject) takes the id of the first statement of
    # its run that makes it an entity, instead of one more dict lookup (it is numbered by then: same numbering)
    s_makes = np.flatnonzero(relation | typed | attribute | has_text)
    run = np.ones(n, np.int64)
    run[1:] = np.fromiter(map(ne, keys[2::2], keys[0 : 2 * n - 2 : 2]), bool, n - 1)
    run = np.cumsum(run)
    first = np.ones(len(s_makes), bool)
    first[1:] = run[s_makes[1:]] != run[s_makes[:-1]]
    makes = np.zeros(2 * n, bool)
    makes[2 * s_makes[first]] = True
    makes[1::2] = triple
    builder = collector.builder
    ids = np.full(2 * n, -1, np.int64)
    ids[makes] = builder.add_entities(list(compress(keys, makes.tolist())))
    s_id, o_id = ids[0::2], ids[1::2]
    s_id[s_makes] = s_id[s_makes[first]][np.cumsum(first) - 1]  # the repeats copy their run's id

    if triple.any():
        triple_code = p_code[triple]
        present, first = np.unique(triple_code, return_index=True)
        relation_of = np.full(len(unique), -1, np.int64)
        for j in present[np.argsort(first)].tolist():  # relations numbered in the order first seen
            relation_of[j] = builder.add_relation(unique[j])
        builder.add_triple_id_rows(np.stack([s_id[triple], relation_of[triple_code], o_id[triple]], axis=1))
    typed_at = np.flatnonzero(typed)
    builder.add_types(s_id[typed_at].tolist(), list(map(keys.__getitem__, (2 * typed_at + 1).tolist())))
    if len(text_at):
        langs = list(map(_LANGUAGE, map(objects.__getitem__, text_at.tolist())))
        normal = {lang: normalize_language(lang) for lang in set(langs)}
        kinds_of = np.array(_LITERAL_RULES, dtype=object)[lit_rule[text_at]].tolist()
        builder.add_texts(s_id[text_at].tolist(), kinds_of, list(map(normal.__getitem__, langs)), cleaned)
    attribute_at = np.flatnonzero(attribute)
    builder.add_attributes(
        s_id[attribute_at].tolist(),
        list(map(unique.__getitem__, p_code[attribute_at].tolist())),
        list(map(keys.__getitem__, (2 * attribute_at + 1).tolist())),
    )
    for i in np.flatnonzero(res_rule >= 3).tolist():
        collector.domain_or_range(keys[2 * i], _RESOURCE_RULES[res_rule[i]], keys[2 * i + 1])

    counts = collector.counts
    counts["relation"] += int(triple.sum())
    counts["type"] += int(typed.sum())
    counts["text"] += len(text_at)
    counts["attribute"] += int(attribute.sum())
    counts["skipped"] += int((res_rule == 0).sum() + (lit_rule == 0).sum())


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
