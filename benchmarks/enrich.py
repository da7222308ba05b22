"""RDF enrichment speed: subjects per second of ``kgemb enrich`` (``kgemb.connectors.rdf.enrich``) for one relation
and k = 5 over a generated 100,000-entity N-Triples graph, with the model already trained, and peak memory.

    nice python benchmarks/enrich.py              # 100,000 entities, 1,000,000 statements, dim 256, fp32/bf16/int8
    python benchmarks/enrich.py --entities 20000 --statements 200000 --dims 64 --out report.md

The model is trained in structure mode for one epoch (the default interaction, named in the report): ranking
costs the same for a well or a badly trained model of the same size, so one epoch is enough for timing.
``--model-dir DIR`` keeps the trained model in DIR and reuses it on the next run (the graph comes from a fixed
seed, so it is the same graph; training takes far longer than the enrichments on 2 cores). Its calibration is
fitted and saved with it, as ``kgemb evaluate`` or a first ``kgemb enrich`` would leave it. Each enrichment runs in its
own process, so peak RSS (``ru_maxrss``) is that run's alone. "ranking" is the loop over subjects (scores, top k,
the prediction text); "end to end" adds reading the model, the pass that indexes INPUT, and writing OUTPUT with
every asserted statement copied through. Wall-clock figures count other work on a shared machine too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rdf_stream import generate  # the same generated graph as the streaming benchmark

RELATION = "http://example.org/r/rel0"

TRAIN = r"""
import json, sys, time
import kgemb
from kgemb.connectors import rdf
from kgemb.reasoning import LinkPredictor
path, out, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
kg = rdf.load(path).split(valid=0.01, test=0.0, seed=0)
model = kgemb.train(kg, mode="structure", dim=dim, epochs=1, early_stopping=False, show_progress=False, seed=0)
model.save(out)
LinkPredictor(model, directory=out).calibration  # fitted on the validation split and saved beside the model
print(json.dumps({"seconds": time.perf_counter() - start, "entities": kg.num_entities,
                  "relations": kg.num_relations, "train_triples": int(len(kg.triples("train"))),
                  "interaction": model.config["interaction"]}))
"""

ENRICH = r"""
import json, resource, sys, time
from kgemb.connectors import rdf
import hashlib
path, model, out, relation, batch, precision = sys.argv[1:7]
start = time.perf_counter()
cpu = time.process_time()
result = rdf.enrich(path, out, model=model, relations=[relation], k=5, run_time="2024-01-01T00:00:00Z",
                    batch_size=int(batch), precision=precision)
total = time.perf_counter() - start
with open(out, "rb") as f:
    digest = hashlib.file_digest(f, "sha256").hexdigest()
