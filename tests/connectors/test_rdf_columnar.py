"""The column-wise pyoxigraph reader (``connectors._rdf_oxigraph``) gives exactly the graph of a plain reference:
every statement of the same parser through ``Collector.resource`` / ``Collector.literal`` one at a time and the
vocabulary filter called per entity, as the loader did before it was made column-wise. Real RDF files with texts in
several languages, whitespace-only and repeated texts, typed literals, blank nodes (across chunk boundaries and
files), types, domains and ranges, ignored predicates, duplicate triples; each mapping that changes the rules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyoxigraph as ox
import pytest
from kgemb.connectors import _rdf_oxigraph, rdf
from kgemb.connectors._rdf_collect import Collector
from kgemb.connectors._rdf_mapping import SCHEMA_TYPES, load_mapping

from kgemb import KgembError, KnowledgeGraph
from kgemb.graph import Entity, GraphBuilder

from .test_rdf_parsers import DATA, REPO, snapshot  # the same files and the same whole-graph comparison

PREFIXES = """@prefix ex: <http://example.org/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix schema: <http://schema.org/> .
"""
MULTILINGUAL_TTL = (
    PREFIXES
    + """
ex:blank rdfs:label "   "@en ; rdfs:label "\\t\\n" .
ex:paris a ex:City , ex:City , ex:Place ;
    rdfs:label "Paris"@fr , "Paris"@en , "  Paris  "@en , "Parigi"@it , "パリ"@ja , "Paris"@FR-ca , "Paris" ;
    skos:altLabel "Lutèce"@fr , "City   of\\nLight"@en , "Lutèce"@fr ;
    rdfs:comment "Capital of France."@en , "Hauptstadt Frankreichs."@de-DE ;
    ex:population 2102650 , "2102650"^^xsd:integer , "about two million"@en ;
    ex:inCountry ex:france , ex:france ;
    ex:twin [ a ex:City ; rdfs:label "Rome"@en ; ex:inCountry [ rdfs:label "Italy"@en ] ] .
ex:attrOnly ex:code "X1" .
ex:late rdfs:label " "@en ; rdfs:comment "\t" ; ex:inCountry ex:france ; rdfs:label "late"@en .
_:a ex:near ex:paris ; rdfs:label "somewhere"@en .
ex:france ex:near _:a ; schema:name "France"@en , "Frankreich"@de ; ex:capital ex:paris .
ex:inCountry rdfs:label "in country"@en , "im Land"@de ; a owl:ObjectProperty ;
    rdfs:domain ex:City ; rdfs:range ex:Country ; rdfs:range ex:Country , ex:State .
ex:capital ex:code "cap" .
ex:City a owl:Class ; rdfs:label "city"@en .
ex:Lonely a owl:Class ; rdfs:label "lonely class"@en .
ex:onto a owl:Ontology ; owl:imports <http://127.0.0.1:9/never.ttl> ; rdfs:seeAlso ex:paris .
ex:france ex:inCountry ex:france .
ex:paris ex:inCountry ex:france .
ex:near ex:near ex:near .
"""
)
SECOND_TTL = (
    PREFIXES
    + """
