"""Link-prediction quality and cost of kgemb's three modes against PyKEEN's own pipeline, on the same splits.

    nice python benchmarks/linkpred.py --dataset umls --out benchmarks/results/linkpred_umls.md
    nice python benchmarks/linkpred.py --dataset wn18rr --epochs 20 --train-fraction 0.25 --out report.md
    python benchmarks/linkpred.py --dataset umls --incremental-only

UMLS: PyKEEN's splits with the texts of ``../shared/data/umls``; rows ``structure``, ``text``, ``fused`` (attention
pooling over each entity's texts), ``fused`` with mean pooling, and ``pykeen.pipeline`` with the same interaction,
dimension, epochs, batch size and negatives (PyKEEN's own defaults otherwise) as the side-by-side baseline.
WN18RR: ``../shared/data/wn18rr`` (labels and glosses) transductive and, with ``--inductive``, on an inductive re-split
(test entities never seen in training). ``--incremental``: train on 80% of the training triples with 5% of the
entities held out, then ``update`` with the rest; reports the original test MRR before and after and the MRR on
the new triples. ``--finetune-links N``: also each text-using row with the default encoder fine-tuned for N epochs
on that split's training triples first (``kgemb finetune --pairs links``); ``--encoder DIR``: every text-using row
(the incremental one too) with that saved encoder instead (one fine-tuning shared by the rows). Every row runs in a fresh process, so
its peak memory (max RSS) is its own. Filtered MRR and Hits@k over both directions (PyKEEN's RankBasedEvaluator);
minutes are wall-clock training time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


# ------------------------------------------------------------------------------------------------- graphs
def load_graph(dataset: str, data: Path, train_fraction: float = 1.0, inductive: bool = False, seed: int = 0):
    """The benchmark graph: UMLS (PyKEEN's splits) or WN18RR (its own splits), optionally subsampled/re-split."""
    from kgemb.connectors import tabular

    os.environ.setdefault("KGEMB_SHARED_DATA", str(data))
    if dataset == "medical":
        kg = medical_graph()
    elif dataset in ("umls", "nations", "kinships"):
        kg = tabular.load(f"pykeen:{dataset.capitalize() if dataset != 'umls' else 'UMLS'}")
    else:
        kg = tabular.load(data / "wn18rr", label_separator=", ")
    if inductive:
        kg = kg.split(valid=0.05, test=0.05, seed=seed, inductive=True)
    if train_fraction < 1.0:
        kg = subsample_train(kg, train_fraction, seed)
    return kg


def medical_graph():
    """``make demo``'s graph (examples/medical: 600 diseases, 200 phenotypes), split as the demo splits it."""
    import tempfile

    from kgemb.connectors import rdf

    sys.path.insert(0, str(REPO / "examples" / "medical"))
    import build_kg

    with tempfile.TemporaryDirectory() as tmp:
        ttl = Path(tmp) / "kg.ttl"
        build_kg.build(ttl, n_phenotypes=200, min_links=5, max_diseases=600)
        return rdf.load(ttl).split(valid=0.05, test=0.1, seed=0)


def per_direction(ranks: list[np.ndarray]) -> dict[str, float]:
    """MRR of head and tail queries from PyKEEN's rank lists (head first, as rank_metrics returns them)."""
    return {"mrr_head": float(np.mean(1.0 / ranks[0])), "mrr_tail": float(np.mean(1.0 / ranks[1]))}


def run_popularity(spec: dict[str, Any]) -> dict[str, Any]:
    """The popularity baseline: a candidate scores by how often it is the answer of the relation in training."""
    kg = load_graph(spec["dataset"], Path(spec["data"]), spec["train_fraction"])
    train, test = kg.triples("train"), kg.triples("test")
    n, nr = kg.num_entities, kg.num_relations
    known = {(a, r, b) for split in kg.splits.values() for a, r, b in split.tolist()}
    ranks: list[list[float]] = [[], []]
    for side, answer_col in enumerate((0, 2)):  # head queries, then tail queries
        counts = np.zeros((nr, n))
        np.add.at(counts, (train[:, 1], train[:, answer_col]), 1)
        for row in test.tolist():
            s = counts[row[1]].copy()
            for e in range(n):
                triple = (e, row[1], row[2]) if side == 0 else (row[0], row[1], e)
                if e != row[answer_col] and triple in known:
                    s[e] = -np.inf
            true = s[row[answer_col]]
            ranks[side].append((s > true).sum() + 0.5 * ((s == true).sum() - 1) + 1)
    both = np.concatenate([np.asarray(r) for r in ranks])
    return {
        "mrr": float(np.mean(1 / both)),
        "hits@1": float(np.mean(both <= 1)),
        "hits@3": float(np.mean(both <= 3)),
        "hits@10": float(np.mean(both <= 10)),
        "n": len(test),
        **per_direction([np.asarray(r) for r in ranks]),
        "minutes": 0.0,
        "epochs": 0,
        "best_epoch": None,
    }


def subsample_train(kg, fraction: float, seed: int):
    """A copy of ``kg`` with a random ``fraction`` of its training triples (valid and test unchanged)."""
    from kgemb.graph import KnowledgeGraph

    train = kg.triples("train")
    keep = np.sort(np.random.default_rng(seed).choice(len(train), int(len(train) * fraction), replace=False))
    splits = {**kg.splits, "train": train[keep]}
    kept = set(np.unique(splits["train"][:, 1]).tolist())
    for name in ("valid", "test"):  # a relation must occur in training; drop the rest (reported in metadata)
        arr = splits[name]
        splits[name] = arr[np.isin(arr[:, 1], list(kept))]
    meta = {**kg.metadata, "train_fraction": fraction}
    return KnowledgeGraph(kg.entities, kg.relations, kg.relation_labels, splits, meta)


# ------------------------------------------------------------------------------------------------- runs
#: the rows of --finetune-links
TUNED = "encoder fine-tuned on links"


def run_kgemb(spec: dict[str, Any]) -> dict[str, Any]:
    """One kgemb training run and its test metrics (in a child process)."""
    import torch

    import kgemb

    warnings.simplefilter("ignore")
    if spec["options"].get("threads"):
        torch.set_num_threads(spec["options"]["threads"])
    kg = load_graph(spec["dataset"], Path(spec["data"]), spec["train_fraction"], spec.get("inductive", False))
    started, cpu = time.perf_counter(), time.process_time()
    options = training_options(spec)
    tuning = {}
    if spec.get("finetune_links"):  # on this split's training triples only: the held-out entities stay unseen
        from kgemb.encoders.finetune import finetune_for_graph

        threads = options.get("threads") or torch.get_num_threads()
        options["encoder"] = finetune_for_graph(
            kg, pairs="links", epochs=spec["finetune_links"], threads=threads
        )
        tuning = {
            "finetune_minutes": [(time.perf_counter() - started) / 60, (time.process_time() - cpu) / 60]
        }
    model = kgemb.train(kg, **options)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    fit = model.config["training"].get("fit_seconds") or seconds
    if torch.cuda.is_available() and spec["options"].get("device") != "cpu":
        model.pykeen_model.to("cuda")  # rank on the GPU too (the evaluator follows the model's device)
    ranks: list[np.ndarray] = []
    metrics = model.evaluate("test", max_triples=spec.get("max_eval"), ranks_out=ranks)
    test_graph = {}
    if spec.get("inductive"):  # also BLP's protocol: rank among the entities of the test triples only
        among = model.evaluate("test", max_triples=spec.get("max_eval"), candidates="split")
        entities = len(np.unique(kg.triples("test")[:, [0, 2]]))
        test_graph = {"test_graph": [among["mrr"], among["hits@10"], entities]}
    anchors_kept = {}
    if model.pykeen_model.irreflexive is not None:  # the same model, its irreflexive relations' anchors kept
        anchors_kept = {"anchors_kept": _test_with(model, spec, model.pykeen_model, "irreflexive", None)}
    rules = model.config.get("rules") or {}
    text = model.config.get("text_channel") or {}
    similarity_off = {}
    rep = model.representation
    if text.get("used") and rep.similarity:  # the same model, its similarity channel's weights at 0
        rows = model.pykeen_model.relation_representations[0]._embeddings.weight
        folded = rows.detach().clone()
        with torch.no_grad():  # the rows' last block: [r ; u 1], a late model's [r_s ; v r_t ; v u 1]
            rows[:, rows.shape[1] - rows.shape[1] * rep.dim // rep.out_dim :] = 0
        try:
            off = model.evaluate("test", max_triples=spec.get("max_eval"))
        finally:
            with torch.no_grad():
                rows.copy_(folded)
        similarity_off = {"similarity_off": [off["mrr"], off["hits@1"], off["hits@10"]]}
        if "valid_mrr_text_alone" in text:  # a late model: its text part's validation MRR without the channel
            similarity_off["valid_text_alone"] = text["valid_mrr_text_alone"]
    votes_off = {}
    channel = model.pykeen_model.rule_channel
    if channel is not None and channel.votes is not None:  # the same model, its vote's weights at 0
        zeros = torch.zeros_like(channel.vote_weights)
        recorded = rules["votes"]
        votes_off = {
            "votes_off": _test_with(model, spec, channel, "vote_weights", zeros),
            "valid_votes": [recorded["valid_mrr_embedding"], recorded["valid_mrr_combined"]],
        }
    return {
        **metrics,
        **per_direction(ranks),
        **test_graph,
        **tuning,
        **anchors_kept,
        **similarity_off,
        **votes_off,
        "rules_used": rules.get("used"),
        "valid_mrr_without_rules": rules.get("valid_mrr_embedding"),
        "valid_mrr_combined": rules.get("valid_mrr_combined"),
        # a late model: its structural part, its text part (with their rules), the sum; a text model: the model,
        # the similarity channel's largest weight, the combination
        "valid_text_channel": [
            text.get(k)
            for k in (
                ("valid_mrr_structure", "valid_mrr_text", "valid_mrr_combined")
                if "valid_mrr_structure" in text
                else ("valid_mrr_embedding", "valid_mrr_similarity_first", "valid_mrr_combined")
                if "valid_mrr_similarity_first" in text
                else ("valid_mrr_embedding", "valid_mrr_text_first", "valid_mrr_combined")
            )
        ]
        if text
        else None,
        "minutes": seconds / 60,
        "cpu_minutes": cpu / 60,
        "triples_per_s": len(kg.triples("train")) * model.config["training"]["epochs_run"] / fit,
        "triples_per_cpu_s": len(kg.triples("train"))
        * model.config["training"]["epochs_run"]
        / max(model.config["training"].get("fit_cpu_seconds") or fit, 1e-9),
        "epochs": model.config["training"]["epochs_run"],
        "best_epoch": model.config["training"].get("best_epoch"),
        # a late fused model: its structural and text parts' epochs (best), trained one after the other
        "part_epochs": {
            mode: [part["epochs_run"], part.get("best_epoch")]
            for mode, part in (model.config["training"].get("parts") or {}).items()
        }
        or None,
    }


def run_pykeen(spec: dict[str, Any]) -> dict[str, Any]:
    """PyKEEN's own pipeline with the same interaction and budget (in a child process)."""
    import torch
    from pykeen.pipeline import pipeline

    from kgemb.evaluation import rank_metrics

    warnings.simplefilter("ignore")
    kg = load_graph(spec["dataset"], Path(spec["data"]), spec["train_fraction"])
    o = spec["options"]
    small = len(kg.triples("train")) < 20_000
    torch.set_num_threads(o.get("threads") or (1 if small else torch.get_num_threads()))  # as kgemb does
    started, cpu = time.perf_counter(), time.process_time()
    result = pipeline(
        training=kg.to_triples_factory("train"),
        testing=kg.to_triples_factory("test"),
        validation=kg.to_triples_factory("valid"),
        model=o["interaction"],
        model_kwargs={
            "embedding_dim": o["dim"] // 2 if o["interaction"] in ("rotate", "complex") else o["dim"]
        },
        training_kwargs={"num_epochs": o["epochs"], "batch_size": o["batch_size"], "use_tqdm": False},
        negative_sampler_kwargs={"num_negs_per_pos": o["negatives"]},
        random_seed=0,
        evaluator_kwargs={"filtered": True},
        evaluation_kwargs={"use_tqdm": False},
        use_testing_data=False,
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    metrics = rank_metrics(result.model, kg.triples("test"), [kg.triples(s) for s in kg.splits])
    return {
        **metrics,
        "minutes": seconds / 60,
        "cpu_minutes": cpu / 60,
        "triples_per_s": len(kg.triples("train")) * o["epochs"] / seconds,
        "epochs": o["epochs"],
        "best_epoch": None,
    }


def _test_with(model: Any, spec: dict[str, Any], owner: Any, name: str, value: Any) -> list[float]:
    """Test MRR, Hits@1 and Hits@10 of ``model`` with ``owner.name`` set to ``value`` for the evaluation only."""
    kept = getattr(owner, name)
    setattr(owner, name, value)
    try:
        off = model.evaluate("test", max_triples=spec.get("max_eval"))
    finally:
        setattr(owner, name, kept)
    return [off["mrr"], off["hits@1"], off["hits@10"]]


def training_options(spec: dict[str, Any]) -> dict[str, Any]:
    """A row's ``kgemb.train`` options: its spec's, with ``--encoder``'s saved encoder for a text-using mode."""
    import kgemb

    options = dict(spec["options"])
    if spec.get("encoder") and options.get("mode") != "structure":
        options["encoder"] = kgemb.load_encoder(spec["encoder"])
    return options


def run_incremental(spec: dict[str, Any]) -> dict[str, Any]:
    """Train on 80% of train with 5% of entities held out, then update with the rest (in a child process)."""
    import torch

    import kgemb
    from kgemb.evaluation import rank_metrics
    from kgemb.graph import KnowledgeGraph

    warnings.simplefilter("ignore")
    if spec["options"].get("threads"):
        torch.set_num_threads(spec["options"]["threads"])
    full = load_graph(spec["dataset"], Path(spec["data"]), spec["train_fraction"])
    rng = np.random.default_rng(0)
    n = full.num_entities
    new_entities = np.sort(rng.choice(n, max(1, n // 20), replace=False))
    old = np.setdiff1d(np.arange(n), new_entities)
    is_old = np.zeros(n, dtype=bool)
    is_old[old] = True
    remap = -np.ones(n, dtype=np.int64)
    remap[old] = np.arange(len(old))

    def among_old(arr):
        return arr[is_old[arr[:, 0]] & is_old[arr[:, 2]]]

    train = full.triples("train")
    old_train = among_old(train)
    keep = rng.random(len(old_train)) < 0.8
    initial_train = old_train[keep]

    def to_old(arr):
        return np.stack([remap[arr[:, 0]], arr[:, 1], remap[arr[:, 2]]], axis=1)

    splits = {
        "train": to_old(initial_train),
        "valid": to_old(among_old(full.triples("valid"))),
        "test": to_old(among_old(full.triples("test"))),
    }
    kg0 = KnowledgeGraph([full.entities[i] for i in old], full.relations, full.relation_labels, splits)
    started = time.perf_counter()
    # update() encodes the new entities with the encoder the base model was trained with
    base = kgemb.train(kg0, **training_options(spec))
    base_minutes = (time.perf_counter() - started) / 60
    device = "cuda" if torch.cuda.is_available() and spec["options"].get("device") != "cpu" else "cpu"
    # the same filter (every true triple of the full graph) before and after, so the MRRs compare
    filters = [full.triples(s) for s in full.splits]
    filters_old = [to_old(among_old(f)) for f in filters]
    old_test = among_old(full.triples("test"))
    initial_set = {tuple(t) for t in initial_train.tolist()}
    new_triples = np.array([t for t in train.tolist() if tuple(t) not in initial_set])
    sample = new_triples[np.sort(rng.choice(len(new_triples), min(3000, len(new_triples)), replace=False))]
    sample_old = sample[is_old[sample[:, 0]] & is_old[sample[:, 2]]]
    new_test = full.triples("test")
    new_test = new_test[~(is_old[new_test[:, 0]] & is_old[new_test[:, 2]])]
    base.pykeen_model.to(device)
    before = rank_metrics(base.pykeen_model, to_old(old_test), filters_old)["mrr"]
    new_before = rank_metrics(base.pykeen_model, to_old(sample_old), filters_old)["mrr"]
    base.pykeen_model.cpu()
    # the update: the full graph (held-out entities and the other 20% of training triples come in)
    started = time.perf_counter()
    given = {k: spec[k] for k in ("replay",) if spec.get(k) is not None}
    updated = base.update(full, epochs=spec.get("update_epochs"), **given)
    update_minutes = (time.perf_counter() - started) / 60
    updated.pykeen_model.to(device)
    return {
        "old_test_before": before,
        "old_test_after": rank_metrics(updated.pykeen_model, old_test, filters)["mrr"],
        "new_train_before": new_before,
        "new_train_after": rank_metrics(updated.pykeen_model, sample, filters)["mrr"],
        "new_entity_test_after": rank_metrics(updated.pykeen_model, new_test, filters)["mrr"]
        if len(new_test)
        else None,
        "new_entities": len(new_entities),
        "new_triples": len(new_triples),
        "base_minutes": base_minutes,
        "update_minutes": update_minutes,
    }


def _child(target, spec, queue) -> None:
    try:
        out = target(spec)
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        queue.put(out)
    except BaseException as exc:  # reported as the row's result
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def in_children(
    jobs: list[tuple[Any, dict[str, Any]]], parallel: int = 1, log: Path | None = None
) -> list[dict[str, Any]]:
    """Run each ``target(spec)`` in a fresh process (its own peak memory), ``parallel`` at a time, in order;
    each result is also appended to ``log`` (JSON lines) as soon as it is in."""
    ctx = multiprocessing.get_context("spawn")
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    running: list[tuple[int, Any, Any]] = []
    pending = list(enumerate(jobs))
    while pending or running:
        while pending and len(running) < parallel:
            i, (target, spec) = pending.pop(0)
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(target, spec, queue))
            proc.start()
            running.append((i, proc, queue))
        i, proc, queue = running.pop(0)
        results[i] = queue.get()
        proc.join()
        print(f"  done: {jobs[i][1].get('label', i)}: {results[i]}", file=sys.stderr, flush=True)
        if log is not None:
            with open(log, "a") as f:
                f.write(json.dumps({"label": jobs[i][1].get("label"), **results[i]}) + "\n")
    return results  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------- report
def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| data | setting | model | MRR | Hits@1 | Hits@3 | Hits@10 | test n | epochs (best) | train min "
        "| CPU min | triples/s | triples per CPU-s | peak MB | MRR head / tail | valid MRR, rules off / on "
        "| valid MRR, text channel: fused (no rules) / text part / with the channel (late: structure part / "
        "text part / their sum, each with its rules) "
        "| inductive, among the test triples' entities: MRR / Hits@10 (entities) |"
    )
    lines = [head, "|" + "---|" * 18]
    for r in rows:
        m = r["result"]
        if "error" in m:
            lines.append(f"| {r['data']} | {r['setting']} | {r['model']} | error: {m['error']} |" + " |" * 14)
            continue
        epochs = f"{m['epochs']}" + (f" ({m['best_epoch']})" if m.get("best_epoch") else "")
        if m.get("part_epochs"):
            epochs = " + ".join(
                f"{ran}" + (f" ({best})" if best else "") for ran, best in m["part_epochs"].values()
            )
        lines.append(
            f"| {r['data']} | {r['setting']} | {r['model']} | {_fmt(m['mrr'])} | {_fmt(m['hits@1'])} | "
            f"{_fmt(m['hits@3'])} | {_fmt(m['hits@10'])} | {m['n']} | {epochs} | {_fmt(m['minutes'], 1)} | "
            f"{_fmt(m.get('cpu_minutes'), 1)} | {_fmt(m.get('triples_per_s'), 0)} | "
            f"{_fmt(m.get('triples_per_cpu_s'), 0)} | {_fmt(m['peak_mb'], 0)} | "
            f"{_fmt(m.get('mrr_head'))} / {_fmt(m.get('mrr_tail'))} | "
            f"{_fmt(m.get('valid_mrr_without_rules'))} / {_fmt(m.get('valid_mrr_combined'))} | "
            + " / ".join(_fmt(x) for x in (m.get("valid_text_channel") or []))
            + " | "
            + (
                f"{_fmt(m['test_graph'][0])} / {_fmt(m['test_graph'][1])} ({m['test_graph'][2]:,})"
                if m.get("test_graph")
                else ""
            )
            + " |"
        )
    for r in rows:
        if r["result"].get("anchors_kept"):
            mrr, h1, h10 = r["result"]["anchors_kept"]
            lines.append(
                f"\n{r['setting']} {r['model']}: the same model with its irreflexive relations' anchors kept as "
                f"candidates (`irreflexive=False`'s scoring): MRR {mrr:.3f}, Hits@1 {h1:.3f}, Hits@10 {h10:.3f}."
            )
        if r["result"].get("similarity_off"):
            mrr, h1, h10 = r["result"]["similarity_off"]
            lines.append(
                f"\n{r['setting']} {r['model']}: the same model with its similarity channel's weights set to 0 (its "
                f"rules as fitted beside the channel): MRR {mrr:.3f}, Hits@1 {h1:.3f}, Hits@10 {h10:.3f}."
                + (
                    f" Its text part's validation MRR (no rules): {r['result']['valid_text_alone']:.3f} without "
                    "its similarity channel."
                    if r["result"].get("valid_text_alone") is not None
                    else ""
                )
            )
        if r["result"].get("votes_off"):
            mrr, h1, h10 = r["result"]["votes_off"]
            before, after = r["result"]["valid_votes"]
            lines.append(
                f"\n{r['setting']} {r['model']}: the same model with its text-neighbour vote's weights set to 0: "
                f"MRR {mrr:.3f}, Hits@1 {h1:.3f}, Hits@10 {h10:.3f} (validation MRR {before:.3f} without the "
                f"vote, {after:.3f} with it)."
            )
        if r["result"].get("finetune_minutes"):
            wall, cpu = r["result"]["finetune_minutes"]
            lines.append(
                f"\n{r['setting']} {r['model']}: its train and CPU minutes include the encoder's fine-tuning on the "
                f"split's training triples, {wall:.1f} wall / {cpu:.1f} CPU minutes."
            )
    return "\n".join(lines)


#: published filtered test MRRs (both directions), shown beside the measured rows
LITERATURE = {
    "wn18rr": [
        ("RotatE (Sun et al. 2019)", 0.476),
        ("ComplEx 1-vs-all, 128 dims (LibKGE, Ruffinelli et al. 2020)", 0.475),
        ("SAFRAN rules, CPU", 0.50),
        ("NBFNet", 0.551),
        ("CSProm-KG", 0.575),
        ("SimKGC (text bi-encoder, GPU)", 0.666),
    ],
    "umls": [("ConvE (Dettmers et al. 2018)", 0.94)],
}


def literature_table(dataset: str) -> str:
    rows = LITERATURE.get(dataset)
    if not rows:
        return ""
    lines = ["Published (not measured here):", "", "| model | MRR |", "|---|---|"]
    lines += [f"| {name} | {mrr:.3f} |" for name, mrr in rows]
    return "\n".join(lines)


def incremental_table(data: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"incremental ({data}): error: {r['error']}"
    return "\n".join(
        [
            f"Incremental learning on {data}: base model on 80% of the training triples without "
            f"{r['new_entities']} held-out entities, then `update` with {r['new_triples']} new triples "
            "(the other 20% and every triple of the new entities).",
            "",
            "| measure | before update | after update |",
            "|---|---|---|",
            f"| MRR, original test triples (old entities) | {_fmt(r['old_test_before'])} | {_fmt(r['old_test_after'])} |",
            f"| MRR, the new training triples (sample of 3,000) | {_fmt(r['new_train_before'])} "
            "(those between old entities) | "
            f"{_fmt(r['new_train_after'])} |",
            f"| MRR, test triples of the new entities | - | {_fmt(r['new_entity_test_after'])} |",
            f"| minutes | {_fmt(r['base_minutes'], 1)} (base) | {_fmt(r['update_minutes'], 1)} (update) |",
            f"| peak MB | | {_fmt(r['peak_mb'], 0)} |",
        ]
    )


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", choices=["umls", "wn18rr", "nations", "kinships", "medical"], default="umls"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--modes", default="structure,text,fused")
    parser.add_argument("--interaction", default="complex")
    parser.add_argument(
        "--baseline-interaction", default="rotate", help="PyKEEN pipeline's interaction (default: RotatE)"
    )
    parser.add_argument("--dim", type=int, default=None, help="default: kgemb's")
    parser.add_argument("--epochs", type=int, default=None, help="default: kgemb's choice for the graph")
    parser.add_argument("--train-fraction", type=float, default=1.0, help="subsample the training triples")
    parser.add_argument(
        "--max-eval", type=int, default=None, help="evaluate a fixed sample of the test triples"
    )
    parser.add_argument("--inductive", action="store_true", help="WN18RR: also the inductive re-split")
    parser.add_argument("--inductive-only", action="store_true", help="only the inductive re-split's rows")
    parser.add_argument(
        "--finetune-links",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="also each text-using mode with the encoder fine-tuned on the split's training triples for EPOCHS "
        "passes first (kgemb finetune --pairs links); its time counts in the row's",
    )
    parser.add_argument(
        "--finetuned-only",
        action="store_true",
        help="with --finetune-links: the text-using modes' fine-tuned rows only (not the default encoder's)",
    )
    parser.add_argument(
        "--encoder",
        type=Path,
        metavar="DIR",
        help="every text-using row reads the texts with this saved encoder (e.g. kgemb finetune's output) "
        "instead of the default one: rows compared on one fine-tuned encoder without fine-tuning it per row",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip PyKEEN's pipeline")
    parser.add_argument("--no-pooling", action="store_true", help="skip the mean-pooling row")
    parser.add_argument(
        "--incremental", action="store_true", help="also the incremental-learning measurement"
    )
    parser.add_argument("--incremental-only", action="store_true")
    parser.add_argument("--update-epochs", type=int, default=None, help="default: kgemb's")
    parser.add_argument("--replay", type=float, default=None, help="default: kgemb's")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: kgemb's choice)")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time limit per row")
    parser.add_argument("--parallel", type=int, default=1, help="rows run at the same time (own processes)")
    parser.add_argument("--option", action="append", default=[], help="extra kgemb.train option NAME=JSON")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--log", type=Path, help="append each run's result here (JSON lines) as it ends")
    args = parser.parse_args(argv)

    from kgemb.training import TrainingConfig

    if args.encoder and args.finetune_links:
        parser.error("--encoder and --finetune-links both choose the encoder; give one")
    kg = load_graph(args.dataset, args.data, args.train_fraction)
    given = {"dim": args.dim} if args.dim else {}
    settings = TrainingConfig(epochs=args.epochs, interaction=args.interaction, **given).resolved(
        len(kg.triples("train")), kg.num_entities
    )
    options: dict[str, Any] = {
        "interaction": args.interaction,
        "dim": settings.dim,
        "epochs": settings.epochs,
        "show_progress": False,
        "threads": args.threads,
        "device": args.device,
        "max_minutes": args.max_minutes,
        "seed": 0,
    }
    for item in args.option:
        name, _, value = item.partition("=")
        options[name] = json.loads(value)
    base = {"dataset": args.dataset, "data": str(args.data), "train_fraction": args.train_fraction}
    base["max_eval"] = args.max_eval
    base["encoder"] = str(args.encoder) if args.encoder else None
    data_name = args.dataset.upper() + (
        f" ({args.train_fraction:.0%} of train)" if args.train_fraction < 1 else ""
    )
    jobs: list[tuple[Any, dict[str, Any]]] = []
    labels: list[tuple[str, str]] = []

    def record(setting: str, model: str, target, spec: dict[str, Any]) -> None:
        jobs.append((target, {**base, **spec, "label": f"{setting} {model}"}))
        labels.append((setting, model))

    def record_mode(setting: str, mode: str, spec: dict[str, Any]) -> None:
        """A mode's row with the default encoder and, with --finetune-links, its fine-tuned row (text-using modes;
        --finetuned-only: that one alone)."""
        tuned = args.finetune_links and mode != "structure"
        if not (tuned and args.finetuned_only):
            record(setting, f"kgemb {mode}", run_kgemb, spec)
        if tuned:
            record(
                setting, f"kgemb {mode}, {TUNED}", run_kgemb, {**spec, "finetune_links": args.finetune_links}
            )

    if not (args.incremental_only or args.inductive_only):
        for mode in args.modes.split(","):
            record_mode("transductive", mode, {"options": {**options, "mode": mode}})
        if "fused" in args.modes and not args.no_pooling:
            record(
                "transductive",
                "kgemb fused, mean pooling",
                run_kgemb,
                {"options": {**options, "mode": "fused", "pooling": "mean"}},
            )
        if args.dataset == "medical":
            record("transductive", "popularity baseline", run_popularity, {})
        if not args.no_baseline:
            pykeen_options = {
                **options,
                "interaction": args.baseline_interaction,
                "batch_size": settings.batch_size,
                "negatives": 32,
            }
            record(
                "transductive",
                f"pykeen.pipeline {args.baseline_interaction} (same epochs)",
                run_pykeen,
                {"options": pykeen_options},
            )
    if (args.inductive or args.inductive_only) and not args.incremental_only:
        for mode in args.modes.split(","):
            record_mode("inductive", mode, {"options": {**options, "mode": mode}, "inductive": True})
    if args.incremental or args.incremental_only:
        spec = {
            "options": {**options, "mode": "fused"},
            "update_epochs": args.update_epochs,
            "replay": args.replay,
        }
        jobs.append((run_incremental, {**base, **spec, "label": "incremental"}))
    print(f"{len(jobs)} runs on {data_name}, {args.parallel} at a time ...", file=sys.stderr, flush=True)
    results = in_children(jobs, args.parallel, args.log)
    rows = [
        {"data": data_name, "setting": setting, "model": model, "result": result}
        for (setting, model), result in zip(labels, results, strict=False)
    ]
    extra = {k: v for k, v in options.items() if k not in ("show_progress", "seed") and v is not None}
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    report = [
        f"Link prediction on {data_name}, filtered, both directions. Options: {json.dumps(extra)}; kgemb "
        "defaults otherwise."
        + (f" Text-using rows' encoder: {args.encoder}." if args.encoder else "")
        + f" Machine: {os.cpu_count()} CPU cores, {gpu}; {args.parallel} run(s) at a time.",
        "",
    ]
    if rows:
        report.append(table(rows))
    if LITERATURE.get(args.dataset):
        report += ["", literature_table(args.dataset)]
    if args.incremental or args.incremental_only:
        report += ["", incremental_table(data_name, results[-1])]
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, args.out)
    return text


if __name__ == "__main__":
    main()
