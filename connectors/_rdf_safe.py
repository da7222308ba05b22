"""rdflib parsing that never reaches the network or the file system beyond the file it was given.

- JSON-LD: the JSON is read here; any ``@context`` or ``@import`` given by reference (a string) is refused, so only
  inline contexts are used, and the parsed document goes straight to rdflib's ``to_rdf`` (nothing is fetched).
- RDF/XML: a SAX reader whose expat parser refuses external entities, parameter entities and entities that refer to
  other entities ("billion laughs"); simple internal entities (``<!ENTITY owl "http://...#">``) still work.
- Everything runs inside :func:`no_network`, a process audit hook that turns any URL open or socket connection
  started during parsing into an error (defence in depth: owl:imports is never followed either).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sys
from collections.abc import Iterator
from typing import Any
from xml.sax import SAXParseException
from xml.sax import handler as sax_handler
from xml.sax.expatreader import ExpatParser

from kgemb.errors import InputError

_BLOCKED_EVENTS = frozenset(
    {"urllib.Request", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname"}
)
_NO_NETWORK = contextvars.ContextVar("kgemb_rdf_no_network", default=False)
_hook_installed = False


class NetworkRefused(RuntimeError):
    """Raised inside the parser when it tries to open a URL or a socket."""


def _audit(event: str, args: tuple) -> None:
    if event in _BLOCKED_EVENTS and _NO_NETWORK.get():
        raise NetworkRefused(f"network access refused while parsing RDF ({event} {args[:1]!r})")


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Inside this block, URL opens and socket connections from this thread/context raise NetworkRefused."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True
    token = _NO_NETWORK.set(True)
    try:
        yield
    finally:
        _NO_NETWORK.reset(token)


# ---------------------------------------------------------------------------------------------------- RDF/XML
_MAX_ENTITY_CHARS = 10_000


class EntityRefused(ValueError):
    """An XML entity declaration that could fetch a resource or expand without bound."""


def _entity_decl(name, is_parameter, value, base, system_id, public_id, notation) -> None:
    if is_parameter:
        raise EntityRefused(f"parameter entity %{name}; is refused")
    if system_id or public_id or notation or value is None:
        raise EntityRefused(f"external entity &{name}; ({system_id or public_id}) is refused")
    if "&" in value or "%" in value:
        raise EntityRefused(
            f"entity &{name}; refers to other entities (entity expansion attack) and is refused"
        )
    if len(value) > _MAX_ENTITY_CHARS:
        raise EntityRefused(f"entity &{name}; is longer than {_MAX_ENTITY_CHARS} characters and is refused")


def _refuse_external(context, base, system_id, public_id) -> int:
    raise EntityRefused(f"external entity reference ({system_id or public_id}) is refused")


class _GuardedExpatParser(ExpatParser):
    """The standard SAX expat reader with entity declarations checked by :func:`_entity_decl`."""

    def reset(self) -> None:
        super().reset()
        import pyexpat

        parser = self._parser
        parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.EntityDeclHandler = _entity_decl
        parser.UnparsedEntityDeclHandler = lambda *args: _entity_decl(
            args[0], False, None, *args[1:4], args[4]
        )
        parser.ExternalEntityRefHandler = _refuse_external


def parse_rdfxml(data: bytes, base: str, name: str, graph: Any) -> None:
    """Parse RDF/XML bytes into the rdflib ``graph`` with the guarded reader."""
    from rdflib.parser import create_input_source
    from rdflib.plugins.parsers.rdfxml import ErrorHandler, RDFXMLHandler

    source = create_input_source(data=data, publicID=base)
    reader = _GuardedExpatParser()
    reader.start_namespace_decl("xml", "http://www.w3.org/XML/1998/namespace")
    reader.setFeature(sax_handler.feature_namespaces, 1)
    content = RDFXMLHandler(graph)
    content.setDocumentLocator(source)  # type: ignore[arg-type]  (as rdflib's own create_parser does)
    reader.setContentHandler(content)
    reader.setErrorHandler(ErrorHandler())
    _run_guarded(reader, source, name)


def check_xml(data: bytes, name: str) -> None:
    """Read XML bytes with the guarded expat reader and no RDF handler: raises the same errors as
    :func:`parse_rdfxml` for refused entities and malformed XML (with line and column), so a parser without these
    guards (oxigraph's RDF/XML reader expands nested entities) only ever sees documents that passed them."""
    from io import BytesIO
    from xml.sax.xmlreader import InputSource

    source = InputSource()
    source.setByteStream(BytesIO(data))
    reader = _GuardedExpatParser()
    reader.setFeature(sax_handler.feature_namespaces, 1)
    reader.setContentHandler(sax_handler.ContentHandler())
    _run_guarded(reader, source, name)


def _run_guarded(reader: _GuardedExpatParser, source: Any, name: str) -> None:
    try:
        with no_network():
            reader.parse(source)
    except EntityRefused as exc:
        line = reader._parser.ErrorLineNumber if reader._parser is not None else "?"
        raise InputError(
            f"{name}:{line}: {exc}; kgemb reads RDF/XML without DTD entities that fetch or expand, remove them"
        ) from None
    except SAXParseException as exc:
        raise InputError(
            f"{name}:{exc.getLineNumber()}:{exc.getColumnNumber() + 1}: malformed RDF/XML: {exc.getMessage()}; "
            "fix the XML at that position"
        ) from None


# ---------------------------------------------------------------------------------------------------- JSON-LD
def _remote_references(data: Any) -> list[str]:
    """Every context given by reference (string) anywhere in a JSON-LD document, including ``@import``."""
    found: list[str] = []
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "@context":
                    values = value if isinstance(value, list) else [value]
                    found.extend(v for v in values if isinstance(v, str))
                elif key == "@import" and isinstance(value, str):
                    found.append(value)
                if isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def parse_jsonld(text: str, base: str, name: str, dataset: Any) -> None:
    """Parse a JSON-LD document whose contexts are all inline into the rdflib ``dataset``."""
    from rdflib.plugins.parsers.jsonld import to_rdf

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{name}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}; fix the JSON there"
        ) from None
    remote = _remote_references(data)
    if remote:
        raise InputError(
            f"{name}: the JSON-LD context {remote[0]!r} is a reference, and kgemb never fetches contexts; "
            "put the context inline (an object under @context)"
        )
    with no_network():
        to_rdf(data, dataset, base=base)


def ordered_dataset() -> Any:
    """An rdflib ``Dataset`` whose store also records every added triple in parse order (``store.ordered``,
    with the graph name of each in ``store.graphs``), because the memory store's own iteration order changes
    with Python's string hashing."""
    from rdflib import Dataset
    from rdflib.plugins.stores.memory import Memory

    class OrderedMemory(Memory):
        def __init__(self) -> None:
            super().__init__()
            self.ordered: list[tuple] = []
            self.graphs: list[Any] = []

        def add(self, triple, context, quoted=False) -> None:
            super().add(triple, context, quoted)
            self.ordered.append(triple)
            self.graphs.append(getattr(context, "identifier", None))

    return Dataset(store=OrderedMemory())
