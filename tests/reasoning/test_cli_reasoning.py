"""`kgemb predict | rank | search | explain` on a saved model directory: JSON and tables, errors as exit 2."""

from __future__ import annotations

import json

import pytest

from kgemb.cli import main

MED = "http://example.org/med/"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_tails_and_heads_as_json(capsys, medical_model_dir) -> None:
    code, out, _ = run(
        capsys,
        "predict",
        str(medical_model_dir),
        "--head",
        "influenza",
        "--relation",
        "has_symptom",
        "--k",
        "3",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert [d["rank"] for d in doc] == [1, 2, 3]
    assert all(set(d) == {"key", "label", "score", "rank"} and 0 <= d["score"] <= 1 for d in doc)
    code, out, _ = run(
        capsys,
        "predict",
        str(medical_model_dir),
        "--tail",
        "发烧",
        "--relation",
        "has symptom",
        "--k",
        "2",
        "--keep-known",
        "--json",
    )
    assert code == 0 and len(json.loads(out)) == 2


def test_predict_table(capsys, medical_model_dir) -> None:
    code, out, _ = run(
        capsys,
        "predict",
        str(medical_model_dir),
        "--head",
        "measles",
        "--relation",
        "has_symptom",
        "--k",
        "2",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "measles -[has_symptom]-> ?" and lines[1].split()[:3] == ["rank", "score", "label"]
    assert len(lines) == 4


def test_rank_with_repeated_and_comma_separated_evidence(capsys, medical_model_dir) -> None:
    for evidence in (
        ["--evidence", "发烧", "--evidence", "皮疹", "--evidence", "red eyes"],
        ["--evidence", "fever,rash,red eyes"],
    ):
        code, out, _ = run(
            capsys,
            "rank",
            str(medical_model_dir),
            "--relation",
            "has_symptom",
            *evidence,
            "--k",
            "3",
            "--json",
        )
        assert code == 0
        doc = json.loads(out)
        assert doc[0]["key"] == MED + "measles" and len(doc[0]["contributions"]) == 3
        assert all(c["known"] for c in doc[0]["contributions"])
    code, out, _ = run(
        capsys,
        "rank",
        str(medical_model_dir),
        "--relation",
        "has_symptom",
        "--evidence",
        "fever,rash,red eyes",
    )
    assert code == 0 and "measles" in out.splitlines()[2] and "evidence" in out.splitlines()[1]


def test_search_and_explain(capsys, medical_model_dir) -> None:
    code, out, _ = run(capsys, "search", str(medical_model_dir), "Lungenentzündung", "--k", "2", "--json")
    assert code == 0 and json.loads(out)[0]["key"] == MED + "pneumonia"
    code, out, _ = run(
        capsys,
        "explain",
        str(medical_model_dir),
        "--head",
        "measles",
        "--relation",
        "has_symptom",
        "--tail",
        "fever",
    )
    assert code == 0 and "supporting paths" in out and "this link is already in the graph" in out
    assert "strongest predicted link instead" in out
    code, out, _ = run(
        capsys,
        "explain",
        str(medical_model_dir),
        "--head",
        "measles",
        "--relation",
        "has_symptom",
        "--tail",
        "fever",
        "--json",
    )
    assert code == 0 and json.loads(out)["known"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "{dir}", "--head", "influenza", "--relation", "treats"], "unknown relation 'treats'"),
        (
            ["predict", "{dir}", "--head", "influenza", "--relation", "has_symptom", "--k", "0"],
            "k must be a positive",
        ),
        (
            ["predict", "{dir}", "--head", "a", "--tail", "b", "--relation", "has_symptom"],
            "exactly one of --head",
        ),
        (["predict", "{dir}", "--head", "no such disease", "--relation", "has_symptom"], "closest by text"),
        (["rank", "{dir}", "--relation", "has_symptom", "--evidence", "influenza"], "cannot be the tail"),
        (["search", "{tmp}", "fever"], "not a kgemb model directory"),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, medical_model_dir, tmp_path, args, message) -> None:
    argv = [a.format(dir=medical_model_dir, tmp=tmp_path) for a in args]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("kgemb: error: ") and message in err and err.count("\n") == 1


def test_evaluate_reports_calibration(capsys, medical_model_dir) -> None:
    code, out, _ = run(capsys, "evaluate", str(medical_model_dir), "--json")
    assert code == 0
    doc = json.loads(out)
    assert {"mrr", "hits@1", "hits@3", "hits@10", "n", "brier", "ece"} <= set(doc)
    assert 0.0 <= doc["brier"] <= 0.3 and 0.0 <= doc["ece"] <= 0.5  # tiny model: sane, not sharp
