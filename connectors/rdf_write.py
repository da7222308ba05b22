"""Writing RDF for enrichment: the kgemb vocabulary and one streaming text writer per output format.

Terms travel as N-Triples text (``<iri>``, ``_:label``, ``"text"@en``, ``"1"^^<datatype>``), so asserted statements
read line by line go out without being re-parsed or normalised, and the writers never hold a graph. N-Triples terms
are valid Turtle and TriG too; those two add prefixes for the vocabulary and write each prediction as one readable
block. JSON-LD is written in expanded form, one node object per line. The same statements always give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kgemb.errors import InputError

from ._rdf_lines import unescape

#: The kgemb vocabulary (documented in the README, section "RDF enrichment").
KGEMB = "https://w3id.org/kgemb/vocab#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XSD = "http://www.w3.org/2001/XMLSchema#"
PROV = "http://www.w3.org/ns/prov#"
FORMATS: tuple[str, ...] = ("ttl", "nt", "nq", "trig", "jsonld")
MODES: tuple[str, ...] = ("reification", "named-graph")
QUAD_FORMATS: tuple[str, ...] = ("nq", "trig", "jsonld")  # the formats that can hold named graphs
_EXTENSIONS = {
    ".ttl": "ttl",
    ".turtle": "ttl",
    ".nt": "nt",
    ".ntriples": "nt",
    ".nq": "nq",
    ".nquads": "nq",
    ".trig": "trig",
    ".jsonld": "jsonld",
    ".json": "jsonld",
}
_ALIASES = {
    "turtle": "ttl",
    "ntriples": "nt",
    "n-triples": "nt",
    "nquads": "nq",
    "n-quads": "nq",
    "json-ld": "jsonld",
}
_PREFIXES = (("rdf", RDF), ("xsd", XSD), ("prov", PROV), ("kgemb", KGEMB))

Triple = tuple[str, str, str]  # terms in N-Triples syntax


def output_format(path: str | Path, fmt: str | None = None) -> str:
    """The output format: ``fmt`` when given, else the one the file name's extension names."""
    if fmt is not None:
        name = _ALIASES.get(fmt.strip().lower(), fmt.strip().lower())
        if name not in FORMATS:
            raise InputError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
        return name
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise InputError(
            f"cannot tell the output format from the file name {str(path)!r}; "
            f"pass --format with one of {', '.join(FORMATS)}"
        )
    return _EXTENSIONS[suffix]


# ---------------------------------------------------------------------- terms (N-Triples text)
_IRI_UNSAFE = re.compile(r'[\x00-\x20<>"{}|^`\\]')
_LITERAL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}


def iri(value: str) -> str:
    """``<value>``, with the characters an IRI reference may not hold written as ``\\u`` escapes."""
    if _IRI_UNSAFE.search(value):
        value = _IRI_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04X}", value)
    return f"<{value}>"


def literal(text: str, datatype: str | None = None, language: str | None = None) -> str:
    """A quoted literal in N-Triples syntax, with a language tag or a datatype IRI."""
    if any(c in text for c in '\\"\n\r'):
        text = "".join(_LITERAL_ESCAPES.get(c, c) for c in text)
    if language:
        return f'"{text}"@{language}'
    return f'"{text}"^^<{datatype}>' if datatype else f'"{text}"'


def double(value: float) -> str:
    """A score as an ``xsd:double`` literal with six significant digits (the same text on every run)."""
    return literal(format(float(value), ".6g"), XSD + "double")


def integer(value: int) -> str:
    return literal(str(int(value)), XSD + "integer")


def vector_literal(vector: Sequence[float]) -> str:
    """An embedding as a ``kgemb:vector`` literal: a JSON array of numbers with seven significant digits."""
    return literal("[" + ",".join(format(float(x), ".7g") for x in vector) + "]", KGEMB + "vector")


_RAW_LITERAL = re.compile(r'"(.*)"(?:@([A-Za-z0-9-]+)|\^\^<([^<>]*)>)?', re.DOTALL)


def jsonld_term(term: str) -> dict[str, str]:
    """An N-Triples term as an expanded JSON-LD node reference or value object."""
    if term.startswith("<"):
        return {"@id": unescape(term[1:-1])}
    if term.startswith("_:"):
        return {"@id": term}
    m = _RAW_LITERAL.fullmatch(term)
    if m is None:
        raise ValueError(f"not an N-Triples term: {term!r}")
    value = {"@value": unescape(m.group(1))}
    if m.group(2):
        value["@language"] = m.group(2)
    elif m.group(3):
        value["@type"] = unescape(m.group(3))
    return value


