"""Bad input to ``encode``: each case has a defined behaviour, and one bad text never costs the others."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kgemb
from kgemb.encoders.base import TextEncoder
from kgemb.errors import InputError


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> kgemb.TextEncoder:
    return kgemb.load_encoder("default", cache_dir=tmp_path_factory.mktemp("cache"))


def test_blank_texts_encode_as_the_empty_text(encoder: kgemb.TextEncoder) -> None:
    vectors = encoder.encode(["", "   ", "\n\t", "cat"])
    assert np.allclose(vectors[0], vectors[1]) and np.allclose(vectors[0], vectors[2])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.last_report.blank == 3
    assert encoder.last_report.unique == 2  # the three blanks are one text


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (None, "texts[1] is None"),
        (42, "texts[1] is a int"),
        (b"bytes", "texts[1] is a bytes"),
        (["x"], "a list"),
    ],
)
def test_non_strings_are_refused_naming_the_position(
    encoder: kgemb.TextEncoder, bad: object, named: str
) -> None:
    with pytest.raises(InputError, match=named.replace("[", r"\[").replace("]", r"\]")):
        encoder.encode(["fine", bad, "also fine"])


def test_many_bad_positions_are_counted(encoder: kgemb.TextEncoder) -> None:
    texts: list[object] = ["ok"] * 20
    for i in (3, 5, 7, 9, 11, 13, 15):
        texts[i] = None
    with pytest.raises(InputError, match=r"7 of 20 texts are not strings .*texts\[3\].* and 2 more"):
        encoder.encode(texts)  # type: ignore[arg-type]


def test_a_single_string_is_refused(encoder: kgemb.TextEncoder) -> None:
    with pytest.raises(InputError, match=r"pass \[text\]"):
        encoder.encode("one text")


def test_role_and_batch_size_are_checked(encoder: kgemb.TextEncoder) -> None:
    with pytest.raises(InputError, match="role='document'"):
        encoder.encode(["x"], role="passage")
    with pytest.raises(InputError, match="batch_size"):
        encoder.encode(["x"], batch_size=0)


def test_lone_surrogates_become_replacement_characters(encoder: kgemb.TextEncoder) -> None:
    vectors = encoder.encode(["caf\ud800e", "ok", "smile \ud83d\ude00"])
    assert vectors.shape == (3, 512)
    assert encoder.last_report.surrogates == 2
    assert np.allclose(vectors[0], encoder.encode(["caf\ufffde"])[0], atol=1e-6)
    assert np.allclose(vectors[2], encoder.encode(["smile 😀"])[0], atol=1e-6)  # a valid pair is joined


def test_a_one_megabyte_text_is_cut_to_max_chars(encoder: kgemb.TextEncoder) -> None:
    rng = np.random.default_rng(0)
    words = ["protein", "cell", "membrane", "receptor", "signal", "enzyme", "gene", "tissue"]
    big = " ".join(rng.choice(words, size=150_000))[:1_000_000]
    assert len(big) >= 900_000
    vectors = encoder.encode(["short one", big])
    assert encoder.last_report.truncated == 1
    assert np.allclose(vectors[1], encoder.encode([big[: encoder.max_chars]])[0], atol=1e-6)
    assert np.allclose(vectors[0], encoder.encode(["short one"])[0], atol=1e-6)


def test_a_hundred_thousand_texts(encoder: kgemb.TextEncoder) -> None:
    distinct = [f"entity number {i}" for i in range(1000)]
    texts = [distinct[i % 1000] for i in range(100_000)]
    vectors = encoder.encode(texts)
    assert vectors.shape == (100_000, 512) and vectors.dtype == np.float32
    assert encoder.last_report.unique == 1000
    assert np.array_equal(vectors[7], vectors[1007]) and np.array_equal(vectors[999], vectors[99_999])
    assert not np.allclose(vectors[0], vectors[1])


class _FailsOnSecondChunk(TextEncoder):
    """A real (if simple) backend: hashes characters into 16 dims and fails on its second call."""

    dim = 16
    fingerprint = "test-hash-16"

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.calls = 0
        self.fail = True

    def _encode_texts(self, texts, role, batch_size, progress):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.fail and self.calls == 2:
            raise RuntimeError("model pass failed")
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for i, text in enumerate(texts):
            for ch in text:
                out[i, ord(ch) % 16] += 1
            out[i, 0] += 1
        progress(len(texts))
        return out, 0


def test_a_failing_pass_keeps_the_work_already_done(tmp_path: Path) -> None:
    encoder = _FailsOnSecondChunk(cache_dir=tmp_path)
    texts = [f"text {i}" for i in range(6000)]  # two chunks of at most 4,096
    with pytest.raises(RuntimeError, match="model pass failed"):
        encoder.encode(texts)
    assert encoder.cache is not None and encoder.cache.count("test-hash-16") == 4096
    encoder.fail = False
    vectors = encoder.encode(texts)
    assert encoder.last_report.cache_hits == 4096 and encoder.last_report.encoded == 6000 - 4096
    assert vectors.shape == (6000, 16)
