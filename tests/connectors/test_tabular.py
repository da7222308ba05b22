"""Triple tables: the WN18RR layout with texts, CSV quoting, PyKEEN's bundled datasets, and bad tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from kgemb.connectors import tabular

from kgemb import KgembError


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_folder_with_splits_texts_and_odd_names(tmp_path: Path) -> None:
    write(tmp_path, "train.txt", "fever\tsymptom of\tflu\ncough\tsymptom of\tflu\nfever\tsymptom of\tflu\n\n")
    write(tmp_path, "valid.txt", 'fever\t"quoted" rel\tcold\n')
    write(tmp_path, "test.txt", "cough\tsymptom of\tcold\r\n")
    write(
        tmp_path,
        "entity2text.tsv",
        "fever\tFever\tA body temperature above normal.\nflu\tInfluenza\nrash\tRash\n",
    )
    write(tmp_path, "entity2textlong.tsv", "flu\tA viral infection.\n")
    write(tmp_path, "relation2text.tsv", "symptom of\tis a symptom of\nunused\tnever used\n")
    kg = tabular.load(tmp_path)
    assert [e.key for e in kg.entities] == ["fever", "flu", "cough", "cold", "rash"]
    assert kg.relations == ["symptom of", '"quoted" rel']
    assert kg.triples("train").tolist() == [[0, 0, 1], [2, 0, 1]]
    assert kg.triples("valid").tolist() == [[0, 1, 3]]
    assert kg.triples("test").tolist() == [[2, 0, 3]]
    assert kg.metadata["duplicates_dropped"] == 1
    assert kg.entity_text(0) == "Fever: A body temperature above normal."
    assert kg.entity_text(1) == "Influenza: A viral infection."
    assert kg.entity_text(2) == "cough" and kg.no_text_count == 2
    assert kg.relation_text(0) == "is a symptom of"
    assert kg.relation_id('"quoted" rel') == 1
    assert kg.lookup("influenza") == [1]


def test_comma_separated_with_quoting(tmp_path: Path) -> None:
    write(tmp_path, "train.txt", 'a,"likes, a lot",b\n"c ""the"" d",likes,a\n')
    kg = tabular.load(tmp_path)
    assert kg.relations == ["likes, a lot", "likes"]
    assert [e.key for e in kg.entities] == ["a", "b", 'c "the" d']
    assert len(kg.triples("valid")) == 0


def test_single_file_and_label_separator(tmp_path: Path) -> None:
    write(tmp_path, "triples.tsv", "a\tr\tb\n")
    assert tabular.load(tmp_path / "triples.tsv").triples().tolist() == [[0, 0, 1]]
    write(tmp_path / "wn", "train.txt", "001\t_hypernym\t002\n")
    write(tmp_path / "wn", "entity2text.tsv", "001\tstool, solid excretory product\n002\tbody waste, waste\n")
    kg = tabular.load(tmp_path / "wn", label_separator=", ")
    assert kg.entity_text(0) == "stool: solid excretory product"
    assert kg.lookup("body waste") == [1]
    assert tabular.load(tmp_path / "wn").entity_text(0) == "stool, solid excretory product"


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("train.txt", "a\tr\tb\na\tr\n", r"train\.txt:2: expected 3 tab-separated columns .* found 2"),
        ("train.txt", "a\tr\tb\n\n\na\tr\tb\tc\n", r"train\.txt:4: expected 3"),
        ("train.txt", "a,r,b\na,,b\n", r"train\.txt:2: expected 3 comma-separated"),
        ("train.txt", "", r"train\.txt is empty"),
        ("train.txt", "\n  \n", r"train\.txt is empty"),
    ],
)
def test_bad_tables(tmp_path: Path, name: str, text: str, message: str) -> None:
    write(tmp_path, name, text)
    with pytest.raises(KgembError, match=message):
        tabular.load(tmp_path)


def test_not_utf8_and_missing(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_bytes(b"a\tr\tb\nc\xe9\tr\tb\n")
    with pytest.raises(KgembError, match=r"train\.txt:2: not UTF-8"):
        tabular.load(tmp_path)
    (tmp_path / "only_valid").mkdir()
    write(tmp_path / "only_valid", "valid.txt", "a\tr\tb\n")
    with pytest.raises(KgembError, match=r"has no train\.txt"):
        tabular.load(tmp_path / "only_valid")
    with pytest.raises(KgembError, match="neither a triple-table folder"):
        tabular.load(tmp_path / "missing")
    with pytest.raises(KgembError, match="pykeen:FB15k237 is not a bundled dataset"):
        tabular.load("pykeen:FB15k237")


def test_wn18rr_from_shared_data(shared_data: Path) -> None:
    kg = tabular.load(shared_data / "wn18rr")
    assert kg.num_entities == 40_943 and kg.num_relations == 11
    assert [len(kg.triples(s)) for s in ("train", "valid", "test")] == [86_835, 3_034, 3_134]
    assert kg.no_text_count == 0
    assert kg.relation_text(kg.relation_id("_hypernym")) == "hypernym"
    stool = kg.entity_id("14854262")
    assert kg.entity_text(stool) == "stool, solid excretory product evacuated from the bowels"


def test_pykeen_datasets(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pykeen.datasets

    monkeypatch.setenv("KGEMB_SHARED_DATA", str(shared_data))
    umls = tabular.load("pykeen:UMLS")
    reference = pykeen.datasets.UMLS()
    assert umls.num_entities == 135 and umls.num_relations == 46
    assert (
        umls.to_triples_factory("test").mapped_triples.tolist() == reference.testing.mapped_triples.tolist()
    )
    assert umls.to_triples_factory().entity_to_id == dict(reference.training.entity_to_id)
    assert umls.no_text_count == 0
    virus = umls.entity_id("virus")
    assert umls.entity_text(virus).startswith("virus: A virus is a small infectious agent")
    assert umls.relation_text(umls.relation_id("derivative_of")) == "derivative of"
    nations = tabular.load("pykeen:nations")
    assert (nations.num_entities, nations.num_relations, len(nations.triples("train"))) == (14, 55, 1592)
    monkeypatch.setenv("KGEMB_SHARED_DATA", str(shared_data / "nowhere"))
    kinships = tabular.load("pykeen:Kinships")
    assert kinships.num_entities == 104 and kinships.no_text_count == 104
