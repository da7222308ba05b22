"""Calibration quality: Brier score and expected calibration error on the test split, for per-relation Platt
scaling (kgemb's default), one global Platt fit, and the uncalibrated ``sigmoid(raw score)``.

    nice python benchmarks/calibration.py                      # trains a fused RotatE model on UMLS first
    python benchmarks/calibration.py --model runs/umls --out report.md

All three are fitted on the validation split and measured on the test split with the same protocol (each
triple in both directions against 8 filtered negatives, half the model's hardest wrong answers, half uniform;
classes weighted equally; 10 probability bins for the ECE).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, help="a model directory to measure (default: train one on UMLS)"
    )
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)

    import torch
    from kgemb.reasoning.calibration import (
        brier_and_ece,
        calibration_examples,
        calibration_metrics,
        fit_calibration,
    )

    import kgemb

    if args.model is None:
        from kgemb.connectors import tabular

        kg = tabular.load("pykeen:UMLS")
        start = time.perf_counter()
        model = kgemb.train(
            kg,
            mode="fused",
            interaction="rotate",
            dim=args.dim,
            lr=args.lr,
            epochs=args.epochs,
            early_stopping=False,
            show_progress=False,
        )
        what = (
            f"UMLS, fused RotatE dim {args.dim}, {args.epochs} epochs ({time.perf_counter() - start:.0f} s)"
        )
        model.save(Path(tempfile.mkdtemp(prefix="kgemb-calibration-")))
    else:
        model = kgemb.load(args.model)
        what = f"{args.model}"
    quality = model.evaluate("test")
    rows = []
    for name, cal in (
        ("per-relation Platt (default)", fit_calibration(model)),
        ("one global Platt fit", fit_calibration(model, per_relation=False)),
    ):
        rows.append((name, calibration_metrics(model, cal, "test")))
    ex = calibration_examples(model, "test", seed=1)
    raw = torch.sigmoid(torch.as_tensor(ex.scores)).numpy()
    rows.append(("uncalibrated sigmoid(raw score)", brier_and_ece(raw, ex.labels, ex.weights)))
    lines = [
        f"Calibration on the test split: {what}; test MRR {quality['mrr']:.3f}, Hits@10 {quality['hits@10']:.3f}",
        "",
        "| calibration | Brier score | ECE |",
        "|---|---|---|",
        *(f"| {name} | {m['brier']:.3f} | {m['ece']:.3f} |" for name, m in rows),
        "",
        f"(always answering 0.5 scores a Brier of 0.250; test positives: {ex.positives}, "
        f"examples: {len(ex.scores):,})",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(report + "\n", encoding="utf-8")
        os.replace(tmp, args.out)
    return report


if __name__ == "__main__":
    main()
