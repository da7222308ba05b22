"""The text-neighbour vote on a saved model (issue 13): its neighbours and temperature, and a control.

For a saved model of a graph with entities without training triples (e.g. a text model of WN18RR's inductive
split), per setting ``k:temperature`` the vote (:class:`kgemb.channels.TextVotes`) is built, its weights chosen on
validation as training chooses them (:func:`kgemb.channels.fit_vote_weights`, beside the model's rules as they
are), and the model evaluated on test with it. The control (``--control``) is a channel that adds its weight to
every candidate without training triples, for anchors with training answers of the relation, weights chosen the
same way: what a vote for unseen candidates alone would learn (on an inductive split every answer of a seen anchor
is unseen), which kgemb does not do.

    python benchmarks/votes.py MODEL_DIR [--settings 10:0.2,10:0.05] [--control] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import kgemb
from kgemb.channels import VOTE_WEIGHTS, RuleChannel, TextVotes, _fit, fit_vote_weights
from kgemb.graph import KnowledgeGraph
from kgemb.training import mine_rules, seen_entities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved model (its folder)")
    parser.add_argument("--settings", default="10:0.2", help="comma-separated neighbours:temperature")
    parser.add_argument("--control", action="store_true", help="also the vote for unseen candidates alone")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, cpu = time.perf_counter(), time.process_time()
    model = kgemb.load(args.model)
    kg, pm = model.kg, model.pykeen_model
    channel = pm.rule_channel
    rules = channel.rules if channel is not None else mine_rules(kg)
    rule_weights = (
        channel.weights.numpy() if channel is not None else np.zeros(2 * kg.num_relations, np.float32)
    )
    pm.rule_channel = RuleChannel(rules, rule_weights) if rule_weights.any() else None
    seen = seen_entities(kg)
    print(f"{int((~seen).sum()):,} of {kg.num_entities:,} entities without training triples", flush=True)
    print(f"model (its rules, no vote): test MRR {model.evaluate('test')['mrr']:.4f}", flush=True)
    text_mean = model.representation.text_mean
    for setting in args.settings.split(","):
        k, temperature = setting.split(":")
        votes = TextVotes.build(text_mean, seen, int(k), float(temperature))
        weights, summary = fit_vote_weights(pm, rules, votes, kg)
        pm.rule_channel = RuleChannel(rules, rule_weights, votes, weights)
        test = model.evaluate("test")
        pm.rule_channel = RuleChannel(rules, rule_weights) if rule_weights.any() else None
        print(
            f"k {k}, temperature {temperature}: valid {summary['valid_mrr_embedding']:.4f} -> "
            f"{summary['valid_mrr_combined']:.4f}, weights {sorted(set(weights.tolist()))}; test MRR "
            f"{test['mrr']:.4f}, Hits@1 {test['hits@1']:.4f}, Hits@10 {test['hits@10']:.4f}",
            flush=True,
        )
    if args.control:
        _control(model, rules, seen)
    print(
        f"{(time.perf_counter() - started) / 60:.1f} wall / {(time.process_time() - cpu) / 60:.1f} CPU minutes"
    )


def _control(model: kgemb.TrainedModel, rules, seen: torch.Tensor) -> None:
    """The channel that lifts every unseen candidate of an anchor with training answers: weights per relation on
    validation (as the vote's), then test with them (validation and test swapped, the weights held)."""
    kg, pm = model.kg, model.pykeen_model
    unseen = (~seen).float()

    def scored(batch: torch.Tensor) -> torch.Tensor:
        return pm.score_t(batch[:, :2]).float()

    def lift(batch: torch.Tensor) -> torch.Tensor:
        answers = [rules.answers(np.asarray([a]), r).nnz > 0 for a, r in batch[:, :2].tolist()]
        return torch.as_tensor(answers).float().unsqueeze(1) * unseen

    weights, summary = _fit(
        scored, lift, VOTE_WEIGHTS, kg, 5000, 0, "unseen", prefer=0.0, skips_anchor=pm.skips_anchor
    )
    swapped = KnowledgeGraph(
        kg.entities,
        kg.relations,
        splits={"train": kg.triples("train"), "valid": kg.triples("test"), "test": kg.triples("valid")},
    )
    held = torch.as_tensor(weights)

    def lifted(batch: torch.Tensor) -> torch.Tensor:  # with the weights chosen on validation
        return held[batch[:, 1]].unsqueeze(1) * lift(batch)

    _, test = _fit(scored, lifted, (1.0,), swapped, None, 0, "held", skips_anchor=pm.skips_anchor)
    print(
        f"control, unseen candidates lifted: valid {summary['valid_mrr_embedding']:.4f} -> "
        f"{summary['valid_mrr_combined']:.4f}, weights {sorted(set(weights.tolist()))}; test MRR "
        f"{test['valid_mrr_combined']:.4f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
