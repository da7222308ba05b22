"""RDF reader: every serialization, folders and gzip, the mapping file, safety (no network, no XML entity attacks)
and every kind of bad input, on small files written for these tests."""

from __future__ import annotations

import functools
import gzip
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kgemb.connectors import rdf
from kgemb.connectors._rdf_safe import NetworkRefused, no_network

from kgemb import KgembError, KnowledgeGraph

DATA = Path(__file__).parent / "data" / "rdf"
EX = "http://example.org/med/"
FORMATS = ["ttl", "nt", "nq", "trig", "rdf", "jsonld"]
LOAD = rdf.load


@pytest.fixture(params=["auto", "rdflib"], autouse=True)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with each parser: "auto" is pyoxigraph for Turtle, N-Triples, N-Quads, TriG and
    RDF/XML (rdflib for JSON-LD), "rdflib" the pure-Python readers."""
    monkeypatch.setattr(rdf, "load", functools.partial(LOAD, parser=request.param))
    return request.param


def keyed_triples(kg: KnowledgeGraph, split: str = "train") -> set[tuple[str, str, str]]:
    return {
        (kg.entities[h].key, kg.relations[r], kg.entities[t].key) for h, r, t in kg.triples(split).tolist()
    }


def assert_medical(kg: KnowledgeGraph) -> None:
    """The graph of data/rdf/medical.*, whatever the serialization."""
    assert {e.key for e in kg.entities} == {EX + k for k in ("Fever", "Cough", "Influenza", "Malaria")} | {
        EX + "Anopheles_mosquito"
    }  # the ontology, the class and the property are no entities
    assert keyed_triples(kg) == {
        (EX + "Fever", EX + "symptomOf", EX + "Influenza"),
        (EX + "Fever", EX + "symptomOf", EX + "Malaria"),
        (EX + "Cough", EX + "symptomOf", EX + "Influenza"),
        (EX + "Malaria", EX + "transmittedBy", EX + "Anopheles_mosquito"),
    }
    fever = kg.entities[kg.entity_id(EX + "Fever")]
    assert fever.labels == {
        "en": ["Fever"],
        "zh": ["发烧"],
        "de": ["Fieber"],
        "fr": ["Fièvre"],
        "es": ["Fiebre"],
    }
    assert fever.aliases == {"en": ["pyrexia"]}
    assert fever.types == [EX + "Symptom"]
    flu = kg.entity_id(EX + "Influenza")
    assert kg.entity_text(flu) == "Influenza: A viral infection of the respiratory tract."
    assert kg.label(flu, ["zh"]) == "流感"
    assert kg.entities[flu].attributes == {EX + "icd10": ["J11"]}
    assert kg.entity_text(kg.entity_id(EX + "Malaria")) == "Malaria: A disease spread by mosquitoes."
    assert kg.lookup("发烧") == kg.lookup("fieber") == kg.lookup("Pyrexia") == [kg.entity_id(EX + "Fever")]
    assert kg.lookup("grippe") == [flu]
    assert kg.no_text_count == 1
    assert kg.entity_text(kg.entity_id(EX + "Anopheles_mosquito")) == "Anopheles mosquito"
    symptom_of = kg.relation_id("Symptom von")
    assert kg.relations[symptom_of] == EX + "symptomOf" and kg.relation_text(symptom_of) == "symptom of"
    assert kg.metadata["domain_range"] == {
        EX + "symptomOf": {"domain": [EX + "Symptom"], "range": [EX + "Disease"]}
    }


@pytest.mark.parametrize("suffix", FORMATS)
def test_each_format(suffix: str) -> None:
    kg = rdf.load(DATA / f"medical.{suffix}")
    assert_medical(kg)
    assert kg.metadata["files"][0]["statements"] == 36


def test_folder_gzip_and_lists(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with gzip.open(tmp_path / "sub" / "medical.ttl.gz", "wb") as f:
        f.write((DATA / "medical.ttl").read_bytes())
    with gzip.open(tmp_path / "medical.nt.gz", "wb") as f:
        f.write((DATA / "medical.nt").read_bytes())
    (tmp_path / "notes.txt").write_text("not RDF, skipped")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "bad.ttl").write_text("this is not turtle")
    kg = rdf.load(tmp_path)
    assert_medical(kg)
    assert [Path(f["path"]).name for f in kg.metadata["files"]] == ["medical.nt.gz", "medical.ttl.gz"]
    assert kg.metadata["duplicates_dropped"] == 4  # the second file repeats every relation triple
    assert_medical(rdf.load([DATA / "medical.trig", DATA / "medical.jsonld"]))


def test_ids_do_not_depend_on_string_hashing(tmp_path: Path) -> None:
    code = (
        "import sys; from kgemb.connectors import rdf; kg = rdf.load(sys.argv[1]); "
        "print([e.key for e in kg.entities], kg.relations, kg.triples().tolist(), kg.entities[0].labels)"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code, str(DATA / "medical.ttl")],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    kg = rdf.load(DATA / "medical.ttl")
    assert [e.key for e in kg.entities][:2] == [EX + "Fever", EX + "Influenza"]  # first seen in file order


def test_ntriples_escapes_bnodes_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "esc.nt"
    path.write_text(
        "# a comment\n"
        "\n"
        '<http://x/a> <http://www.w3.org/2000/01/rdf-schema#label> "caf\\u00E9 \\"bar\\"\\n"@fr-CA .\n'
        "<http://x/a> <http://x/has%20part> _:n1 .\n"
        '_:n1 <http://www.w3.org/2000/01/rdf-schema#label> "Teil"@de . # trailing comment\n'
        "_:n1 <http://x/p> <http://x/b>.\n"
        '<http://x/b> <http://x/count> "3"^^<http://www.w3.org/2001/XMLSchema#integer> .\n',
        encoding="utf-8",
    )
    kg = rdf.load(path)
    a = kg.entity_id("http://x/a")
    assert kg.entities[a].labels == {"fr-ca": ['café "bar"']}
    assert kg.label(a, ["fr"]) == 'café "bar"'
    assert kg.lookup("teil") == [kg.entity_id("_:b0")]
    assert kg.relations == ["http://x/has%20part", "http://x/p"]
    assert kg.relation_text(0) == "has part"
    assert kg.entities[kg.entity_id("http://x/b")].attributes == {"http://x/count": ["3"]}


MAPPING_YAML = """
prefixes:
  ex: http://example.org/med/
