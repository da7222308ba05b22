"""How RDF statements become a knowledge graph: the reader's defaults and the mapping file (YAML or TOML) that
overrides them. See the README section "RDF and triple tables" for the file format."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgemb.errors import ConfigError

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
OWL = "http://www.w3.org/2002/07/owl#"
SKOS = "http://www.w3.org/2004/02/skos/core#"
DCTERMS = "http://purl.org/dc/terms/"
SCHEMA = "http://schema.org/"
RDF_TYPE = RDF + "type"
RDFS_DOMAIN = RDFS + "domain"
RDFS_RANGE = RDFS + "range"

PREFIXES: dict[str, str] = {
    "rdf": RDF,
    "rdfs": RDFS,
    "owl": OWL,
    "skos": SKOS,
    "dcterms": DCTERMS,
    "dc": "http://purl.org/dc/elements/1.1/",
    "schema": SCHEMA,
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "foaf": "http://xmlns.com/foaf/0.1/",
}

#: predicate -> text kind, for literal objects.
DEFAULT_TEXT: dict[str, str] = {
    RDFS + "label": "label",
    SKOS + "prefLabel": "label",
    SCHEMA + "name": "label",
    DCTERMS + "title": "label",
    SKOS + "altLabel": "alias",
    RDFS + "comment": "description",
    SKOS + "definition": "description",
    SCHEMA + "description": "description",
    DCTERMS + "description": "description",
}

#: predicates that describe documents or ontologies rather than the domain: never relations by default.
DEFAULT_IGNORE: frozenset[str] = frozenset(
    {
        OWL + "imports",
        OWL + "versionIRI",
        OWL + "priorVersion",
        OWL + "backwardCompatibleWith",
        OWL + "incompatibleWith",
        RDFS + "isDefinedBy",
        RDFS + "seeAlso",
    }
)

#: types of vocabulary terms (classes, properties, ontologies): such a resource is no entity unless it takes part
#: in a relation triple.
SCHEMA_TYPES: frozenset[str] = frozenset(
    {
        RDF + "Property",
        RDFS + "Class",
        RDFS + "Datatype",
        OWL + "Class",
        OWL + "Ontology",
        OWL + "ObjectProperty",
        OWL + "DatatypeProperty",
        OWL + "AnnotationProperty",
        OWL + "TransitiveProperty",
        OWL + "SymmetricProperty",
        OWL + "FunctionalProperty",
        OWL + "InverseFunctionalProperty",
        OWL + "AsymmetricProperty",
        OWL + "ReflexiveProperty",
        OWL + "IrreflexiveProperty",
    }
)

TEXT_KINDS = ("label", "alias", "description", "none")
_KEYS = ("prefixes", "relations", "ignore", "text", "entity_classes", "type_as_relation", "attributes")


def _with_https(iris: set[str]) -> set[str]:
    """schema.org is used with both schemes: accept either."""
    return iris | {"https://" + i[len("http://") :] for i in iris if i.startswith(SCHEMA)}


@dataclass
class RdfMapping:
    """The resolved reading rules (full IRIs everywhere)."""

    relations: set[str] | None = None  # None: every predicate with an IRI or blank-node object
    ignore: set[str] = field(default_factory=lambda: set(DEFAULT_IGNORE))
    text: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEXT))  # predicate -> kind
    entity_classes: set[str] | None = None  # None: every resource is a candidate entity
    type_as_relation: bool = False
    keep_attributes: bool = True
    source: str = "defaults"

    def __post_init__(self) -> None:
        for iri in [i for i in self.text if i.startswith(SCHEMA)]:
            self.text.setdefault("https://" + iri[len("http://") :], self.text[iri])


def load_mapping(mapping: str | os.PathLike | dict | RdfMapping | None) -> RdfMapping:
    """Read a mapping file (``.yaml``/``.yml``/``.toml``) or dict into :class:`RdfMapping` (None: the defaults)."""
    if mapping is None:
        return RdfMapping()
    if isinstance(mapping, RdfMapping):
        return mapping
    if isinstance(mapping, dict):
        return _from_dict(mapping, "mapping dict")
    path = Path(mapping)
    if not path.is_file():
        raise ConfigError(f"mapping file {path} does not exist; give a YAML or TOML file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"mapping file {path} must end in .yaml, .yml or .toml")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"mapping file {path} cannot be read: {exc}; fix its syntax") from None
    except Exception as exc:  # yaml.YAMLError without importing yaml up front
        if type(exc).__module__.startswith("yaml"):
            raise ConfigError(f"mapping file {path} cannot be read: {exc}; fix its YAML syntax") from None
        raise
    if not isinstance(data, dict):
        raise ConfigError(f"mapping file {path} must hold a table of settings, not {type(data).__name__}")
    return _from_dict(data, str(path))


def _from_dict(data: dict[str, Any], source: str) -> RdfMapping:
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {unknown}; known settings are {list(_KEYS)}")
    prefixes = dict(PREFIXES)
    raw_prefixes = data.get("prefixes") or {}
    if not isinstance(raw_prefixes, dict):
        raise ConfigError(f"{source}: 'prefixes' must map a prefix to a namespace IRI")
    prefixes.update({str(k): str(v) for k, v in raw_prefixes.items()})

    def iri(value: Any, setting: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: {setting} holds {value!r}; give an IRI or prefix:name")
        value = value.strip()
        if value.startswith("<") and value.endswith(">"):
            return value[1:-1]
        prefix, sep, local = value.partition(":")
        if sep and prefix in prefixes and not local.startswith("//"):
            return prefixes[prefix] + local
        if sep:
            return value
        raise ConfigError(
            f"{source}: {setting} holds {value!r}, which is neither an IRI nor a known prefix:name"
        )

    def iri_set(setting: str) -> set[str] | None:
        values = data.get(setting)
        if values is None:
            return None
        if isinstance(values, str) or not isinstance(values, list):
            raise ConfigError(f"{source}: '{setting}' must be a list of IRIs or prefix:names")
        return _with_https({iri(v, setting) for v in values})

    result = RdfMapping(source=source)
    result.relations = iri_set("relations")
    result.ignore |= iri_set("ignore") or set()
    result.entity_classes = iri_set("entity_classes")
    text = data.get("text") or {}
    if not isinstance(text, dict):
        raise ConfigError(f"{source}: 'text' must map a predicate to one of {', '.join(TEXT_KINDS)}")
    for predicate, kind in text.items():
        if kind not in TEXT_KINDS:
            raise ConfigError(
                f"{source}: text kind {kind!r} for {predicate} is unknown; use one of {TEXT_KINDS}"
            )
        for full in _with_https({iri(predicate, "text")}):
            if kind == "none":
                result.text.pop(full, None)
            else:
                result.text[full] = kind
    type_as_relation = data.get("type_as_relation", False)
    if not isinstance(type_as_relation, bool):
        raise ConfigError(f"{source}: 'type_as_relation' must be true or false")
    result.type_as_relation = type_as_relation
    attributes = data.get("attributes", "keep")
    if attributes not in ("keep", "skip"):
        raise ConfigError(f"{source}: 'attributes' must be keep or skip, not {attributes!r}")
    result.keep_attributes = attributes == "keep"
    return result
