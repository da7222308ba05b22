"""Streaming N-Triples / N-Quads: one compiled regular expression per line, no rdflib ``Graph`` in memory.

The statements go straight to a sink (:class:`connectors._rdf_collect.Collector`), so memory grows with the entities
and relation triples kept, not with the size of the input. Graph names of N-Quads are read and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import IO

from kgemb.errors import InputError

_IRI = r'<([^<>"\s]*)>'
_BNODE = r'_:([^\s<>"]*[^\s<>".])'
_LITERAL = r'"([^"\\\n]*(?:\\.[^"\\\n]*)*)"(?:@([A-Za-z]+(?:-[A-Za-z0-9]+)*)|\^\^<([^<>"\s]*)>)?'
_WS = r"[ \t]*"
_END = r"\.[ \t\r]*(?:#.*)?$"
_GRAPH = rf"(?:(?:<[^<>\"\s]*>|_:[^\s<>\"]*[^\s<>\".]){_WS})?"

# groups: 1 subject IRI, 2 subject bnode, 3 predicate, 4 object IRI, 5 object bnode, 6 literal, 7 language, 8 datatype
NTRIPLES = re.compile(rf"{_WS}(?:{_IRI}|{_BNODE}){_WS}{_IRI}{_WS}(?:{_IRI}|{_BNODE}|{_LITERAL}){_WS}{_END}")
NQUADS = re.compile(
    rf"{_WS}(?:{_IRI}|{_BNODE}){_WS}{_IRI}{_WS}(?:{_IRI}|{_BNODE}|{_LITERAL}){_WS}{_GRAPH}{_END}"
)

_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _unescape_match(m: re.Match) -> str:
    if m.group(1) or m.group(2):
        return chr(int(m.group(1) or m.group(2), 16))
    char = m.group(3)
    if char not in _SIMPLE_ESCAPES:
        raise ValueError(f"unknown escape \\{char}")
    return _SIMPLE_ESCAPES[char]


def unescape(text: str) -> str:
    """Resolve N-Triples escapes (``\\n``, ``\\"``, ``\\u00E9``, ``\\U0001F600``) in a literal or IRI."""
    return _ESCAPE.sub(_unescape_match, text) if "\\" in text else text


_TERM_CHECKS: tuple[tuple[str, re.Pattern], ...] = (
    ("a subject (<IRI> or _:blank)", re.compile(rf"{_WS}(?:{_IRI}|{_BNODE})")),
    ("a predicate <IRI>", re.compile(rf"{_WS}{_IRI}")),
    ('an object (<IRI>, _:blank or "literal")', re.compile(rf"{_WS}(?:{_IRI}|{_BNODE}|{_LITERAL})")),
)


def describe_error(line: str, quads: bool) -> tuple[int, str]:
    """(1-based column, what was expected there) for a line the statement pattern rejected."""
    pos = 0
    checks = [*_TERM_CHECKS]
    if quads:
        checks.append(("an optional graph name then '.'", re.compile(rf"{_WS}{_GRAPH}")))
    for what, pattern in checks:
        m = pattern.match(line, pos)
        if m is None:
            return len(line) - len(line[pos:].lstrip(" \t")) + 1, what
        pos = m.end()
    rest = line[pos:].lstrip(" \t")
    return len(line) - len(rest) + 1, "'.' ending the statement"


BNodeMap = Callable[[str], str]
Resource = Callable[[str, str, str], None]
Literal = Callable[[str, str, str, str | None], None]


def stream(
    handle: IO[str], name: str, quads: bool, bnode: BNodeMap, resource: Resource, literal: Literal
) -> int:
    """Parse every line of ``handle``; call ``resource(s, p, o)`` or ``literal(s, p, text, lang)`` per statement.

    Returns the number of statements. A malformed line raises :class:`InputError` with ``name:line:column``.
    """
    match = (NQUADS if quads else NTRIPLES).match
    count = 0
    number = 0
    try:
        for number, line in enumerate(handle, 1):
            m = match(line)
            if m is None:
                stripped = line.strip()
                if not stripped or stripped.startswith("#"):
                    continue
                column, expected = describe_error(line.rstrip("\r\n"), quads)
                raise InputError(
                    f"{name}:{number}:{column}: malformed {'N-Quads' if quads else 'N-Triples'} statement, "
                    f"expected {expected}: {line.strip()[:100]!r}; fix or remove that line"
                )
            s, sb, p, o, ob, text, lang, _ = m.groups()
            s = bnode(sb) if s is None else (unescape(s) if "\\" in s else s)
            if "\\" in p:
                p = unescape(p)
            if text is not None:
                literal(s, p, unescape(text) if "\\" in text else text, lang)
            else:
                resource(s, p, bnode(ob) if o is None else (unescape(o) if "\\" in o else o))
            count += 1
    except UnicodeDecodeError:
        raise
    except ValueError as exc:  # a bad escape sequence
        raise InputError(f"{name}:{number}: {exc}; fix the escape in that line") from None
    return count
