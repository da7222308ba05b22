"""Cross-lingual search without language bias, batched queries, and the cross-lingual adapter (align.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

# (English, Chinese) names of symptoms and diseases; the graph gives most of them a Chinese label, and a few
# entities (ENGLISH_ONLY) only their English one.
NAMES = [
    ("toothache", "牙痛"),
    ("stomach ache", "胃痛"),
    ("back pain", "背痛"),
    ("chest pain", "胸痛"),
    ("sore throat", "喉咙痛"),
    ("earache", "耳痛"),
    ("joint pain", "关节痛"),
    ("muscle pain", "肌肉痛"),
    ("fever", "发烧"),
    ("cough", "咳嗽"),
    ("nausea", "恶心"),
    ("vomiting", "呕吐"),
    ("diarrhea", "腹泻"),
    ("dizziness", "头晕"),
    ("fatigue", "疲劳"),
    ("insomnia", "失眠"),
    ("rash", "皮疹"),
    ("itching", "瘙痒"),
    ("runny nose", "流鼻涕"),
    ("sneezing", "打喷嚏"),
    ("shortness of breath", "呼吸急促"),
    ("chills", "发冷"),
    ("constipation", "便秘"),
    ("loss of appetite", "食欲不振"),
    ("influenza", "流感"),
    ("pneumonia", "肺炎"),
    ("diabetes", "糖尿病"),
    ("hypertension", "高血压"),
    ("asthma", "哮喘"),
    ("migraine", "偏头痛"),
    ("headache", "头痛"),
    ("eye pain", "眼睛痛"),
]
ENGLISH_ONLY = {"headache", "eye pain", "fatigue", "chills"}


def _graph(with_chinese: bool):
    from kgemb.graph import GraphBuilder

    builder = GraphBuilder()
    for en, zh in NAMES:
        key = en.replace(" ", "_")
        builder.add_label(key, en, "en")
        if with_chinese and en not in ENGLISH_ONLY:
            builder.add_label(key, zh, "zh")
    return builder.build()


@pytest.fixture(scope="module")
def encoder():
    import kgemb

    return kgemb.load_encoder("default")


def test_english_only_entity_is_found_from_its_chinese_name(encoder) -> None:
    from kgemb.reasoning.search import TextIndex

    kg = _graph(with_chinese=True)
    index = TextIndex.from_graph(kg, encoder)
    queries = [zh for en, zh in NAMES if en in ENGLISH_ONLY]
    targets = [kg.lookup(en)[0] for en, _ in NAMES if en in ENGLISH_ONLY]
    found = [hits[0][0] for hits in index.search_many(queries, k=1)]
    plain = TextIndex.from_graph(_graph(with_chinese=False), encoder)
    alone = [hits[0][0] for hits in plain.search_many(queries, k=1)]
    # no loss against a graph where no entity has a Chinese label, and headache itself is found
    assert sum(f == t for f, t in zip(found, targets, strict=True)) >= sum(
        a == t for a, t in zip(alone, targets, strict=True)
    )
    assert index.search("头痛", k=1)[0][0] == kg.lookup("headache")[0]
    # entities that do have the Chinese label are still found by it
    assert index.search("偏头痛", k=1)[0][0] == kg.lookup("migraine")[0]
    assert index.search("发烧", k=1)[0][0] == kg.lookup("fever")[0]
    # the previous rule (any view of any language counts as it is) loses headache to a Chinese "... pain"
    index.thresholds[:] = -1.0
    assert index.search("头痛", k=1)[0][0] != kg.lookup("headache")[0]


def test_search_many_equals_one_by_one(predictor) -> None:
    texts = ["发烧", "Lungenentzündung", "high blood sugar"]
    batched = predictor.search_many(texts, k=3)
    assert [[p.key for p in hits] for hits in batched] == [
        [p.key for p in predictor.search(t, k=3)] for t in texts
    ]


def test_cli_search_takes_several_texts(medical_model_dir: Path, capsys) -> None:
    from kgemb.cli import main

    assert main(["search", str(medical_model_dir), "发烧", "cough", "--k", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["text"] for r in rows] == ["发烧", "cough"]
    assert all(len(r["results"]) == 2 for r in rows)


def _pairs(encoder):
    left = encoder.encode([zh for _, zh in NAMES])
    right = encoder.encode([en for en, _ in NAMES])
    return left, right


def _margin(left: np.ndarray, right: np.ndarray) -> float:
    """Mean of (similarity to the translation - similarity to the closest other name)."""
    sims = left @ right.T
    pos = np.diag(sims).copy()
    np.fill_diagonal(sims, -np.inf)
    return float(np.mean(pos - sims.max(axis=1)))


def test_adapter_starts_as_identity_and_learns_the_pairs(encoder) -> None:
    from kgemb.encoders.align import Adapter, fit_adapter

    left, right = _pairs(encoder)
    assert np.allclose(Adapter(encoder.dim).apply(left), left, atol=1e-6)
    adapter = fit_adapter(left, right, epochs=30, batch_size=16, seed=0)
    a, b = adapter.apply(left), adapter.apply(right)
    print("margin raw", _margin(left, right), "adapted", _margin(a, b))
    assert (
        _margin(a, b) > _margin(left, right) + 0.05
    )  # each name moved closer to its translation than to others
    assert np.mean((a @ b.T).argmax(1) == np.arange(len(NAMES))) >= np.mean(
        (left @ right.T).argmax(1) == np.arange(len(NAMES))
    )


def test_adapter_round_trips_through_the_model_folder(encoder, medical_model_dir: Path, tmp_path) -> None:
    import kgemb
    from kgemb.encoders.align import ADAPTER_CONFIG, ADAPTER_WEIGHTS, fit_adapter, load_adapter

    left, right = _pairs(encoder)
    adapter = fit_adapter(left, right, epochs=3, batch_size=16, seed=1, info={"encoder": encoder.fingerprint})
    adapter.save(tmp_path)
    again = load_adapter(tmp_path)
    assert np.array_equal(again.apply(left), adapter.apply(left))
    assert again.info["encoder"] == encoder.fingerprint

    model = kgemb.load(medical_model_dir)
    model.features = model.features.with_adapter(adapter)
    out = tmp_path / "model"
    model.save(out)
    assert (out / ADAPTER_WEIGHTS).is_file() and (out / ADAPTER_CONFIG).is_file()
    loaded = kgemb.load(out)
    assert loaded.features.adapter is not None
    assert torch.equal(loaded.features.vectors, model.features.vectors)
    assert torch.equal(loaded.features.standardise(left), model.features.standardise(left))
    assert torch.equal(loaded.embed_texts(["头痛"]), model.embed_texts(["头痛"]))
    (out / ADAPTER_WEIGHTS).write_bytes(b"changed")
    with pytest.raises(kgemb.KgembError, match=r"adapter\.safetensors"):
        kgemb.load(out)


def test_default_encoder_says_plainly_it_has_no_int8() -> None:
    import kgemb
    from kgemb.errors import ConfigError

    with pytest.raises(ConfigError, match="fp32"):
        kgemb.load_encoder("default", dtype="int8")
    assert kgemb.load_encoder("default", dtype="fp32").dim == 512