_:a ex:near ex:france ; rdfs:label "another file's blank node"@en .
ex:rome ex:twin ex:paris ; rdfs:label "Roma"@it , "Rome"@en ; a ex:City .
ex:paris rdfs:label "Paris"@de ; ex:inCountry ex:france .
"""
)
MAPPINGS = [
    None,
    {"type_as_relation": True},
    {"relations": ["ex:inCountry", "ex:twin"], "prefixes": {"ex": "http://example.org/"}},
    {"attributes": "skip", "ignore": ["ex:near"], "prefixes": {"ex": "http://example.org/"}},
    {"text": {"rdfs:comment": "none", "ex:code": "alias"}, "prefixes": {"ex": "http://example.org/"}},
    {"entity_classes": ["ex:City"], "prefixes": {"ex": "http://example.org/"}},
]


def reference_load(paths: list[Path], mapping: object = None) -> KnowledgeGraph:
    """The loader written out plainly: pyoxigraph's statements one by one into the collector, then the vocabulary
    filter as a call per entity."""
    rules = load_mapping(mapping)
    collector = Collector(rules)
    per_file = []
    for path in paths:
        collector.new_file()
        fmt = rdf.format_of(path)
        rdf_format = getattr(ox.RdfFormat, _rdf_oxigraph.FORMATS[fmt])
        count = 0
        for quad in ox.parse(
            path=str(path), format=rdf_format, base_iri=path.resolve().as_uri(), lenient=True
        ):
            s, p, o = quad.subject, quad.predicate.value, quad.object
            skey = s.value if isinstance(s, ox.NamedNode) else collector.bnode(s.value)
            if isinstance(o, ox.Literal):
                collector.literal(skey, p, o.value, o.language)
            else:
                collector.resource(
                    skey, p, o.value if isinstance(o, ox.NamedNode) else collector.bnode(o.value)
                )
            count += 1
        collector.counts["statements"] += count
        per_file.append({"path": str(path), "format": fmt, "statements": count})
    builder = collector.builder
    relations = set(builder.relation_keys())
    for key in builder.relation_keys():
        if builder.has_entity(key):
            e = builder.entity(key)
            builder.add_relation(key, e.labels or e.aliases)
    connected = builder.connected_entities()
    classes = rules.entity_classes

    def keep(e: Entity) -> bool:
        if classes is not None:
            return any(t in classes for t in e.types)
        if connected[builder.add_entity(e.key)]:
            return True
        return e.key not in relations and not any(t in SCHEMA_TYPES for t in e.types)

    metadata = {
        "source": [str(p) for p in paths],
        "format": "rdf",
        "files": per_file,
        "mapping": rules.source,
        "counts": dict(collector.counts),
        "domain_range": {k: v for k, v in collector.domain_range.items() if k in relations},
    }
    return builder.build(metadata, entity_filter=keep)


@pytest.fixture(params=[3, 100_000], ids=["chunks-of-3", "one-chunk"])
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Statements per column-wise chunk: 3 puts blank nodes, first sightings and duplicates across chunks."""
    monkeypatch.setattr(_rdf_oxigraph, "CHUNK", request.param)
    return request.param


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """The two Turtle files, and the first also as N-Triples (the same statements in another syntax)."""
    first, second = tmp_path / "multilingual.ttl", tmp_path / "second.ttl"
    first.write_text(MULTILINGUAL_TTL, encoding="utf-8")
    second.write_text(SECOND_TTL, encoding="utf-8")
    nt = tmp_path / "multilingual.nt"
    ox.serialize(
        ox.parse(path=str(first), format=ox.RdfFormat.TURTLE), output=str(nt), format=ox.RdfFormat.N_TRIPLES
    )
    return [first, second, nt]


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda m: "defaults" if m is None else "-".join(m))
def test_columnar_equals_reference(files: list[Path], chunk: int, mapping: dict | None) -> None:
    first, second, nt = files
    for paths in ([first], [nt], [first, second], [second, nt, first], [DATA / "medical.ttl", first]):
        fast = rdf.load(paths, mapping, parser="oxigraph")
        assert snapshot(fast) == snapshot(reference_load(paths, mapping)), paths


