"""Cost curves: a synthetic power-law graph with entity texts grown from 10k to 1M entities; each phase — load,
encode, one training epoch, evaluation, enrichment, push — in time and peak memory; growth fitted, extrapolated to
10M and 100M entities with a memory formula; where one machine (CPU, one GPU) stops being enough.

    nice -n 10 python benchmarks/scale.py --out benchmarks/results/scale.md            # 10k ... 1M, Neo4j to 100k
    python benchmarks/scale.py --sizes 10000 30000 --no-neo4j                         # a quick look

Each size runs in a fresh process (``--one N``), so its peak memory (resident set, sampled every 20 ms) is what a
``kgemb train`` / ``enrich`` / ``push`` of that graph holds. The graph: ``N`` entities, ``3N`` triples over 24
relations, heads and tails drawn with Zipf-like weights (exponent 1.1: a few hubs, a long tail), every entity a
label and a description of generated words (3 text views each: label, description, both). The model is kgemb's default for a graph this size: fused ComplEx,
dim 256, 1-N softmax over 4,096 shared negatives + self-negatives, batch 1024, attention pooling over text views.

What is measured and what is extrapolated (the table says which, per cell):
- load: ``kgemb.connectors.tabular.load`` of the TSV folder (train/valid/test + entity2text.tsv), whole.
- encode: the default encoder (USE multilingual v3, CPU) on a sample of the texts, scaled by the number of texts
  (encoding is linear in texts; at 1M, 2M texts would take hours here). Training then uses random vectors of the
  encoder's shape (512-d per view): the model's cost does not depend on their values.
- epoch: the first ``--batches`` batches of one epoch, timed, scaled to the epoch's batches (every batch costs the
  same: 1024 rows against ~6k candidates whatever N is), with the memory of the whole loop (model, Adam, known
  answers) resident.
- evaluation: filtered MRR over a sample of test triples (both directions against all N entities), scaled to 2,000
  test triples (the test split's size).
- enrichment: ``LinkPredictor.top_tails`` (what ``kgemb enrich`` ranks with, calibrated) for a sample of subjects,
  scaled to all N subjects.
- push: ``kgemb.connectors.neo4j.push`` (nodes MERGEd, vectors, index ONLINE, model node) into the Neo4j dev server,
  whole up to ``--push-max`` entities; larger sizes from the fitted rate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RELATIONS = 24
TRIPLES_PER_ENTITY = 3
TEST = 2000
GB = 1024**3
#: what one machine offers, for the verdicts: a large CPU server and one GPU of each size
MACHINES = {"CPU server, 128 GB RAM": 128, "one GPU, 80 GB (H100)": 80, "one GPU, 141 GB (H200)": 141}


# ---------------------------------------------------------------------------------------------------- the graph
def write_graph(n: int, folder: Path, seed: int = 0) -> None:
    """``n`` entities, ``3n`` distinct triples with power-law degrees, texts for every entity (TSV folder)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n + 1) ** 1.1
    weights /= weights.sum()
    m = int(TRIPLES_PER_ENTITY * n * 1.1)
    heads = rng.permutation(n)[rng.choice(n, m, p=weights)]
    tails = rng.permutation(n)[rng.choice(n, m, p=weights)]
    # every entity is the head of at least one triple, so none is unseen
    heads[:n] = np.arange(n)
    rels = rng.integers(0, RELATIONS, m)
    triples = np.unique(np.stack([heads, rels, tails], 1), axis=0)
    triples = triples[triples[:, 0] != triples[:, 2]]
    triples = triples[rng.permutation(len(triples))][: TRIPLES_PER_ENTITY * n]
    held = rng.choice(
        np.arange(n, len(triples)), 2 * TEST, replace=False
    )  # valid/test from the extra triples
    mask = np.zeros(len(triples), dtype=bool)
    mask[held] = True
    splits = {"train": triples[~mask], "valid": triples[held[:TEST]], "test": triples[held[TEST:]]}
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with open(folder / f"{name}.txt", "w") as f:
            f.writelines(f"e{h}\tr{r}\te{t}\n" for h, r, t in rows.tolist())
    syllables = [
        "ka",
        "lo",
        "mi",
        "ne",
        "ru",
        "sa",
        "ti",
        "vo",
        "xe",
        "zu",
        "bra",
        "den",
        "fi",
        "gor",
        "hul",
        "jin",
    ]
    words = ["".join(rng.choice(syllables, 3)) for _ in range(4000)]
    picks = rng.integers(0, len(words), (n, 10))
    with open(folder / "entity2text.tsv", "w") as f:
        for i in range(n):
            w = [words[j] for j in picks[i]]
            f.write(
                f"e{i}\t{w[0]} {w[1]}\tthe {w[2]} of {w[3]}, a {w[4]} {w[5]} near {w[6]} {w[7]} {w[8]} {w[9]}\n"
            )


