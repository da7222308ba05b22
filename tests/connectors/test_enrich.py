"""``kgemb enrich``: predicted links written back into RDF, reified with score and provenance or in a named graph,
the asserted statements unchanged, the same bytes on every run, resumable, and bad input refused cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kgemb.connectors import rdf
from kgemb.connectors.rdf_write import KGEMB
from rdflib import Dataset, Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import PROV, RDF, XSD

import kgemb
from kgemb.cli import main

KG = URIRef(KGEMB)
EX = "http://example.org/med/"
SYMPTOM_OF = EX + "symptomOf"
RUN_TIME = "2024-05-01T12:00:00Z"
KGEMB_CLI = str(Path(sys.executable).with_name("kgemb"))

# A small multilingual graph: symptoms, diseases, vectors; labels in English, German, Chinese, French.
MEDICAL_TTL = """\
@prefix ex: <http://example.org/med/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .

ex:Fever a ex:Symptom ; rdfs:label "Fever"@en, "Fieber"@de, "发烧"@zh ;
    rdfs:comment "A body temperature above \\"normal\\".\\nOften with chills."@en ;
    ex:symptomOf ex:Influenza, ex:Malaria, ex:Covid .
ex:Cough a ex:Symptom ; rdfs:label "Cough"@en, "Husten"@de, "咳嗽"@zh ; ex:symptomOf ex:Influenza, ex:Covid .
ex:Headache a ex:Symptom ; rdfs:label "Headache"@en, "Kopfschmerz"@de, "头痛"@zh ;
    ex:symptomOf ex:Influenza, ex:Migraine .
ex:Nausea a ex:Symptom ; rdfs:label "Nausea"@en, "Übelkeit"@de, "恶心"@zh ; ex:symptomOf ex:Migraine, ex:Malaria .
ex:Chills a ex:Symptom ; rdfs:label "Chills"@en, "Schüttelfrost"@de, "发冷"@zh ; ex:symptomOf ex:Malaria .
ex:Fatigue a ex:Symptom ; rdfs:label "Fatigue"@en, "Müdigkeit"@de, "疲劳"@zh ;
    ex:symptomOf ex:Covid, ex:Influenza, ex:Anemia .
ex:Pallor a ex:Symptom ; rdfs:label "Pallor"@en, "Blässe"@de ; ex:symptomOf ex:Anemia .
ex:Influenza a ex:Disease ; rdfs:label "Influenza"@en, "Grippe"@de, "流感"@zh ; ex:transmittedBy ex:Droplets .
ex:Covid a ex:Disease ; rdfs:label "COVID-19"@en, "新冠肺炎"@zh ; ex:transmittedBy ex:Droplets .
ex:Malaria a ex:Disease ; rdfs:label "Malaria"@en, "疟疾"@zh ; ex:transmittedBy ex:Mosquito .
ex:Migraine a ex:Disease ; rdfs:label "Migraine"@en, "Migräne"@de .
ex:Anemia a ex:Disease ; rdfs:label "Anemia"@en, "Anämie"@de ; skos:note [ rdfs:label "a blank node"@en ] .
ex:Droplets a ex:Vector ; rdfs:label "respiratory droplets"@en, "Tröpfchen"@de .
ex:Mosquito a ex:Vector ; rdfs:label "Anopheles mosquito"@en, "Mücke"@de, "蚊子"@zh .
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The input file and a small model trained on it (structure mode, a few epochs), saved in one folder."""
    folder = tmp_path_factory.mktemp("enrich")
    source = folder / "medical.ttl"
    source.write_text(MEDICAL_TTL, encoding="utf-8")
    kg = rdf.load(source).split(valid=0.15, test=0.0, seed=0)
    model = kgemb.train(kg, mode="structure", dim=16, epochs=20, seed=0, show_progress=False)
    model.save(folder / "model")
    return folder


def _enrich(data: Path, out: Path, **options: object) -> rdf.EnrichResult:
    options = {"relations": [SYMPTOM_OF], "k": 3, "run_time": RUN_TIME, **options}
    return rdf.enrich(data / "medical.ttl", out, model=data / "model", **options)  # type: ignore[arg-type]


def _cli(*args: str) -> tuple[int, str, str]:
    """``kgemb`` in this process: exit code, stdout, stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _predictions(g: Graph) -> list[dict]:
    rows = []
    for node in g.subjects(RDF.type, RDF.Statement):
        rows.append(
            {
                "s": g.value(node, RDF.subject),
                "p": g.value(node, RDF.predicate),
                "o": g.value(node, RDF.object),
                "score": g.value(node, KG + "score"),
                "rank": g.value(node, KG + "rank"),
                "run": g.value(node, PROV.wasGeneratedBy),
            }
        )
    return rows


