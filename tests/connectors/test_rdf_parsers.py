"""pyoxigraph and rdflib behind ``rdf.load(parser=...)`` give the same knowledge graph; oxigraph keeps the safety
rules (the rest of the safety tests in test_rdf.py run with each parser)."""

from __future__ import annotations

import gzip
import importlib.util
import socket
from pathlib import Path

import numpy as np
import pytest
from kgemb.connectors import rdf

from kgemb import KgembError, KnowledgeGraph

DATA = Path(__file__).parent / "data" / "rdf"
REPO = Path(__file__).resolve().parents[2]

RICH_TTL = """@prefix ex: <http://example.org/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@base <http://example.org/base/> .

<relative> a ex:Thing ; rdfs:label "Relativ"@de-DE, "relative" ; ex:near ex:a .
ex:a a ex:Thing ;
    rdfs:label "A \\"quoted\\" label\\n"@en , '''Drei
Zeilen'''@de ;
    skos:altLabel "α"@el ;
    ex:count 3 , "4"^^xsd:integer , true , 2.5 ;
    ex:partOf [ a ex:Part ; rdfs:label "anonymous part"@en ; ex:partOf [ ex:partOf ex:b ] ] ;
    ex:p ex:b , ex:c .
_:x ex:p ex:a ; rdfs:comment "a blank node"@en .
ex:b ex:p _:x .
ex:p rdfs:label "p label"@en ; a owl:ObjectProperty ; rdfs:domain ex:Thing ; rdfs:range ex:Thing .
ex:c owl:imports <http://127.0.0.1:9/never.ttl> ; rdfs:seeAlso ex:a ; ex:p ex:a .
"""


def snapshot(kg: KnowledgeGraph) -> dict:
    """Everything a KnowledgeGraph holds, comparable with ``==``."""
    return {
        "entities": [e.to_json() for e in kg.entities],
        "relations": list(kg.relations),
        "relation_labels": kg.relation_labels,
        "splits": {name: np.asarray(t).tolist() for name, t in kg.splits.items()},
        "metadata": kg.metadata,
    }


def keyed(kg: KnowledgeGraph) -> tuple:
    """The graph without its ids: entities by key, triples by keys."""
    triples = {(kg.entities[h].key, kg.relations[r], kg.entities[t].key) for h, r, t in kg.triples().tolist()}
    return sorted((e.key, str(e.to_json())) for e in kg.entities), triples, kg.metadata["counts"]


def assert_same(path_or_paths, mapping=None) -> KnowledgeGraph:
    fast = rdf.load(path_or_paths, mapping, parser="oxigraph")
    plain = rdf.load(path_or_paths, mapping, parser="rdflib")
    assert snapshot(fast) == snapshot(plain)
    assert snapshot(rdf.load(path_or_paths, mapping)) == snapshot(fast)  # auto
    return fast


@pytest.mark.parametrize("suffix", ["ttl", "nt", "nq", "trig", "rdf"])
def test_same_graph_for_each_format(suffix: str) -> None:
    kg = assert_same(DATA / f"medical.{suffix}")
    assert kg.num_entities == 5 and len(kg.triples()) == 4


def test_same_graph_rich_turtle_and_its_other_serializations(tmp_path: Path) -> None:
    import rdflib

    ttl = tmp_path / "rich.ttl"
    ttl.write_text(RICH_TTL, encoding="utf-8")
    kg = assert_same(ttl)
    assert kg.num_entities > 5 and kg.metadata["counts"]["statements"] == 29
    assert kg.entities[kg.entity_id("http://example.org/a")].labels == {
        "en": ['A "quoted" label'],
        "de": ["Drei Zeilen"],
    }
    graph = rdflib.Graph().parse(data=RICH_TTL, format="turtle")
    dataset = rdflib.Dataset()
    dataset.graph(rdflib.URIRef("http://example.org/g")).parse(data=RICH_TTL, format="turtle")
    for fmt, suffix in (("nt", "nt"), ("xml", "rdf"), ("trig", "trig"), ("nquads", "nq")):
        path = tmp_path / f"rich.{suffix}"
        source = dataset if suffix in ("trig", "nq") else graph
        path.write_text(source.serialize(format=fmt), encoding="utf-8")
        assert_same(path)
    with gzip.open(tmp_path / "rich.ttl.gz", "wb") as f:
        f.write(RICH_TTL.encode())
    assert (
        snapshot(rdf.load(tmp_path / "rich.ttl.gz", parser="oxigraph"))["entities"]
        == snapshot(kg)["entities"]
    )
    assert_same([tmp_path / "rich.nt", ttl, DATA / "medical.trig"], mapping={"type_as_relation": True})


def test_collections_same_graph_up_to_id_order(tmp_path: Path) -> None:
    """In an RDF collection oxigraph gives the statement holding the list before the list's rdf:rest statements,
    rdflib after them, so ids (first-seen order) may differ; the graph is the same."""
    ttl = tmp_path / "list.ttl"
    ttl.write_text("@prefix ex: <http://example.org/> .\nex:a ex:list ( ex:b ex:c ) ; ex:p ex:d .\n")
    fast, plain = rdf.load(ttl, parser="oxigraph"), rdf.load(ttl, parser="rdflib")
    assert keyed(fast) == keyed(plain)
    assert len(fast.triples()) == 6


def test_same_graph_benchmark_file(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("rdf_stream", REPO / "benchmarks" / "rdf_stream.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "bench.nt"
    bench.generate(path, 200_000, 5_000)  # more than one batch of relation statements
    kg = assert_same(path)
    assert kg.metadata["counts"]["relation"] == 200_000 - 5_000 * 3 - 500


def test_oxigraph_only_reads_its_formats() -> None:
    with pytest.raises(KgembError, match=r"parser='oxigraph' reads .*not json-ld; use parser='auto'"):
        rdf.load(DATA / "medical.jsonld", parser="oxigraph")
    with pytest.raises(KgembError, match="parser 'jena' is unknown"):
        rdf.load(DATA / "medical.ttl", parser="jena")


@pytest.mark.parametrize("parser", ["oxigraph", "rdflib"])
def test_owl_imports_are_never_fetched(tmp_path: Path, parser: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        ttl = tmp_path / "imports.ttl"
        ttl.write_text(
            "@prefix owl: <http://www.w3.org/2002/07/owl#> .\n"
            f"<http://x/o> owl:imports <http://127.0.0.1:{port}/other.ttl> .\n"
            f"<http://x/a> <http://x/p> <http://127.0.0.1:{port}/b> .\n"
        )
        xml = tmp_path / "imports.rdf"
        xml.write_text(
            f'<?xml version="1.0"?>\n<!DOCTYPE rdf:RDF SYSTEM "http://127.0.0.1:{port}/rdf.dtd">\n'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            'xmlns:owl="http://www.w3.org/2002/07/owl#" xmlns:x="http://x/">\n'
            f'<owl:Ontology rdf:about="http://x/o"><owl:imports rdf:resource="http://127.0.0.1:{port}/o.owl"/>'
            '</owl:Ontology>\n<rdf:Description rdf:about="http://x/a"><x:p rdf:resource="http://x/b"/>'
            "</rdf:Description>\n</rdf:RDF>\n"
        )
        assert len(rdf.load(ttl, parser=parser).triples()) == 1
        assert len(rdf.load(xml, parser=parser).triples()) == 1
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
