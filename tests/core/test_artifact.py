"""Model directories: save/load scores identically, checksums catch tampering, CLI train and evaluate."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kgemb
from kgemb.encoders import TextEncoder
from kgemb.errors import KgembError

KGEMB = str(Path(sys.executable).with_name("kgemb"))
FAST = dict(dim=16, epochs=8, batch_size=16, lr=0.02, show_progress=False, seed=0)


class OtherEncoder(TextEncoder):
    """A different (deterministic, hash-based) encoder: its fingerprint differs from the training encoder's."""

    dim = 512
    fingerprint = "test-other-encoder"

    def __init__(self) -> None:
        super().__init__(cache=False)

    def _encode_texts(self, texts, role, batch_size, progress):
        progress(len(texts))
        rng = [np.random.default_rng(abs(hash(t)) % 2**32) for t in texts]
        return np.stack([r.standard_normal(self.dim).astype(np.float32) for r in rng]), 0


@pytest.fixture(scope="module")
def saved(tiny_split, default_encoder, tmp_path_factory):
    model = kgemb.train(tiny_split, encoder=default_encoder, mode="fused", interaction="rotate", **FAST)
    out = tmp_path_factory.mktemp("model")
    model.save(out)
    return model, out


def test_loaded_model_scores_exactly_as_before(saved):
    model, out = saved
    loaded = kgemb.load(out)
    triples = model.kg.triples("train")
    np.testing.assert_array_equal(loaded.score_hrt(triples), model.score_hrt(triples))
    assert torch.equal(loaded.score_tails([0, 1, 2], [0, 1, 2]), model.score_tails([0, 1, 2], [0, 1, 2]))
    assert torch.equal(loaded.score_heads([0, 1, 2], [3, 4, 5]), model.score_heads([0, 1, 2], [3, 4, 5]))
    np.testing.assert_array_equal(loaded.entity_vectors(), model.entity_vectors())
    np.testing.assert_array_equal(loaded.relation_vectors(), model.relation_vectors())
    assert loaded.evaluate("test") == model.evaluate("test")
    # the encoder is re-created from the saved spec for new texts, and agrees with the training one
    torch.testing.assert_close(loaded.embed_texts(["fever", "发烧"]), model.embed_texts(["fever", "发烧"]))
    config = json.loads((out / "config.json").read_text())
    assert config["mode"] == "fused" and config["interaction"] == "rotate" and config["dim"] == 16
    assert (
        config["encoder"]["fingerprint"] == model.encoder_fingerprint
        and config["encoder"]["spec"] == "default"
    )
    assert set(config["versions"]) == {"kgemb", "pykeen", "torch"}
    assert {"weights.safetensors", "text_features.safetensors", "graph/graph.json"} <= set(config["files"])


def test_loading_checks_every_file(saved, tmp_path):
    _, out = saved
    for name, damage in [
        ("weights.safetensors", lambda p: p.write_bytes(p.read_bytes()[:-8] + b"\0" * 8)),
        ("text_features.safetensors", lambda p: p.unlink()),
        ("graph/graph.json", lambda p: p.write_text(p.read_text().replace("influenza", "influensa"))),
        ("config.json", lambda p: p.write_text("{not json")),
    ]:
        copy = tmp_path / name.replace("/", "_")
        shutil.copytree(out, copy)
        damage(copy / name)
        with pytest.raises(KgembError, match=r"checksum|missing|not valid JSON"):
            kgemb.load(copy)
    with pytest.raises(KgembError, match="holds no kgemb model"):
        kgemb.load(tmp_path)


def test_an_encoder_with_another_fingerprint_is_refused(saved):
    _, out = saved
    with pytest.raises(KgembError, match="fingerprint"):
        kgemb.load(out, encoder=OtherEncoder())
    loaded = kgemb.load(out)
    loaded._encoder = OtherEncoder()  # as if the saved spec now resolved to another model
    with pytest.raises(KgembError, match="fingerprint"):
        loaded.embed_texts(["fever"])


def test_cli_train_then_evaluate_json(tiny_split, tmp_path):
    source = tmp_path / "graph"
    tiny_split.save(source)
    out = tmp_path / "model"
    run = subprocess.run(
        [KGEMB, "train", str(source), "--out", str(out), "--mode", "text", "--interaction", "transe", "--dim", "16",
         "--epochs", "6", "--eval-every", "3", "--lr", "0.02", "--quiet", "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert set(report) == {"out", "valid", "test"}
    run = subprocess.run([KGEMB, "evaluate", str(out), "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    metrics = json.loads(run.stdout)
    keys = ("mrr", "hits@1", "hits@3", "hits@10", "n")
    assert {k: metrics[k] for k in keys} == pytest.approx(report["test"])
    assert metrics["n"] == len(tiny_split.triples("test"))
    run = subprocess.run(
        [KGEMB, "evaluate", str(out), "--json", "--candidates", "split"], capture_output=True, text=True
    )
    among = json.loads(run.stdout)  # fewer candidates: every rank is at most the rank among all entities
    assert run.returncode == 0 and among["n"] == metrics["n"] and among["mrr"] >= metrics["mrr"]
    # user errors: one line on stderr, exit code 2
    run = subprocess.run([KGEMB, "evaluate", str(out), "--split", "nope"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "no split 'nope'" in run.stderr
    # a fused combination from the command line (the default for complex is "late"), and a bad one
    train = [KGEMB, "train", str(source), "--mode", "fused", "--dim", "16", "--epochs", "2", "--quiet"]
    run = subprocess.run(
        [*train, "--out", str(tmp_path / "g"), "--combination", "gate"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    assert config["training"]["combination"] == "gate"
    assert config["training"]["rules"] and config["training"]["irreflexive"]
    # the rule channel and the irreflexive filter switched off from the command line
    run = subprocess.run(
        [*train, "--out", str(tmp_path / "n"), "--no-rules", "--no-irreflexive"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    config = json.loads((tmp_path / "n" / "config.json").read_text())
    assert not config["training"]["rules"] and config["rules"] is None
    assert not config["training"]["irreflexive"] and config["irreflexive"] is None
    run = subprocess.run(
        [*train, "--out", str(tmp_path / "b"), "--combination", "blend"], capture_output=True, text=True
    )
    assert (
        run.returncode == 2 and "unknown combination 'blend'" in run.stderr and not (tmp_path / "b").exists()
    )


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    from kgemb.files import write_atomic

    path = tmp_path / "out.txt"
    write_atomic(path, b"old")

    def broken(f):
        f.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken, fsync=True)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    write_atomic(path, lambda f: f.write(b"new"), fsync=True)
    assert path.read_bytes() == b"new"


def test_loading_leaves_the_global_random_state_alone(saved):
    import random

    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    kgemb.load(saved[1])
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
