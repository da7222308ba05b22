"""Where a training step's time goes, per mode, on a small graph: forward of the entity vectors, backward,
optimiser, and the rest (scores, loss, masks), in milliseconds per step of kgemb's 1-N loop, one process, one thread.

Issue 13's row "triples per second of a training epoch per mode (fused ≤ 1.3× the time of structure)": the
benchmark's triples/s includes validation and, on a shared machine, waiting for a core; this times the steps alone,
the modes one after the other in one process. A mode may name a fused combination and options, e.g.
``fused:elementwise`` or ``fused:convex:structure_dropout=0``.

    python benchmarks/step_time.py --dataset umls --modes structure,text,fused,fused:elementwise
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from linkpred import DEFAULT_DATA, load_graph  # noqa: E402


def time_mode(
    kg: Any, features: Any, mode: str, epochs: int, batch_size: int | None = None, steps: int | None = None
) -> dict[str, float]:
    """Milliseconds per step of ``epochs`` epochs, or of the first ``steps`` batches of one (after a few warm-up
    steps), split by phase."""
    import torch

    from kgemb.training import TrainingConfig, _make_loop, model_for

    name, *extra = mode.split(":")
    options: dict[str, Any] = {"mode": name, "show_progress": False, "batch_size": batch_size}
    for part in extra:  # a fused combination, or an option as NAME=JSON
        key, eq, value = part.partition("=")
        options.update({key: json.loads(value)} if eq else {"combination": part})
    cfg = TrainingConfig.from_options(options).resolved(len(kg.triples("train")), kg.num_entities)
    model = model_for(kg, cfg, features if name != "structure" else None)
    loop = _make_loop(model, kg.to_triples_factory("train"), cfg, features)
    model.train()
    spent = {"entity vectors": 0.0, "backward": 0.0, "optimizer": 0.0}
    rep, optimizer = model.entity_representations[0], loop.optimizer

    def timed(function: Any, phase: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            out = function(*args, **kwargs)
            spent[phase] += time.perf_counter() - started
            return out

        return wrapper

    rep.parts, rep.forward = timed(rep.parts, "entity vectors"), timed(rep.forward, "entity vectors")
    optimizer.step = timed(optimizer.step, "optimizer")
    backward = torch.Tensor.backward
    torch.Tensor.backward = timed(backward, "backward")
    try:
        torch.manual_seed(0)
        n = len(loop.examples)
        batches = [torch.randperm(n)[s : s + cfg.batch_size] for s in range(0, n, cfg.batch_size)]
        for rows in batches[:5]:
            loop._step(rows)
        spent = dict.fromkeys(spent, 0.0)
        started = time.perf_counter()
        timed_batches = [batches[i % len(batches)] for i in range(steps)] if steps else batches * epochs
        for rows in timed_batches:
            loop._step(rows)
        total = time.perf_counter() - started
    finally:
        torch.Tensor.backward = backward
    steps = len(timed_batches)
    out = {"step": total, **spent, "rest": total - sum(spent.values())}
    return {k: 1000 * v / steps for k, v in out.items()} | {
        "triples_per_s": sum(len(rows) for rows in timed_batches)
        / 2
        / total  # reciprocal examples: 2 a triple
    }


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["umls", "nations", "kinships", "wn18rr"], default="umls")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--modes", default="structure,text,fused")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per mode")
    parser.add_argument("--steps", type=int, help="time this many batches instead (large graphs)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: kgemb's choice for the graph")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)

    import torch

    from kgemb.features import compute_text_features
    from kgemb.training import resolve_encoder

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    kg = load_graph(args.dataset, args.data)
    modes = args.modes.split(",")
    features = None
    if any(not m.startswith("structure") for m in modes):
        features = compute_text_features(kg, resolve_encoder("default"), show_progress=False)
    rows = {mode: time_mode(kg, features, mode, args.epochs, args.batch_size, args.steps) for mode in modes}
    anchor = rows.get("structure", {}).get("step")
    lines = [
        f"Training step time on {args.dataset.upper()} ({kg.num_entities} entities, {len(kg.triples('train'))} "
        f"training triples), kgemb defaults{f', batch {args.batch_size}' if args.batch_size else ''}, 1 thread, "
        f"{f'{args.steps} steps' if args.steps else f'{args.epochs} epochs'} per mode, ms per step:",
        "",
        "| mode | step | entity vectors | backward | optimizer | rest | triples/s | × structure |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in rows.items():
        ratio = f"{r['step'] / anchor:.2f}" if anchor else ""
        lines.append(
            f"| {mode} | {r['step']:.2f} | {r['entity vectors']:.2f} | {r['backward']:.2f} | {r['optimizer']:.2f} "
            f"| {r['rest']:.2f} | {r['triples_per_s']:,.0f} | {ratio} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)
    return report


if __name__ == "__main__":
    main()