# ---------------------------------------------------------------------------------------------------- measuring
class Peak:
    """Peak resident memory of this process while a phase runs (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.value = max(self.value, self.rss())
            time.sleep(0.02)

    def phase(self) -> None:
        self.value = self.rss()


def timed(peak: Peak, fn):
    peak.phase()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak.value = max(peak.value, peak.rss())
    return out, wall, cpu, peak.value


def one(n: int, batches: int, eval_sample: int, enrich_sample: int, encode_sample: int, neo4j_uri: str | None,
        push_max: int) -> dict:  # fmt: skip
    """Every phase at ``n`` entities in this process; a JSON-able row."""
    import torch
    from kgemb.connectors import tabular

    from kgemb.evaluation import rank_metrics
    from kgemb.features import TextFeatures, entity_view_texts
    from kgemb.model import TrainedModel
    from kgemb.objective import OneToNLoop
    from kgemb.training import TrainingConfig, _make_loop, model_for

    torch.manual_seed(0)
    peak = Peak()
    row: dict = {"entities": n}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "graph"
        write_graph(n, folder)
        kg, wall, cpu, mem = timed(peak, lambda: tabular.load(folder))
    row.update(triples=len(kg.triples("train")), load_s=wall, load_cpu_s=cpu, load_peak_gb=mem / GB)

    views = entity_view_texts(kg)
    flat = [t for v in views for t in v]
    row["texts"] = len(flat)
    import kgemb

    encoder = kgemb.load_encoder("default", cache=False)  # time the encoder, not the cache
    sample = flat[: min(len(flat), encode_sample)]
    encoder.encode(sample[:64], role="document")  # warm-up
    _, wall, cpu, mem = timed(peak, lambda: encoder.encode(sample, role="document", show_progress=False))  # noqa: F821
    scale = len(flat) / len(sample)
    row.update(encode_s=wall * scale, encode_cpu_s=cpu * scale, encode_measured=len(sample),
               encode_extrapolated=scale > 1)  # fmt: skip
    del encoder
    offsets = np.zeros(len(views) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in views], out=offsets[1:])
    # random unit-norm vectors in place of the encoder's (standardised features have unit mean norm): one copy
    features = TextFeatures(torch.randn(len(flat), 512).div_(512**0.5), torch.from_numpy(offsets),
                            torch.zeros(512), 1.0)  # fmt: skip
    del flat
    row["features_gb"] = features.vectors.numel() * 4 / GB

    cfg = TrainingConfig(mode="fused", interaction="complex", seed=0, show_progress=False, text_channel=True)
    cfg = cfg.resolved(len(kg.triples("train")), kg.num_entities)

    def build() -> OneToNLoop:
        model = model_for(kg, cfg, features)
        return _make_loop(model, kg.to_triples_factory("train"), cfg, features)

    loop, wall, cpu, mem = timed(peak, build)
    row.update(
        build_s=wall, build_peak_gb=mem / GB, dim=cfg.dim, negatives=cfg.negatives, batch=cfg.batch_size
    )
    examples = len(loop.examples)
    total_batches = math.ceil(examples / cfg.batch_size)
    order = torch.randperm(examples)
    todo = min(total_batches, batches)
    loop.model.train()
    loop._step(order[: cfg.batch_size])  # warm-up (allocations, Adam state)

    def steps() -> None:
        for b in range(1, todo + 1):
            loop._step(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])

    _, wall, cpu, mem = timed(peak, steps)
    scale = total_batches / todo
    row.update(epoch_s=wall * scale, epoch_cpu_s=cpu * scale, epoch_batches=total_batches, epoch_measured=todo,
               epoch_extrapolated=scale > 1, epoch_peak_gb=mem / GB)  # fmt: skip
    loop.model.eval()
    model = loop.model

    test = kg.triples("test")[:eval_sample]
    filters = [kg.triples(s) for s in ("train", "valid", "test")]
    # the first call computes every entity's vector (kept while the model is unchanged): a fixed cost, then a
    # cost per query; the fixed part is timed alone and not scaled
    _, wall0, cpu0, _ = timed(peak, lambda: rank_metrics(model, test[:2], filters))
    _, wall, cpu, mem = timed(peak, lambda: rank_metrics(model, test, filters))
    scale = TEST / len(test)
    row.update(eval_s=wall0 + wall * scale, eval_cpu_s=cpu0 + cpu * scale, eval_fixed_s=wall0,
               eval_measured=len(test), eval_peak_gb=mem / GB)  # fmt: skip

    config = {"mode": "fused", "interaction": "complex", "dim": cfg.dim, "reciprocal": True, "training": {},
              "encoder": None, "graph": {"entities": n}}  # fmt: skip
    trained = TrainedModel(kg, model, config, features, None)
    from kgemb.reasoning import LinkPredictor

    predictor = LinkPredictor(trained)
    _ = predictor.calibration  # fitted on validation once, as enrich does before ranking
    heads = np.arange(min(n, enrich_sample))
    _, wall0, cpu0, _ = timed(peak, lambda: predictor.top_tails(heads[:1], 0, 6))  # entity vectors, once

    def rank() -> None:
        for start in range(0, len(heads), 256):
            predictor.top_tails(heads[start : start + 256], 0, 6)

    _, wall, cpu, mem = timed(peak, rank)
    scale = n / len(heads)
    row.update(enrich_s=wall0 + wall * scale, enrich_cpu_s=cpu0 + cpu * scale, enrich_fixed_s=wall0,
               enrich_measured=len(heads), enrich_peak_gb=mem / GB)  # fmt: skip

    if neo4j_uri and n <= push_max:
        from kgemb.connectors import neo4j as kn

        report, wall, cpu, mem = timed(
            peak, lambda: kn.push(trained, neo4j_uri, progress=False, batch_size=2000)
        )
        row.update(
            push_s=wall, push_cpu_s=cpu, push_peak_gb=mem / GB, push_vectors_per_s=report.vectors_per_second
        )
        from neo4j import GraphDatabase

        # empty for the next size
        with GraphDatabase.driver(neo4j_uri) as driver, driver.session() as session:
            session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 20000 ROWS").consume()
            for kind, show in (
                ("CONSTRAINT", "SHOW CONSTRAINTS YIELD name RETURN name"),
                ("INDEX", "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"),
            ):
                for name in session.run(show).value("name"):
                    session.run(f"DROP {kind} `{name}` IF EXISTS").consume()
    row["peak_gb"] = max(v for k, v in row.items() if k.endswith("_peak_gb"))
    row["param_gb"] = sum(p.numel() * p.element_size() for p in model.parameters()) / GB
    return row


# ---------------------------------------------------------------------------------------------------- the report
PHASES = [("load", "load"), ("encode", "encode"), ("epoch", "one epoch"), ("eval", "evaluation"),
          ("enrich", "enrichment"), ("push", "push")]  # fmt: skip


def fit_power(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """``y = a x^b`` by least squares in log-log."""
    b, log_a = np.polyfit(np.log(xs), np.log(ys), 1)
    return float(math.exp(log_a)), float(b)


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def report(rows: list[dict], out: Path | None, machine: str) -> str:
    sizes = [r["entities"] for r in rows]
    lines = [
        "# Cost curves: synthetic power-law graph with texts, 10k to 1M entities",
        "",
        f"{machine}. Graph: N entities, 3N triples, 24 relations, Zipf-like degrees, a label and a description "
        "per entity (3 text views: label, description, both). Model: kgemb's default for graphs this size (fused ComplEx, dim 256, 4,096 "
        "shared negatives, batch 1024). Times are wall-clock on a machine shared with other sessions (CPU-seconds "
        "beside them); peak memory is the process's resident set during the phase (it holds everything loaded "
        "before it). `*` marks a cell scaled from a measured sample (see the script's docstring): encoding from a "
        "sample of texts, the epoch from its first batches, evaluation to 2,000 test triples, enrichment to all N "
        "subjects. Up to 20,000 entities every entity is a candidate (1-N), above that 4,096 shared negatives (kgemb's "
        "defaults), so the epoch's cost per batch changes between 10k and 30k.",
        "",
        "## Measured",
        "",
        "| entities | triples | load | encode | one epoch | evaluation (2k test) | enrichment (all N) | push | "
        "peak memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:

        def cell(key: str, mark: bool, r: dict = r) -> str:
            if f"{key}_s" not in r:
                return "–"
            if r.get(f"{key}_invalid"):
                return f"– ({r[key + '_invalid']})"
            return f"{human(r[key + '_s'])}{'*' if mark else ''} ({human(r[key + '_cpu_s'])} CPU)"

        lines.append(
            f"| {r['entities']:,} | {r['triples']:,} | {cell('load', False)} | "
            f"{cell('encode', r['encode_extrapolated'])} | {cell('epoch', r['epoch_extrapolated'])} | "
            f"{cell('eval', r['eval_measured'] < TEST)} | {cell('enrich', r['enrich_measured'] < r['entities'])} | "
            f"{cell('push', False)} | {r['peak_gb']:.2f} GB |"
        )
    lines += ["", "Peak memory by phase (GB): " + "; ".join(
        f"{r['entities']:,}: load {r['load_peak_gb']:.2f}, model built {r['build_peak_gb']:.2f}, epoch "
        f"{r['epoch_peak_gb']:.2f}, evaluation {r['eval_peak_gb']:.2f}, enrichment {r['enrich_peak_gb']:.2f}"
        for r in rows)]  # fmt: skip

    fits: dict[str, tuple[float, float]] = {}
    lines += ["", "## Growth fitted (CPU time = a·N^b over the measured sizes; wall time on this loaded machine is too noisy) and extrapolated", "",
              "| phase | exponent b | 1M | 10M | 100M |", "|---|---|---|---|---|"]  # fmt: skip
    for key, name in PHASES:
        pts = [
            (r["entities"], r[f"{key}_cpu_s"])
            for r in rows
            if f"{key}_s" in r and not r.get(f"{key}_invalid")
        ]
        if len(pts) < 2:
            continue
        a, b = fit_power([p[0] for p in pts], [p[1] for p in pts])
        fits[key] = (a, b)
        lines.append(f"| {name} | {b:.2f} | " + " | ".join(human(a * x**b) for x in (1e6, 1e7, 1e8)) + " |")
    mem_b, mem_a = np.polyfit(sizes, [r["peak_gb"] * GB for r in rows], 1)
    lines += [
        "",
        "## Memory formula",
        "",
        f"Fitted on the measured peaks: **peak ≈ {mem_a / GB:.2f} GB + {mem_b / 1024:.1f} KB × N** "
        f"(linear, {len(rows)} sizes). Its parts, from the data structures at dim 256 and 512-d text views: "
        "text features 3 views × 512 × 4 B = 6.0 KB; entity rows 256 × 4 B × 3 (weights, Adam's two moments) = "
        "3.0 KB; triples as reciprocal examples, known answers and the PyKEEN factory ≈ 3 × 2 × 8 × 3 B ≈ 0.2 "
        "KB per triple (0.6 KB per entity at 3 triples each); the graph's Python objects (keys, labels, "
        "descriptions) the rest.",
        "",
        "| entities | peak memory (formula) | fits in |",
        "|---|---|---|",
    ]
    model_bytes = (
        9.0 * 1024 + 0.6 * 1024
    )  # on the GPU: features + rows + Adam + triples (the graph stays on the CPU)
    for x in (1e6, 1e7, 3e7, 1e8):
        need = mem_a + mem_b * x
        fits_in = [
            name for name, gb in MACHINES.items() if (need if "CPU" in name else model_bytes * x) < gb * GB
        ]
        lines.append(f"| {int(x):,} | {need / GB:,.0f} GB (GPU part {model_bytes * x / GB:,.0f} GB) | "
                     f"{', '.join(fits_in) or 'none of one machine'} |")  # fmt: skip
    cpu_limit = (128 * GB - mem_a) / mem_b
    gpu_limit = 80 * GB / model_bytes
    epoch_1m = fits.get("epoch", (0, 1))
    lines += [
        "",
        "## When one machine stops being enough",
        "",
        f"- **Memory, CPU**: a 128 GB server holds about **{cpu_limit / 1e6:.0f}M entities** (formula above). "
        f"**One GPU**: the model's tensors (≈ {model_bytes / 1024:.1f} KB per entity) fit in 80 GB up to about "
        f"**{gpu_limit / 1e6:.0f}M entities** ({141 * GB / model_bytes / 1e6:.0f}M on a 141 GB H200); past that "
        "the rows must be sharded across GPUs (or the text features kept on the CPU).",
        f"- **Time, CPU**: one epoch grows as N^{epoch_1m[1]:.2f}; at 1M entities it is "
        f"{human(epoch_1m[0] * 1e6 ** epoch_1m[1])} of CPU time (one core), and a run needs 10–100 epochs — "
        "past a few hundred thousand entities a CPU run takes days; `--nproc N` on a many-core server or a GPU "
        "is the way on.",
        "- **Time, one GPU**: the step is dense matrix products over ~6k candidates; on a GPU it runs in "
        "milliseconds (not measured here: no GPU was lent to this run), so one GPU trains graphs up to its memory "
        "limit; past it, `torchrun` over several GPUs with replicated rows is bounded by the same per-GPU memory "
        "(replication), so beyond ~10M entities rows need sharding (not built).",
    ]
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        plot(rows, fits, (mem_a, mem_b), out.with_suffix(".png"))
    return text


def plot(rows: list[dict], fits: dict, memory: tuple[float, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    grid = np.logspace(4, 8, 50)
    for key, name in PHASES:
        pts = [
            (r["entities"], r[f"{key}_cpu_s"])
            for r in rows
            if f"{key}_s" in r and not r.get(f"{key}_invalid")
        ]
        if not pts:
            continue
        line = left.loglog(*zip(*pts, strict=True), "o", label=name)[0]
        if key in fits:
            a, b = fits[key]
            left.loglog(grid, a * grid**b, "--", color=line.get_color(), alpha=0.6)
    left.axhline(86400, color="grey", lw=0.8)
    left.text(1.2e4, 1.1e5, "one day", color="grey")
    left.set(xlabel="entities", ylabel="CPU seconds (measured ●, fitted --)", title="CPU time per phase")
    left.legend(fontsize=8)
    a, b = memory
    right.loglog([r["entities"] for r in rows], [r["peak_gb"] for r in rows], "o", label="peak, measured")
    right.loglog(grid, (a + b * grid) / GB, "--", label="formula")
    for name, gb in MACHINES.items():
        right.axhline(gb, lw=0.8, color="grey")
        right.text(1.2e4, gb * 1.1, name, color="grey", fontsize=8)
    right.set(xlabel="entities", ylabel="GB", title="peak memory")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 300_000, 1_000_000])
    parser.add_argument("--batches", type=int, default=12, help="batches timed per epoch")
    parser.add_argument("--eval-sample", type=int, default=200)
    parser.add_argument("--enrich-sample", type=int, default=2048)
    parser.add_argument("--encode-sample", type=int, default=4000)
    parser.add_argument("--push-max", type=int, default=100_000)
    parser.add_argument("--no-neo4j", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--neo4j-uri", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help="JSON lines of earlier sizes to add (and where to append)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.one:
        row = one(args.one, args.batches, args.eval_sample, args.enrich_sample, args.encode_sample, args.neo4j_uri,
                  args.push_max)  # fmt: skip
        print("ROW " + json.dumps(row), flush=True)
        return
    rows = (
        [json.loads(x) for x in args.rows.read_text().splitlines()]
        if args.rows and args.rows.exists()
        else []
    )
    done = {r["entities"] for r in rows}
    server = None
    uri = None
    if not args.no_neo4j and any(n <= args.push_max for n in args.sizes if n not in done):
        from kgemb.connectors.neo4j_dev import DevServer

        server = DevServer(data_dir=Path(tempfile.mkdtemp()))
        server.start()
        uri = server.uri
    try:
        for n in args.sizes:
            if n in done:
                continue
            command = [sys.executable, "-P", __file__, "--one", str(n), "--batches", str(args.batches), "--eval-sample",
                       str(args.eval_sample), "--enrich-sample", str(args.enrich_sample), "--encode-sample",
                       str(args.encode_sample), "--push-max", str(args.push_max)]  # fmt: skip
            if uri:
                command += ["--neo4j-uri", uri]
            done_run = subprocess.run(command, capture_output=True, text=True, check=False)
            found = [x for x in done_run.stdout.splitlines() if x.startswith("ROW ")]
            if done_run.returncode != 0 or not found:
                print(done_run.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"size {n} failed")
            row = json.loads(found[0][4:])
            print(json.dumps(row), flush=True)
            rows.append(row)
            if args.rows:
                with open(args.rows, "a") as f:
                    f.write(json.dumps(row) + "\n")
    finally:
        if server is not None:
            server.stop()
    rows.sort(key=lambda r: r["entities"])
    machine = f"{os.cpu_count()} CPU cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GB:.0f} GB RAM, no GPU"
    print(report(rows, args.out, machine))


if __name__ == "__main__":
    main()
