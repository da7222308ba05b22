"""The on-disk embedding cache: keyed by (fingerprint, role, text), shared across processes, much faster."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import kgemb
from kgemb.encoders.cache import CACHE_FILE, EmbeddingCache

WRITER = """
import sys, kgemb
first, count = int(sys.argv[2]), int(sys.argv[3])
encoder = kgemb.load_encoder("default", cache_dir=sys.argv[1], threads=1)
texts = [f"concurrent text {i}" for i in range(first, first + count)]
for start in range(0, count, 50):  # many small transactions, so the two writers interleave
    encoder.encode(texts[start : start + 50])
print(encoder.fingerprint)
"""


def _texts(shared_data: Path, n: int) -> list[str]:
    lines = (shared_data / "wn18rr" / "entity2text.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines[:n]]


def test_a_cache_hit_is_at_least_50_times_faster(tmp_path: Path, shared_data: Path) -> None:
    texts = _texts(shared_data, 500)
    encoder = kgemb.load_encoder("default", cache_dir=tmp_path)
    start = time.perf_counter()
    encoded = encoder.encode(texts)
    encode_s = time.perf_counter() - start
    assert encoder.last_report.encoded == len(set(texts))
    again = kgemb.load_encoder("default", cache_dir=tmp_path)  # a new encoder: hits come from disk
    hit_s = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        cached = again.encode(texts)
        hit_s = min(hit_s, time.perf_counter() - start)
    assert again.last_report.cache_hits == len(set(texts)) and again.last_report.encoded == 0
    assert np.array_equal(cached, encoded)
    print(f"cache hit {encode_s / hit_s:.0f}x faster")
    assert encode_s / hit_s >= 50, f"encode {encode_s:.3f}s, cache hit {hit_s:.4f}s"


def test_processes_write_one_cache_at_once(tmp_path: Path) -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(first), "600"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for first in (0, 300)  # the two sets overlap in 300 texts
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
    fingerprint = outputs[0][0].strip()
    cache = EmbeddingCache(tmp_path)
    assert cache.count(fingerprint) == 900
    encoder = kgemb.load_encoder("default", cache_dir=tmp_path)
    vectors = encoder.encode([f"concurrent text {i}" for i in range(900)])
    assert encoder.last_report.cache_hits == 900 and encoder.last_report.encoded == 0
    fresh = kgemb.load_encoder("default", cache=False).encode(["concurrent text 450"])
    assert np.allclose(vectors[450], fresh[0], atol=1e-6)


def test_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGEMB_CACHE_DIR", str(tmp_path / "env"))
    encoder = kgemb.load_encoder("default", cache=False)
    encoder.encode(["no cache"])
    encoder.encode(["no cache"])
    assert encoder.cache is None and encoder.last_report.cache_hits == 0
    assert not (tmp_path / "env").exists()
    kgemb.load_encoder("default").encode(["cached"])  # the default location follows KGEMB_CACHE_DIR
    assert (tmp_path / "env" / CACHE_FILE).exists()


def test_an_unusable_cache_folder_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    encoder = kgemb.load_encoder("default", cache_dir=blocker / "cache")
    assert encoder.cache is None
    assert "cannot be used" in caplog.text and "KGEMB_CACHE_DIR" in caplog.text
    assert encoder.encode(["still works"]).shape == (1, 512)


def test_cache_keys_on_role_when_roles_differ(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put("fp", "query", [b"k" * 16], np.ones((1, 4), dtype=np.float32))
    assert cache.get("fp", "document", [b"k" * 16], 4) == {}
    assert cache.get("other", "query", [b"k" * 16], 4) == {}
    assert cache.get("fp", "query", [b"k" * 16], 8) == {}  # a vector of another size is a miss
    assert np.array_equal(cache.get("fp", "query", [b"k" * 16], 4)[b"k" * 16], np.ones(4))
