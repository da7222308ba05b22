"""An evaluation report with plots: ``kgemb evaluate DIR --report OUT_DIR``.

Writes ``report.md`` and four PNGs into ``OUT_DIR``: training loss and validation MRR per epoch, the distribution of
filtered ranks on the evaluated split, a calibration reliability diagram, and a 2-D projection (PCA) of the entity
vectors coloured by type. Plots are drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kgemb.errors import DependencyError

if TYPE_CHECKING:
    from kgemb.model import TrainedModel

MAX_POINTS = 5000  # entities drawn in the projection
MAX_TYPES = 8  # types with a colour of their own; the rest are "other"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise DependencyError("the report needs matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def plot_training(model: TrainedModel, path: Path) -> bool:
    """Loss per epoch and validation MRR per check (of each part of a late fused model, trained one after the
    other); False when the model kept no history."""
    training = model.config.get("training", {})
    runs = training.get("parts") or {"": training}
    if not any(run.get("loss_history") or run.get("valid_history") for run in runs.values()):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax2 = ax.twinx()
    for (part, run), style in zip(runs.items(), ("-", "--"), strict=False):
        name = f" ({part} part)" if part else ""
        losses = run.get("loss_history") or []
        if losses:
            ax.plot(range(1, len(losses) + 1), losses, style, color="tab:blue", label=f"training loss{name}")
        if run.get("valid_history"):
            epochs, mrr = zip(*run["valid_history"], strict=True)
            ax2.plot(epochs, mrr, "o" + style, color="tab:orange", label=f"validation MRR{name}")
    ax.set_ylabel("loss", color="tab:blue")
    ax.set_xlabel("epoch")
    ax2.set_ylabel("validation MRR", color="tab:orange")
    ax2.set_ylim(0, 1)
    if len(runs) > 1:
        handles = ax.get_legend_handles_labels()
        more = ax2.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize="small")
    ax.set_title(f"training: {model.config.get('mode')} {model.config.get('interaction')}")
    _save(fig, path)
    plt.close(fig)
    return True


def plot_ranks(ranks: np.ndarray, path: Path, split: str) -> None:
    """Histogram of filtered ranks (log-spaced bins)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    top = max(2.0, float(ranks.max()))
    bins = np.unique(np.geomspace(1, top + 1, 30).astype(int))
    ax.hist(ranks, bins=bins, color="tab:green")
    ax.set_xscale("log")
    ax.set_xlabel("filtered rank of the true entity (log scale)")
    ax.set_ylabel("queries")
    ax.set_title(f"rank distribution on {split} ({len(ranks)} queries, both directions)")
    _save(fig, path)
    plt.close(fig)


def plot_reliability(probabilities: np.ndarray, labels: np.ndarray, weights: np.ndarray, path: Path) -> None:
    """Reliability diagram: observed frequency of true links against the calibrated probability, 10 bins."""
    plt = _pyplot()
    bins = 10
    which = np.minimum((probabilities * bins).astype(np.int64), bins - 1)
    centres, observed, mass = [], [], []
    for b in range(bins):
        sel = which == b
        w = weights[sel].sum()
        if w > 0:
            centres.append(float((weights[sel] * probabilities[sel]).sum() / w))
            observed.append(float((weights[sel] * labels[sel]).sum() / w))
            mass.append(float(w))
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    sizes = 300 * np.asarray(mass) / max(mass) if mass else []
    ax.scatter(centres, observed, s=sizes, color="tab:red", label="bins (size = weight)")
    ax.plot(centres, observed, color="tab:red")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("calibrated probability")
    ax.set_ylabel("fraction of true links")
    ax.legend(loc="upper left")
    ax.set_title("reliability diagram")
    _save(fig, path)
    plt.close(fig)


def plot_projection(model: TrainedModel, path: Path, seed: int = 0) -> None:
    """PCA of the entity vectors to 2-D, coloured by each entity's first type."""
    plt = _pyplot()
    vectors = np.asarray(model.entity_vectors(), dtype=np.float64)
    kg = model.kg
    ids = np.arange(len(vectors))
    if len(ids) > MAX_POINTS:
        ids = np.sort(np.random.default_rng(seed).choice(len(ids), MAX_POINTS, replace=False))
    x = vectors[ids] - vectors[ids].mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    types = [_short(kg.entities[i].types[0]) if kg.entities[i].types else "untyped" for i in ids]
    common = [t for t, _ in Counter(types).most_common(MAX_TYPES)]
    types = [t if t in common else "other" for t in types]
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    for name in [*common, "other"]:
        sel = np.array([t == name for t in types])
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, label=f"{name} ({int(sel.sum())})")
    ax.legend(markerscale=3, fontsize="small")
    ax.set_title(f"entity vectors, PCA to 2-D ({len(ids)} of {len(vectors)} entities)")
    _save(fig, path)
    plt.close(fig)


def _short(iri: str) -> str:
    return iri.rstrip("/#").rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def write_report(
    model: TrainedModel,
    directory: str | os.PathLike,
    out_dir: str | os.PathLike,
    metrics: dict[str, float],
    split: str = "test",
) -> Path:
    """Draw the plots and write ``report.md`` into ``out_dir``; return the report's path."""
    from kgemb.reasoning.calibration import calibration_examples, load_calibration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = [
        f"# kgemb evaluation report: {Path(directory).name}",
        "",
        f"Model: mode `{model.config.get('mode')}`, interaction `{model.config.get('interaction')}`, "
        f"dim {model.config.get('dim')}; graph: {model.kg.num_entities} entities, "
        f"{model.kg.num_relations} relations.",
        "",
        f"## Metrics on `{split}`",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v if k == 'n' else f'{v:.4f}'} |" for k, v in metrics.items()),
        "",
    ]
    if plot_training(model, out / "training.png"):
        sections += ["## Training", "", "![training loss and validation MRR](training.png)", ""]
    ranks = model.filtered_ranks(split)
    plot_ranks(ranks, out / "ranks.png", split)
    sections += ["## Ranks", "", f"![rank distribution on {split}](ranks.png)", ""]
    calibration = load_calibration(directory, model)
    if calibration is not None and len(model.kg.triples(split)):
        import torch

        ex = calibration_examples(model, split, seed=1)
        probs = calibration.probability(torch.as_tensor(ex.scores), torch.as_tensor(ex.relations)).numpy()
        plot_reliability(np.asarray(probs, dtype=np.float64), ex.labels, ex.weights, out / "reliability.png")
        sections += ["## Calibration", "", "![reliability diagram](reliability.png)", ""]
    plot_projection(model, out / "projection.png")
    sections += ["## Entity vectors", "", "![PCA projection coloured by type](projection.png)", ""]
    report = out / "report.md"
    tmp = report.with_name("report.md.tmp")
    tmp.write_text("\n".join(sections), encoding="utf-8")
    os.replace(tmp, report)
    return report