relations: [ex:symptomOf]
text:
  rdfs:comment: none
  ex:icd10: alias
entity_classes: [ex:Symptom, ex:Disease]
type_as_relation: true
attributes: skip
"""


def test_mapping_file_yaml_and_toml(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MAPPING_YAML)
    (tmp_path / "m.toml").write_text(
        'relations = ["ex:symptomOf"]\n'
        'entity_classes = ["ex:Symptom", "ex:Disease"]\n'
        "type_as_relation = true\n"
        'attributes = "skip"\n'
        "[prefixes]\nex = 'http://example.org/med/'\n"
        "[text]\n'rdfs:comment' = 'none'\n'ex:icd10' = 'alias'\n"
    )
    for mapping in (tmp_path / "m.yaml", tmp_path / "m.toml"):
        kg = rdf.load(DATA / "medical.ttl", mapping=mapping)
        rdf_type = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
        assert kg.relations == [rdf_type, EX + "symptomOf"]
        # the classes became entities through rdf:type triples, and only typed instances are kept
        assert {e.key for e in kg.entities} == {EX + k for k in ("Fever", "Cough", "Influenza", "Malaria")}
        assert (EX + "Fever", EX + "symptomOf", EX + "Influenza") in keyed_triples(kg)
        assert all(r != EX + "transmittedBy" for _, r, _ in keyed_triples(kg))
        fever = kg.entities[kg.entity_id(EX + "Fever")]
        assert fever.descriptions == {}
        flu = kg.entities[kg.entity_id(EX + "Influenza")]
        assert flu.aliases == {"": ["J11"]} and flu.attributes == {}
        assert kg.metadata["mapping"] == str(mapping)


def test_mapping_errors_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(KgembError, match="unknown setting"):
        rdf.load(DATA / "medical.ttl", mapping={"relation": ["x"]})
    with pytest.raises(KgembError, match="text kind 'title'"):
        rdf.load(DATA / "medical.ttl", mapping={"text": {"rdfs:label": "title"}})
    with pytest.raises(KgembError, match="neither an IRI nor a known prefix"):
        rdf.load(DATA / "medical.ttl", mapping={"relations": ["symptomOf"]})
    bad = tmp_path / "m.yaml"
    bad.write_text("relations: [unclosed\n")
    with pytest.raises(KgembError, match=r"m\.yaml cannot be read"):
        rdf.load(DATA / "medical.ttl", mapping=bad)


# ---------------------------------------------------------------------------------------------- safety
def test_no_network_guard_blocks_url_opens() -> None:
    with no_network(), pytest.raises(NetworkRefused):
        urllib.request.urlopen("http://127.0.0.1:9/ontology.owl", timeout=1)


def test_remote_jsonld_contexts_are_refused(tmp_path: Path) -> None:
    for i, doc in enumerate(
        (
            '{"@context": "http://127.0.0.1:9/context.jsonld", "@id": "http://x/a", "name": "A"}',
            '{"@context": ["https://schema.org/", {"x": "http://x/"}], "@id": "x:a"}',
            '{"@context": {"@import": "http://127.0.0.1:9/c.jsonld"}, "@id": "http://x/a"}',
            '{"@graph": [{"@context": "local-context.jsonld", "@id": "http://x/a"}]}',
        )
    ):
        path = tmp_path / f"remote{i}.jsonld"
        path.write_text(doc)
        start = time.perf_counter()
        with pytest.raises(KgembError, match="never fetches contexts"):
            rdf.load(path)
        assert time.perf_counter() - start < 2


XXE = """<?xml version="1.0"?>
<!DOCTYPE rdf:RDF [ <!ENTITY secret SYSTEM "{target}"> ]>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns:rdfs="http://www.w3.org/2000/01/rdf-schema#">
  <rdf:Description rdf:about="http://x/a"><rdfs:label>&secret;</rdfs:label></rdf:Description>