def _without_kgemb(g: Graph) -> Graph:
    """The statements of ``g`` that are not kgemb's: no prediction node, run, prediction graph or embedding."""
    ours = {
        s for t in (RDF.Statement, PROV.Activity, KG + "PredictionGraph") for s in g.subjects(RDF.type, t)
    }
    rest = Graph()
    for s, p, o in g:
        if s not in ours and not str(p).startswith(KGEMB):
            rest.add((s, p, o))
    return rest


def test_every_prediction_reified_with_score_and_provenance(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "enriched.ttl"
    result = _enrich(data, out)
    assert result.complete and out.is_file()
    g = Graph().parse(out, format="turtle")
    asserted = Graph().parse(data / "medical.ttl", format="turtle")

    runs = list(g.subjects(RDF.type, PROV.Activity))
    assert len(runs) == 1
    run = runs[0]
    assert g.value(run, PROV.startedAtTime) == Literal(RUN_TIME, datatype=XSD.dateTime)
    assert g.value(run, PROV.endedAtTime) is not None
    assert len(str(g.value(run, KG + "modelFingerprint"))) == 16
    assert str(g.value(run, KG + "kgembVersion")) == kgemb.__version__

    predictions = _predictions(g)
    assert len(predictions) == result.predictions > 0
    per_subject: dict = {}
    for row in predictions:
        assert row["p"] == URIRef(SYMPTOM_OF)
        assert row["run"] == run
        assert row["score"].datatype == XSD.double and 0.0 <= row["score"].toPython() <= 1.0
        assert row["rank"].toPython() >= 1
        assert (row["s"], row["p"], row["o"]) not in asserted, "a prediction repeats an asserted link"
        assert row["s"] != row["o"]
        per_subject.setdefault(row["s"], []).append((row["rank"].toPython(), row["score"].toPython()))
        # the predicted triple itself is not asserted in reification mode
        assert (row["s"], row["p"], row["o"]) not in g
    for ranked in per_subject.values():
        ranked.sort()
        assert [r for r, _ in ranked] == list(range(1, len(ranked) + 1)) and len(ranked) <= 3
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    # subjects are the IRIs of the input, symptoms and diseases alike; the labels stay in every language
    assert isomorphic(_without_kgemb(g), asserted), "the asserted statements changed"
    assert (
        URIRef(EX + "Fever"),
        URIRef("http://www.w3.org/2000/01/rdf-schema#label"),
        Literal("发烧", lang="zh"),
    ) in g


def test_same_bytes_on_a_second_run_through_the_console_script(data: Path, tmp_path: Path) -> None:
    outputs = []
    for name in ("a.nt", "b.nt"):
        out = tmp_path / name
        done = subprocess.run(
            [KGEMB_CLI, "enrich", str(data / "medical.ttl"), "--model", str(data / "model"), "--relation",
             SYMPTOM_OF, "--k", "2", "--out", str(out), "--run-time", RUN_TIME, "--quiet"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "predictions" in done.stdout
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nt", "b.nt"], "work files were left behind"


def test_interrupted_then_resumed_equals_uninterrupted(data: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.trig"
    _enrich(data, whole, mode="named-graph", batch_size=4)
    out = tmp_path / "resumed.trig"
    first = _enrich(data, out, mode="named-graph", batch_size=4, checkpoint_every=4, stop_after=5)
    assert not first.complete and first.subjects_done == 8 < first.subjects
    assert not out.exists(), "an interrupted run left OUTPUT behind"
    # a crash after more predictions were written but before the next checkpoint: resume cuts them off
    work = tmp_path / ".resumed.trig.kgemb-enrich"
    with open(work / "predictions.part", "ab") as part:
        part.write(b"<half-written")
    second = _enrich(data, out, mode="named-graph", batch_size=4, resume=True)
    assert second.complete and second.resumed_from == 8
    assert out.read_bytes() == whole.read_bytes()
    assert not work.exists()


def test_named_graph_holds_predictions_with_provenance(data: Path, tmp_path: Path) -> None:
    for fmt in ("trig", "nq"):
        out = tmp_path / f"enriched.{fmt}"
        result = _enrich(data, out, mode="named-graph", with_embeddings=True)
        ds = Dataset()
        ds.parse(out, format="trig" if fmt == "trig" else "nquads")
        graphs = [g for g in ds.graphs() if str(g.identifier).startswith("urn:kgemb:graph:")]
        assert len(graphs) == 1
        predicted = graphs[0]
        run = ds.default_graph.value(predicted.identifier, PROV.wasGeneratedBy)
        assert (run, RDF.type, PROV.Activity) in ds.default_graph
        assert (predicted.identifier, RDF.type, KG + "PredictionGraph") in ds.default_graph
        rows = _predictions(predicted)
        assert len(rows) == result.predictions > 0
        for row in rows:
            assert (row["s"], row["p"], row["o"]) in predicted
            assert (row["s"], row["p"], row["o"]) not in ds.default_graph
        vectors = list(predicted.objects(None, KG + "embedding"))
        assert vectors and all(v.datatype == KG + "vector" and len(json.loads(str(v))) == 16 for v in vectors)
        asserted = Graph().parse(data / "medical.ttl", format="turtle")
        assert isomorphic(_without_kgemb(ds.default_graph), asserted)


def test_jsonld_only_predictions_and_subjects_of_a_class(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "symptoms.jsonld"
    result = _enrich(data, out, only_predictions=True, subjects_of=EX + "Symptom")
    assert result.statements_copied == 0
    g = Graph().parse(out, format="json-ld")
    rows = _predictions(g)
    assert rows and len(rows) == result.predictions
    symptoms = {"Fever", "Cough", "Headache", "Nausea", "Chills", "Fatigue", "Pallor"}
    assert {str(r["s"]).rsplit("/", 1)[1] for r in rows} <= symptoms
    assert not list(g.triples((None, URIRef("http://www.w3.org/2000/01/rdf-schema#label"), None)))


def test_streamed_ntriples_input_and_in_place(data: Path, tmp_path: Path) -> None:
    source = tmp_path / "medical.nt"
    Graph().parse(data / "medical.ttl", format="turtle").serialize(source, format="nt", encoding="utf-8")
    before = source.read_bytes()
    code, _, err = _cli("enrich", str(source), "--model", str(data / "model"), "--relation", SYMPTOM_OF,
                        "--out", str(source), "--quiet")  # fmt: skip
    assert code == 2 and "--in-place" in err and source.read_bytes() == before
    code, _, err = _cli("enrich", str(source), "--model", str(data / "model"), "--relation", "symptom of",
                        "--in-place", "--run-time", RUN_TIME, "--quiet")  # fmt: skip
    assert code == 0, err
    lines = source.read_text(encoding="utf-8").splitlines()
    # lines without blank nodes come through byte for byte; blank nodes are renamed _:b0, _:b1... (as rdf.load does)
    assert {line for line in before.decode("utf-8").splitlines() if "_:" not in line} <= set(lines)
    assert any(line.startswith("_:b0 ") for line in lines)
    assert any(line.endswith(f"<{RDF.Statement}> .") for line in lines)
    g = Graph().parse(source, format="nt")
    assert isomorphic(_without_kgemb(g), Graph().parse(data / "medical.ttl", format="turtle"))


BAD_NT = """\
<http://example.org/med/Fever> <http://example.org/med/symptomOf> <http://example.org/med/Influenza> .
<http://example.org/med/Cough> <http://example.org/med/symptomOf> "unclosed .
"""


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("malformed", "bad.nt:2:"),
        ("relation", "it knows: http://example.org/med/symptomOf"),
        ("unwritable", "cannot write OUTPUT"),
        ("k", "--k must be a positive number"),
        ("format", "unknown output format 'rdfxml'"),
        ("named-graph-ttl", "--as named-graph needs"),
        ("strangers", "no entity of"),
    ],
)
def test_bad_input_exit_2_one_line_no_output(data: Path, tmp_path: Path, case: str, expected: str) -> None:
    source = data / "medical.ttl"
    out = tmp_path / "out.ttl"
    extra: list[str] = []
    relation = SYMPTOM_OF
    if case == "malformed":
        source = tmp_path / "bad.nt"
        source.write_text(BAD_NT, encoding="utf-8")
    elif case == "relation":
        relation = EX + "causes"
    elif case == "unwritable":
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        out = blocker / "out.ttl"
    elif case == "k":
        extra = ["--k", "0"]
    elif case == "format":
        extra = ["--format", "rdfxml"]
    elif case == "strangers":
        source = tmp_path / "other.nt"
        source.write_text(
            "<http://other.org/a> <http://other.org/p> <http://other.org/b> .\n", encoding="utf-8"
        )
    else:
        extra = ["--as", "named-graph"]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = _cli("enrich", str(source), "--model", str(data / "model"), "--relation", relation,
                             "--out", str(out), "--quiet", *extra)  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("kgemb: error:"), err
    assert expected in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "files were left behind"


@pytest.mark.parametrize("fmt", ["ttl", "trig", "jsonld"])
@pytest.mark.parametrize("shards", [2, 3])
def test_shards_merged_are_the_bytes_of_one_run(data: Path, tmp_path: Path, shards: int, fmt: str) -> None:
    mode = "named-graph" if fmt == "trig" else "reification"
    whole = tmp_path / f"whole.{fmt}"
    one = _enrich(data, whole, mode=mode, batch_size=2, with_embeddings=fmt == "ttl")
    out = tmp_path / f"merged.{fmt}"
    done = [
        _enrich(data, out, mode=mode, batch_size=2, with_embeddings=fmt == "ttl", shard=f"{i}/{shards}")
        for i in reversed(range(shards))  # any order, any machine
    ]
    assert sum(r.subjects for r in done) == one.subjects and all(r.subjects for r in done)
    assert not out.exists()
    from kgemb.connectors import rdf_shards

    merged = rdf_shards.merge(data / "medical.ttl", out)
    assert merged.predictions == one.predictions
    assert out.read_bytes() == whole.read_bytes()


def test_shards_through_the_command_line_and_refusals(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.nt"
    base = ["enrich", str(data / "medical.ttl"), "--model", str(data / "model"), "--relation", SYMPTOM_OF,
            "--k", "2", "--quiet"]  # fmt: skip
    code, _, err = _cli(*base, "--out", str(out), "--shard", "0/2")
    assert code == 2 and "--run-time" in err  # every shard must name the same run
    code, _, err = _cli(*base, "--out", str(out), "--shard", "2/2", "--run-time", RUN_TIME)
    assert code == 2 and "--shard" in err
    code, _, err = _cli(*base, "--out", str(out), "--shard", "1/2", "--run-time", RUN_TIME)
    assert code == 0, err
    code, _, err = _cli("enrich", str(data / "medical.ttl"), "--out", str(out), "--merge")
    assert code == 2 and "0/2" in err and "not done" in err and not out.exists()
    assert _cli(*base, "--out", str(out), "--shard", "0/2", "--run-time", RUN_TIME)[0] == 0
    code, _stdout, err = _cli("enrich", str(data / "medical.ttl"), "--out", str(out), "--merge")
    assert code == 0, err
    whole = tmp_path / "whole.nt"
    assert _cli(*base, "--out", str(whole), "--run-time", RUN_TIME)[0] == 0
    assert out.read_bytes() == whole.read_bytes()
    (tmp_path / "out.nt.shard-1-of-2").write_bytes(b"changed")
    code, _, err = _cli("enrich", str(data / "medical.ttl"), "--out", str(out), "--merge")
    assert code == 2 and "changed" in err