def test_what_the_reference_holds(files: list[Path], chunk: int) -> None:
    """The cases the comparison above covers are really in the files (so it cannot pass on an empty graph)."""
    first, second, _ = files
    kg = rdf.load([first, second], parser="oxigraph")
    paris = kg.entities[kg.entity_id("http://example.org/paris")]
    assert paris.labels == {
        "fr": ["Paris"],
        "en": ["Paris"],
        "it": ["Parigi"],
        "ja": ["パリ"],
        "fr-ca": ["Paris"],
        "": ["Paris"],
        "de": ["Paris"],
    }
    assert paris.aliases == {"fr": ["Lutèce"], "en": ["City of Light"]}
    assert paris.descriptions == {"en": ["Capital of France."], "de-de": ["Hauptstadt Frankreichs."]}
    assert paris.types == ["http://example.org/City", "http://example.org/Place"]
    assert paris.attributes == {"http://example.org/population": ["2102650", "about two million"]}
    keys = [e.key for e in kg.entities]
    assert "http://example.org/blank" not in keys  # only whitespace labels: no entity
    assert "http://example.org/attrOnly" in keys and "http://example.org/Lonely" not in keys
    assert keys.count("_:b0") == 1 and "_:b3" in keys  # blank nodes of two files kept apart
    assert kg.metadata["duplicates_dropped"] >= 2
    assert kg.metadata["domain_range"]["http://example.org/inCountry"] == {
        "domain": ["http://example.org/City"],
        "range": ["http://example.org/Country", "http://example.org/State"],
    }
    r = kg.relations.index("http://example.org/inCountry")
    assert kg.relation_labels[r] == {"en": ["in country"], "de": ["im Land"]}
    assert set(kg.metadata["counts"]) == {"statements", "relation", "text", "type", "attribute", "skipped"}
    assert all(kg.metadata["counts"][k] > 0 for k in kg.metadata["counts"])


@pytest.mark.parametrize("suffix", ["nt", "ttl"])
def test_benchmark_graph_equals_reference(tmp_path: Path, suffix: str) -> None:
    """The benchmark's generated graph (two languages, types, definitions, 30,000 relation triples), in two chunks
    and more."""
    spec = importlib.util.spec_from_file_location("rdf_stream", REPO / "benchmarks" / "rdf_stream.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "bench.nt"
    bench.generate(path, 40_000, 2_000)
    if suffix == "ttl":
        ttl = tmp_path / "bench.ttl"
        ox.serialize(
            ox.parse(path=str(path), format=ox.RdfFormat.N_TRIPLES),
            output=str(ttl),
            format=ox.RdfFormat.TURTLE,
        )
        path = ttl
    assert snapshot(rdf.load(path)) == snapshot(reference_load([path]))


def test_triple_terms_are_refused_with_the_statement_number(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "star.nt"
    path.write_text(
        "<http://x/a> <http://x/p> <http://x/b> .\n" * 4
        + "<http://x/a> <http://x/p> <<( <http://x/b> <http://x/p> <http://x/c> )>> .\n"
    )
    with pytest.raises(KgembError, match=r"triple terms .* not supported \(statement 5\)"):
        rdf.load(path, parser="oxigraph")


def test_builder_bulk_methods_equal_the_single_ones() -> None:
    one, bulk = GraphBuilder(), GraphBuilder()
    for key in ("a", "b", "a", "c"):
        one.add_entity(key)
    assert bulk.add_entities(["a", "b", "a", "c"]).tolist() == [0, 1, 0, 2]
    one.add_label("a", " x  y ", "EN", "alias")
    one.add_type("b", "T")
    one.add_type("b", "T")
    one.add_attribute("c", "n", "1")
    bulk.add_texts([0], ["alias"], ["en"], ["x y"])
    bulk.add_types([1, 1], ["T", "T"])
    bulk.add_attributes([2], ["n"], ["1"])
    assert [e.to_json() for e in one.entities()] == [e.to_json() for e in bulk.entities()]
    with pytest.raises(KgembError, match="text kind 'bogus'"):
        bulk.add_texts([0], ["bogus"], [""], ["x"])
    one.add_triple_ids(0, one.add_relation("r"), 2)
    mask = one.build(keep=np.array([True, False, True]))
    assert [e.key for e in mask.entities] == ["a", "c"] and mask.triples().tolist() == [[0, 0, 1]]
    with pytest.raises(KgembError, match="one flag per entity"):
        one.build(keep=np.array([True]))