</rdf:RDF>
"""

LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE rdf:RDF [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n"
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
    'xmlns:rdfs="http://www.w3.org/2000/01/rdf-schema#">\n'
    '  <rdf:Description rdf:about="http://x/a"><rdfs:label>&lol9;</rdfs:label></rdf:Description>\n</rdf:RDF>\n'
)


@pytest.mark.parametrize(
    "name, text",
    [
        ("xxe_file.rdf", XXE.format(target="file:///etc/passwd")),
        ("xxe_http.rdf", XXE.format(target="http://127.0.0.1:9/secret")),
        (
            "xxe_param.rdf",
            XXE.replace(
                "<!ENTITY secret", '<!ENTITY % p SYSTEM "http://127.0.0.1:9/x"> <!ENTITY secret'
            ).format(target="file:///etc/hostname"),
        ),
        ("laughs.rdf", LAUGHS),
    ],
)
def test_xml_entity_attacks_are_refused_quickly(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(KgembError, match=rf"{name}:\d+: .*(external|parameter|other entities).*refused"):
        rdf.load(path)
    assert time.perf_counter() - start < 2


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "name, text, where",
    [
        (
            "bad.nt",
            '<http://x/a> <http://x/p> <http://x/b> .\n<http://x/a> <http://x/p> "open .\n',
            r"bad\.nt:2:27:",
        ),
        ("bad2.nt", "<http://x/a> <http://x/p> <http://x/b>\n", r"bad2\.nt:1:39: .*expected '\.'"),
        ("graph.nt", "<http://x/a> <http://x/p> <http://x/b> <http://x/g> .\n", r"graph\.nt:1:40:"),
        ("bad.nq", "<http://x/a> http://x/p <http://x/b> .\n", r"bad\.nq:1:14: .*predicate"),
        (
            "bad.ttl",
            "@prefix ex: <http://x/> .\nex:a ex:p ex:b .\nex:a ex:p .\n",
            r"bad\.ttl:3:\d+: malformed turtle",
        ),
        (
            "bad.trig",
            "@prefix ex: <http://x/> .\nex:g {\n ex:a ex:p ex:b .\n",
            r"bad\.trig:\d+:\d+: malformed trig",
        ),
        (
            "bad.rdf",
            '<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="x">\n<a></b>\n</rdf:RDF>',
            r"bad\.rdf:3:\d+: malformed",
        ),
        ("bad.jsonld", '{"@id": "http://x/a",\n "p": [1, }', r"bad\.jsonld:2:\d+: malformed JSON"),
    ],
)
def test_malformed_files_name_file_line_and_column(tmp_path: Path, name: str, text: str, where: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(KgembError, match=where):
        rdf.load(path)


@pytest.mark.parametrize("suffix", ["nt", "ttl"])
def test_not_utf8(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"latin1.{suffix}"
    path.write_bytes(
        b'<http://x/a> <http://x/p> <http://x/b> .\n<http://x/a> <http://www.w3.org/2000/01/rdf-schema#label> "caf\xe9" .\n'
    )
    with pytest.raises(KgembError, match=rf"latin1\.{suffix}:2:.*not UTF-8"):
        rdf.load(path)


def test_empty_and_literal_only_files(tmp_path: Path) -> None:
    (tmp_path / "empty.ttl").write_text("")
    (tmp_path / "comments.nt").write_text("# nothing here\n\n")
    for name in ("empty.ttl", "comments.nt"):
        with pytest.raises(KgembError, match=rf"{name} is empty"):
            rdf.load(tmp_path / name)
    literals = tmp_path / "literals.ttl"
    literals.write_text(
        '@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n<http://x/a> rdfs:label "A"@en, "Ä"@de .\n'
    )
    with pytest.raises(KgembError, match=r"no statement links two resources.*2 texts"):
        rdf.load(literals)


def test_paths_that_are_not_rdf(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b,c\n")
    with pytest.raises(KgembError, match="unknown RDF file suffix"):
        rdf.load(tmp_path / "data.csv")
    with pytest.raises(KgembError, match="does not exist"):
        rdf.load(tmp_path / "missing.ttl")
    with pytest.raises(KgembError, match="holds no RDF file"):
        rdf.load(tmp_path)
    broken = tmp_path / "broken.nt.gz"
    broken.write_bytes(gzip.compress((DATA / "medical.nt").read_bytes())[:200])
    with pytest.raises(KgembError, match=r"broken\.nt\.gz: .*gzip"):
        rdf.load(broken)


def test_streaming_benchmark_file_loads(tmp_path: Path) -> None:
    """The generator of benchmarks/rdf_stream.py writes what the reader expects (kept runnable, at a small size)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "rdf_stream", Path(__file__).resolve().parents[2] / "benchmarks" / "rdf_stream.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "bench.nt"
    bench.generate(path, 20_000, 1_000)
    kg = rdf.load(path)
    counts = kg.metadata["counts"]
    assert counts["statements"] == 20_000 and kg.num_entities == 1_000
    assert counts["text"] == 2_100 and counts["type"] == 1_000 and counts["relation"] == 16_900
    assert kg.entities[3].labels == {"en": ["entity 3"], "de": ['Entität 3 "3"']}
    assert len(kg.triples()) + kg.metadata["duplicates_dropped"] == 16_900
