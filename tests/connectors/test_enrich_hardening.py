"""``kgemb enrich`` under careless or hostile use: one run per OUTPUT (a lock), no device or FIFO replaced, output
that follows the umask, the same bytes from two identical trainings, and predictions only for subjects whose type
the relation takes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from kgemb.connectors import rdf
from rdflib import Graph, URIRef
from rdflib.namespace import RDF

import kgemb

from .test_enrich import EX, MEDICAL_TTL, RUN_TIME, SYMPTOM_OF, _cli, _predictions

KGEMB_CLI = str(Path(sys.executable).with_name("kgemb"))
# the same graph, with the relation's domain declared (the case: symptoms must not get symptomOf's inverse)
HAS_SYMPTOM_TTL = (
    MEDICAL_TTL
    + """
ex:hasSymptom rdfs:domain ex:Disease ; rdfs:range ex:Symptom .
ex:Influenza ex:hasSymptom ex:Fever, ex:Cough, ex:Headache, ex:Fatigue .
ex:Covid ex:hasSymptom ex:Fever, ex:Cough, ex:Fatigue .
ex:Malaria ex:hasSymptom ex:Fever, ex:Chills, ex:Nausea .
ex:Migraine ex:hasSymptom ex:Headache, ex:Nausea .
"""
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("enrich-hard")
    source = folder / "medical.ttl"
    source.write_text(HAS_SYMPTOM_TTL, encoding="utf-8")
    kg = rdf.load(source).split(valid=0.15, test=0.0, seed=0)
    kgemb.train(kg, mode="structure", dim=16, epochs=20, seed=0, show_progress=False).save(folder / "model")
    return folder


def _args(data: Path, out: Path, *extra: str, relation: str = SYMPTOM_OF) -> list[str]:
    return ["enrich", str(data / "medical.ttl"), "--model", str(data / "model"), "--relation", relation,
            "--out", str(out), "--k", "3", "--run-time", RUN_TIME, "--quiet", *extra]  # fmt: skip


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(data: Path, tmp_path: Path) -> None:
    from kgemb.files import locked

    out = tmp_path / "out.ttl"
    with locked(out, "OUTPUT"):  # the first run, holding OUTPUT
        code, _, err = _cli(*_args(data, out))
    assert code == 2, err
    assert "in use by another kgemb run" in err and f"process {os.getpid()}" in err
    assert not out.exists()
    code, _, err = _cli(*_args(data, out))  # the lock is gone with its holder
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ttl"], "lock or work files left behind"


def test_concurrent_runs_never_report_success_over_an_incomplete_file(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.ttl"
    reference = tmp_path / "ref.ttl"
    assert _cli(*_args(data, reference))[0] == 0
    runs = [subprocess.Popen([KGEMB_CLI, *_args(data, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(3)]  # fmt: skip
    results = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    assert all(code in (0, 2) for code, _ in results), results
    assert any(code == 0 for code, _ in results), results
    assert all("Traceback" not in err for _, err in results), results
    assert out.read_bytes() == reference.read_bytes()


def test_a_fifo_as_output_is_refused_not_replaced(data: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.ttl"
    os.mkfifo(fifo)
    code, _, err = _cli(*_args(data, fifo))
    assert code == 2 and "not a regular file" in err, err
    assert stat.S_ISFIFO(fifo.lstat().st_mode), "the FIFO was replaced"


def test_output_follows_the_umask(data: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert _cli(*_args(data, tmp_path / "out.ttl"))[0] == 0
        assert _cli("train", str(data / "medical.ttl"), "--out", str(tmp_path / "m"), "--mode", "structure",
                    "--dim", "8", "--epochs", "2", "--quiet")[0] == 0  # fmt: skip
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.ttl").stat().st_mode) == 0o644
    for name in ("config.json", "weights.safetensors", "graph/graph.json"):
        assert stat.S_IMODE((tmp_path / "m" / name).stat().st_mode) == 0o644, name


def test_two_identical_trainings_enrich_to_the_same_bytes(data: Path, tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.ttl"
        code, _, err = _cli("enrich", str(data / "medical.ttl"), "--train", "--relation", SYMPTOM_OF,
                            "--out", str(out), "--k", "3", "--run-time", RUN_TIME, "--quiet", "--mode", "structure",
                            "--dim", "16", "--epochs", "5", "--seed", "3")  # fmt: skip
        assert code == 0, err
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_subjects_of_the_wrong_type_get_no_predictions(data: Path, tmp_path: Path) -> None:
    g = Graph().parse(data=HAS_SYMPTOM_TTL, format="turtle")
    diseases = set(g.subjects(RDF.type, URIRef(EX + "Disease")))
    symptoms = set(g.subjects(RDF.type, URIRef(EX + "Symptom")))
    # hasSymptom declares its domain and range; symptomOf's are learned from the types seen in training
    for relation, wrong, wrong_objects in (
        (EX + "hasSymptom", symptoms, diseases),
        (SYMPTOM_OF, diseases, symptoms),
    ):
        out = tmp_path / "typed.ttl"
        assert _cli(*_args(data, out, relation=relation))[0] == 0
        found = _predictions(Graph().parse(out))
        assert found, f"no predictions for {relation}"
        assert not [p for p in found if p["s"] in wrong], f"{relation}: subjects of the wrong type"
        assert not [p for p in found if p["o"] in wrong_objects], f"{relation}: objects of the wrong type"
        loose = tmp_path / "loose.ttl"
        assert _cli(*_args(data, loose, "--constraints", "none", relation=relation))[0] == 0
        assert [p for p in _predictions(Graph().parse(loose)) if p["s"] in wrong], (
            "the option does not turn it off"
        )
