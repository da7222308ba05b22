"""Turns RDF statements into :class:`kgemb.GraphBuilder` calls by the rules of an :class:`RdfMapping`."""

from __future__ import annotations

import numpy as np

from kgemb.graph import GraphBuilder, KnowledgeGraph

from ._rdf_mapping import RDF_TYPE, RDFS_DOMAIN, RDFS_RANGE, SCHEMA_TYPES, RdfMapping


class Collector:
    """Receives statements (already as plain strings) from every parser and fills one builder.

    Blank nodes are renamed ``_:b0``, ``_:b1``... in first-seen order, scoped per file (call :meth:`new_file`),
    so keys are deterministic and two files never share a blank node by accident.
    """

    def __init__(self, mapping: RdfMapping) -> None:
        self.mapping = mapping
        self.builder = GraphBuilder()
        self._bnodes: dict[str, str] = {}
        self._bnode_count = 0
        self.domain_range: dict[str, dict[str, list[str]]] = {}
        self.counts = {"statements": 0, "relation": 0, "text": 0, "type": 0, "attribute": 0, "skipped": 0}
        self._text = mapping.text
        self._ignore = mapping.ignore
        self._relations = mapping.relations
        self._keep_attributes = mapping.keep_attributes
        self._type_as_relation = mapping.type_as_relation
        self._resource_rules: dict[str, str] = {}
        self._literal_rules: dict[str, str] = {}

    def new_file(self) -> None:
        self._bnodes = {}

    def bnode(self, label: str) -> str:
        key = self._bnodes.get(label)
        if key is None:
            key = self._bnodes[label] = f"_:b{self._bnode_count}"
            self._bnode_count += 1
        return key

    def resource_rule(self, p: str) -> str:
        """What a statement with predicate ``p`` and an IRI or blank-node object becomes: ``"relation"``,
        ``"type"``, ``"domain"``, ``"range"`` or ``"skip"`` (the rules of the mapping, for every reader)."""
        rule = self._resource_rules.get(p)
        if rule is None:
            if p in self._ignore:
                rule = "skip"
            elif p == RDF_TYPE:
                rule = "type"
            elif p == RDFS_DOMAIN:
                rule = "domain"
            elif p == RDFS_RANGE:
                rule = "range"
            elif self._relations is None or p in self._relations:
                rule = "relation"
            else:
                rule = "skip"
            self._resource_rules[p] = rule
        return rule

    def literal_rule(self, p: str) -> str:
        """What a statement with predicate ``p`` and a literal object becomes: a text kind (``"label"``,
        ``"alias"``, ``"description"``), ``"attribute"`` or ``"skip"``."""
        rule = self._literal_rules.get(p)
        if rule is None:
            kind = self._text.get(p)
            if p in self._ignore:
                rule = "skip"
            elif kind is not None:
                rule = kind
            elif self._keep_attributes:
                rule = "attribute"
            else:
                rule = "skip"
            self._literal_rules[p] = rule
        return rule

    def resource(self, s: str, p: str, o: str) -> None:
        """A statement whose object is an IRI or blank node (already renamed)."""
        rule = self.resource_rule(p)
        if rule == "relation":
            self.builder.add_triple(s, p, o)
            self.counts["relation"] += 1
        elif rule == "type":
            self.builder.add_type(s, o)
            self.counts["type"] += 1
            if self._type_as_relation:
                self.builder.add_triple(s, p, o)
                self.counts["relation"] += 1
        elif rule == "skip":
            self.counts["skipped"] += 1
        else:
            self.domain_or_range(s, rule, o)

    def domain_or_range(self, p: str, side: str, cls: str) -> None:
        """``p rdfs:domain cls`` (``side`` "domain") or ``p rdfs:range cls``: kept for the metadata."""
        values = self.domain_range.setdefault(p, {}).setdefault(side, [])
        if cls not in values:
            values.append(cls)

    def literal(self, s: str, p: str, text: str, lang: str | None) -> None:
        """A statement whose object is a literal (lexical form, language tag or None)."""
        rule = self.literal_rule(p)
        if rule == "attribute":
            self.builder.add_attribute(s, p, text)
            self.counts["attribute"] += 1
        elif rule == "skip":
            self.counts["skipped"] += 1
        else:
            self.builder.add_label(s, text, lang, rule)
            self.counts["text"] += 1

    def build(self, metadata: dict) -> KnowledgeGraph:
        """The graph: relation labels taken from the predicates' own texts, vocabulary terms (classes, properties)
        that take part in no relation triple dropped, and only instances of ``entity_classes`` when mapped."""
        builder = self.builder
        relations = set()
        for key in list(builder.relation_keys()):
            relations.add(key)
            if builder.has_entity(key):
                e = builder.entity(key)
                builder.add_relation(key, e.labels or e.aliases)
        connected = builder.connected_entities()
        classes = self.mapping.entity_classes
        entities = builder.entities()
        if classes is not None:
            keep = np.fromiter((any(t in classes for t in e.types) for e in entities), bool, len(entities))
        else:  # an entity in a triple stays; of the others (few), the vocabulary terms go
            keep = connected.copy()
            for i in np.flatnonzero(~connected).tolist():
                e = entities[i]
                keep[i] = e.key not in relations and not any(t in SCHEMA_TYPES for t in e.types)

        metadata = {
            **metadata,
            "counts": dict(self.counts),
            "domain_range": {k: v for k, v in self.domain_range.items() if k in relations},
        }
        return builder.build(metadata, keep=keep)