print(json.dumps({"subjects": result.subjects, "predictions": result.predictions, "ranking": result.seconds,
                  "total": total, "cpu": time.process_time() - cpu, "copied": result.statements_copied,
                  "precision": precision, "sha256": digest,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _trained(source: Path, tmp: Path, args: argparse.Namespace, dim: int) -> tuple[dict, Path]:
    """The training run's figures and the model's folder: trained now, or the one ``--model-dir`` kept."""
    if args.model_dir is None:
        model_dir = tmp / f"model-{dim}"
        return _run(TRAIN, str(source), str(model_dir), str(dim)), model_dir
    model_dir = args.model_dir / f"model-{args.entities}-{args.statements}-{dim}"
    info = model_dir / "benchmark-train.json"
    if info.is_file():
        return json.loads(info.read_text(encoding="utf-8")), model_dir
    trained = _run(TRAIN, str(source), str(model_dir), str(dim))
    info.write_text(json.dumps(trained), encoding="utf-8")
    return trained, model_dir


def info_entities(rows: list[dict]) -> int:
    return int(rows[0]["train"]["entities"])


def _floor(entities: int, dim: int) -> tuple[float, float]:
    """(subjects/s the float32 GEMM rate allows, that rate in GFLOP/s), measured on a (2048 x dim) x (dim x 8192)
    product: the faster of MKL's ``a @ b.T`` and oneDNN's kernel (``kgemb.model.matmul_t``, which the scorer
    uses: 1.7x MKL's rate at this shape here in stop 39, whose run with MKL's rate alone reported a floor below the
    measured speed)."""

    import torch

    from kgemb.model import matmul_t

    a, b = torch.randn(2048, dim), torch.randn(8192, dim)
    best = float("inf")
    for product in (lambda: a @ b.T, torch.no_grad()(lambda: matmul_t(a, b))):
        product()
        best = min(best, *(_timed(product) for _ in range(5)))
    rate = 2 * 2048 * 8192 * dim / best
    return rate / (2 * entities * dim), rate / 1e9


def _timed(fn) -> float:
    import time

    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--statements", type=int, default=1_000_000, help="N-Triples lines in all")
    parser.add_argument("--dims", type=int, nargs="+", default=[256], help="entity vector sizes to time")
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16", "int8"], help="selection precisions to time"
    )
    parser.add_argument(
        "--batch-size", type=int, default=2048, help="subjects ranked together (enrich's default)"
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--threads", type=int, help="torch threads of each enrichment (default: all cores)")
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="keep the trained model here and reuse it when a run of the same size left one",
    )
    args = parser.parse_args(argv)
    # OpenMP threads that spin while waiting lose badly when other processes share the cores (as in ranking.py);
    # set before torch loads here and in each enrichment's process, unless the caller chose a policy
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory(prefix="kgemb-enrich-bench-") as tmp:
        source = Path(tmp) / "graph.nt"
        generate(source, args.statements, args.entities)
        for dim in args.dims:
            trained, model_dir = _trained(source, Path(tmp), args, dim)
            for precision in args.precisions:
                output = Path(tmp) / f"enriched-{dim}-{precision}.nt"
                result = _run(
                    ENRICH,
                    str(source),
                    str(model_dir),
                    str(output),
                    RELATION,
                    str(args.batch_size),
                    precision,
                )
                result.update(dim=dim, train=trained, output_mb=output.stat().st_size / 2**20)
                rows.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)  # each as soon as it is measured
                output.unlink()
    floors = {dim: _floor(info_entities(rows), dim) for dim in args.dims}
    info = rows[0]["train"]
    lines = [
        f"`kgemb enrich` over a generated graph: {info['entities']:,} entities, {info['relations']} relations, "
        f"{args.statements:,} N-Triples statements ({info['train_triples']:,} training triples); one relation "
        f"(`{RELATION}`), k = 5, N-Triples out, reification. Model: structure mode, "
        f"{info.get('interaction', 'rotate')}, one epoch. "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} CPU cores "
        f"({torch.get_num_threads()} torch threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), CPU only; "
        f"{args.batch_size} subjects per batch.",
        "",
        "The floor is the arithmetic alone: one float32 product of each subject with every entity "
        "(2 · entities · dim FLOPs) at this machine's measured float32 GEMM rate "
        f"({', '.join(f'{f[1]:.0f} GFLOP/s at dim {d}' for d, f in floors.items())}), measured in the same run. "
        "Anchor: 90 subjects/s end to end, measured before this change on this machine (dim 64, 256 per batch).",
        "",
        "| dim | precision | subjects | predictions | ranking (s) | subjects/s, ranking | end to end (s) "
        "| CPU-s | subjects/s, end to end | per CPU-s | floor, subjects/s | output sha256 | peak RSS (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dim']} | {r['precision']} | {r['subjects']:,} | {r['predictions']:,} | {r['ranking']:.1f} "
            f"| {r['subjects'] / r['ranking']:,.0f} | {r['total']:.1f} | {r['cpu']:.1f} "
            f"| {r['subjects'] / r['total']:,.0f} | {r['subjects'] / r['cpu']:,.0f} "
            f"| {floors[r['dim']][0]:,.0f} | {r['sha256'][:12]} | {r['max_rss_mb']:.0f} |"
        )
    same = len({r["sha256"] for r in rows if r["dim"] == rows[0]["dim"]}) == 1
    lines += ["", f"Output bytes identical across precisions: {'yes' if same else 'NO'}."]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        tmp_out = args.out.with_name(args.out.name + ".tmp")
        tmp_out.write_text(report, encoding="utf-8")
        os.replace(tmp_out, args.out)
    return report


if __name__ == "__main__":
    main()
