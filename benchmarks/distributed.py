"""Data-parallel training: UMLS trained by one process and by ``kgemb train --nproc N`` (gloo ranks on this machine),
the same epochs and seed; test MRR side by side (goal: within 0.01) and the time per epoch.

    nice -n 10 python benchmarks/distributed.py --out benchmarks/results/distributed.md
    python benchmarks/distributed.py --nproc 1 2 --epochs 30 --device cuda    # on a GPU machine (NCCL)

Each run is the command line a user types (``kgemb train pykeen:UMLS --out DIR --nproc N ...``); its wall time,
the CPU-seconds of all its processes (rusage of the children), the training seconds and epochs from the model's
config.json, and the test metrics it printed. Epoch time = training seconds / epochs (rank 0's clock).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 0.01  # |MRR(N) - MRR(1)| at most this


def run(nproc: int, epochs: int, options: list[str], folder: Path) -> dict:
    out = folder / f"umls_{nproc}"
    command = [sys.executable, "-m", "kgemb", "train", "pykeen:UMLS", "--out", str(out), "--quiet", "--json",
               "--no-early-stopping", "--epochs", str(epochs), *options]  # fmt: skip
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"nproc {nproc} failed:\n{done.stderr[-4000:]}")
    metrics = json.loads(done.stdout[done.stdout.index("{") :])
    training = json.loads((out / "config.json").read_text())["training"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = {
        "nproc": nproc,
        "mrr": metrics["test"]["mrr"],
        "hits@10": metrics["test"]["hits@10"],
        "epochs": training["epochs_run"],
        "fit_s": training["fit_seconds"],
        "epoch_s": training["fit_seconds"] / max(training["epochs_run"], 1),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    options = ["--mode", "structure", "--interaction", "complex", "--dim", "256", "--seed", "0",
               "--device", args.device]  # fmt: skip
    if args.device == "cpu":
        options += ["--threads", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(n, args.epochs, options, Path(tmp)) for n in args.nproc]
    base = next((r for r in rows if r["nproc"] == 1), rows[0])
    lines = [
        f"UMLS (pykeen:UMLS), {' '.join(options)}, {args.epochs} epochs, no early stopping; one process vs "
        f"`kgemb train --nproc N` ({'gloo' if args.device == 'cpu' else 'NCCL'}). Machine: {os.cpu_count()} "
        f"CPU cores ({platform.machine()}), shared with other sessions; wall times hold for this run only, "
        "ratios measured side by side.",
        "",
        "| processes | test MRR | Hits@10 | ΔMRR vs 1 (goal ≤ 0.01) | epochs | s / epoch | epoch time ratio | "
        "wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delta = r["mrr"] - base["mrr"]
        verdict = "" if r is base else (" ✓" if abs(delta) <= GOAL else " ✗")
        lines.append(
            f"| {r['nproc']} | {r['mrr']:.4f} | {r['hits@10']:.4f} | {delta:+.4f}{verdict} | {r['epochs']} | "
            f"{r['epoch_s']:.2f} | {r['epoch_s'] / base['epoch_s']:.2f}× | {r['wall_s']} | {r['cpu_s']} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