# ---------------------------------------------------------------------- run and predictions
@dataclass(frozen=True)
class Run:
    """One enrichment run: its IRI, the named graph of its predictions (named-graph mode) and its provenance."""

    iri: str  # N-Triples term
    graph: str | None  # N-Triples term, named-graph mode only
    started: str  # xsd:dateTime lexical form
    ended: str
    model_fingerprint: str
    kgemb_version: str
    k: int
    min_score: float

    def triples(self) -> list[Triple]:
        """The provenance statements of the run (and, in named-graph mode, of its graph)."""
        run = self.iri
        out = [
            (run, iri(RDF + "type"), iri(PROV + "Activity")),
            (run, iri(PROV + "startedAtTime"), literal(self.started, XSD + "dateTime")),
            (run, iri(PROV + "endedAtTime"), literal(self.ended, XSD + "dateTime")),
            (run, iri(KGEMB + "modelFingerprint"), literal(self.model_fingerprint)),
            (run, iri(KGEMB + "kgembVersion"), literal(self.kgemb_version)),
            (run, iri(KGEMB + "k"), integer(self.k)),
            (run, iri(KGEMB + "minScore"), double(self.min_score)),
        ]
        if self.graph is not None:
            out += [
                (self.graph, iri(RDF + "type"), iri(KGEMB + "PredictionGraph")),
                (self.graph, iri(PROV + "wasGeneratedBy"), run),
            ]
        return out


_STATEMENT_TERMS = tuple(
    iri(x)
    for x in (
        RDF + "type",
        RDF + "Statement",
        RDF + "subject",
        RDF + "predicate",
        RDF + "object",
        KGEMB + "score",
        KGEMB + "rank",
        PROV + "wasGeneratedBy",
    )
)


def prediction_node(run: Run, s: str, p: str, o: str) -> str:
    """The IRI of a prediction's statement node: a hash of run and triple, so it is the same on every run."""
    return "<urn:kgemb:prediction:" + hashlib.sha256(f"{run.iri} {s} {p} {o}".encode()).hexdigest()[:24] + ">"


def prediction_triples(
    run: Run, s: str, p: str, o: str, score: float, rank: int, node: str | None = None
) -> list[Triple]:
    """One prediction reified: an ``rdf:Statement`` (``node``, default :func:`prediction_node`) with its
    calibrated score, its rank among the predictions for ``(s, p)`` and the run that made it."""
    node = node or prediction_node(run, s, p, o)
    a, statement, subject, predicate, object_, score_, rank_, generated = _STATEMENT_TERMS
    return [
        (node, a, statement),
        (node, subject, s),
        (node, predicate, p),
        (node, object_, o),
        (node, score_, double(score)),
        (node, rank_, integer(rank)),
        (node, generated, run.iri),
    ]


# ---------------------------------------------------------------------- writers
class Writer:
    """Text of one output format. Statements and blocks take N-Triples terms; ``graph`` None = default graph."""

    def __init__(self, fmt: str, mode: str) -> None:
        if fmt not in FORMATS:
            raise InputError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
        if mode not in MODES:
            raise InputError(f"unknown enrichment mode {mode!r}; use one of {', '.join(MODES)}")
        if mode == "named-graph" and fmt not in QUAD_FORMATS:
            raise InputError(
                f"--as named-graph needs a format with named graphs ({', '.join(QUAD_FORMATS)}), not {fmt!r}; "
                "pass --format trig or nq, or use --as reification"
            )
        self.fmt = fmt
        self.mode = mode

    def begin(self) -> str:
        """The start of the file: prefixes (Turtle, TriG) or the opening of the JSON-LD document."""
        if self.fmt in ("ttl", "trig"):
            return "".join(f"@prefix {name}: <{ns}> .\n" for name, ns in _PREFIXES) + "\n"
        return '{"@graph": [\n' if self.fmt == "jsonld" else ""

    def end(self) -> str:
        return "\n]}\n" if self.fmt == "jsonld" else ""

    def statement(self, s: str, p: str, o: str, graph: str | None = None) -> str:
        """One asserted statement, as it came in. In JSON-LD it starts with a comma: write a block first."""
        if self.fmt == "jsonld":
            node: dict = {"@id": jsonld_term(s)["@id"], unescape(p[1:-1]): [jsonld_term(o)]}
            if graph is not None:
                node = {"@id": jsonld_term(graph)["@id"], "@graph": [node]}
            return ",\n" + json.dumps(node, ensure_ascii=False, separators=(",", ":"))
        if graph is None:
            return f"{s} {p} {o} .\n"
        if self.fmt == "nq":
            return f"{s} {p} {o} {graph} .\n"
        if self.fmt == "trig":
            return f"{graph} {{ {s} {p} {o} . }}\n"
        raise InputError(
            f"the input has statements in named graphs, which {self.fmt!r} cannot hold; "
            f"pass --format with one of {', '.join(QUAD_FORMATS)} (or --only-predictions)"
        )

    def block(self, triples: Sequence[Triple], graph: str | None = None, first: bool = False) -> str:
        """Statements grouped by subject, as one readable unit where the format allows. In JSON-LD each block
        but the ``first`` after :meth:`begin` starts with a comma."""
        if not triples:
            return ""
        if self.fmt in ("nt", "nq"):
            g = f" {graph} .\n" if graph is not None and self.fmt == "nq" else " .\n"
            return "".join(f"{s} {p} {o}{g}" for s, p, o in triples)
        if self.fmt == "jsonld":
            items = [
                json.dumps(n, ensure_ascii=False, separators=(",", ":"))
                for n in _jsonld_nodes(triples, graph)
            ]
            return ("" if first else ",\n") + ",\n".join(items)
        text = _turtle(triples)
        if graph is not None:
            return f"{graph} {{\n" + "".join(f"    {line}\n" for line in text.splitlines()) + "}\n\n"
        return text + "\n"

    def predictions(self, run: Run) -> Callable[[str, str, str, float, int], str]:
        """A fast ``(s, p, o, score, rank) -> text`` for one prediction (IRI terms), giving exactly what
        :meth:`block` gives for its :func:`prediction_triples` (and, in named-graph mode, the triple itself):
        the text is rendered once with placeholders and then filled in by ``str.format``."""
        holes = {name: iri(_HOLE + name) for name in ("node", "s", "p", "o")}
        triples = _with_triple(
            run, holes["s"], holes["p"], holes["o"], _SCORE_HOLE, _RANK_HOLE, holes["node"]
        )
        text = self.block(triples, run.graph)
        score_text = format(_SCORE_HOLE, ".6g")
        if text.count(score_text) != 1 or text.count(str(_RANK_HOLE)) != 1:
            return lambda s, p, o, score, rank: self.block(_with_triple(run, s, p, o, score, rank), run.graph)
        template = text.replace("{", "{{").replace("}", "}}")
        for name in ("node", "s", "p", "o"):
            template = template.replace(f"<{_HOLE}{name}>", "{" + name + "}").replace(
                _HOLE + name, "{" + name + "}"
            )
        template = template.replace(score_text, "{score}").replace(str(_RANK_HOLE), "{rank}")
        fill = template.format
        if self.fmt == "jsonld":

            def value(term: str) -> str:  # an IRI term as the inside of a JSON string
                text = unescape(term[1:-1]) if "\\" in term else term[1:-1]
                return json.dumps(text, ensure_ascii=False)[1:-1]

            return lambda s, p, o, score, rank: fill(
                node=value(prediction_node(run, s, p, o)), s=value(s), p=value(p), o=value(o),
                score=format(float(score), ".6g"), rank=int(rank),
            )  # fmt: skip
        return lambda s, p, o, score, rank: fill(
            node=prediction_node(run, s, p, o),
            s=s,
            p=p,
            o=o,
            score=format(float(score), ".6g"),
            rank=int(rank),
        )


_HOLE = "urn:kgemb:hole:"
_SCORE_HOLE = 0.123457
_RANK_HOLE = 987654321


def _with_triple(
    run: Run, s: str, p: str, o: str, score: float, rank: int, node: str | None = None
) -> list[Triple]:
    """A prediction's statements: reified, and in named-graph mode preceded by the predicted triple itself."""
    triples = prediction_triples(run, s, p, o, score, rank, node)
    return [(s, p, o), *triples] if run.graph is not None else triples


def _turtle(triples: Sequence[Triple]) -> str:
    """Turtle for triples grouped by consecutive subject, vocabulary terms written as prefixed names."""
    out: list[str] = []
    subject: str | None = None
    for s, p, o in triples:
        if s != subject:
            if subject is not None:
                out.append(" .\n")
            out.append(s)
            subject = s
            sep = " "
        else:
            sep = " ;\n    "
        out.append(f"{sep}{_short(p, predicate=True)} {_short(o)}")
    out.append(" .\n")
    return "".join(out)


_LOCAL = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _short(term: str, predicate: bool = False) -> str:
    """Turtle form of a term: ``a`` for rdf:type, prefixed names for the vocabulary, bare integers."""
    if predicate and term == "<" + RDF + "type>":
        return "a"
    if term.startswith("<"):
        return _prefixed(term[1:-1]) or term
    if term.endswith(">") and '"^^<' in term:
        lexical, datatype = term[:-1].rsplit("^^<", 1)
        if datatype == XSD + "integer" and lexical[1:-1].lstrip("-").isdigit():
            return lexical[1:-1]
        name = _prefixed(datatype)
        if name:
            return f"{lexical}^^{name}"
    return term


def _prefixed(value: str) -> str | None:
    for name, ns in _PREFIXES:
        if value.startswith(ns) and _LOCAL.fullmatch(value[len(ns) :]):
            return f"{name}:{value[len(ns) :]}"
    return None


def _jsonld_nodes(triples: Sequence[Triple], graph: str | None) -> list[dict]:
    """Expanded JSON-LD node objects, one per subject (first-seen order), wrapped in the named graph if any."""
    nodes: dict[str, dict] = {}
    for s, p, o in triples:
        sid = jsonld_term(s)["@id"]
        node = nodes.setdefault(sid, {"@id": sid})
        node.setdefault(unescape(p[1:-1]), []).append(jsonld_term(o))
    items = list(nodes.values())
    if graph is not None:
        return [{"@id": jsonld_term(graph)["@id"], "@graph": items}]
    return items
