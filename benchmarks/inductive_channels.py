"""Channels beside a saved text model on an inductive split, measured before any of them is built (issue 13).

For each test query of a saved model (``kgemb train --mode text`` on an inductive split, e.g. WN18RR's), the model's
own score is combined with up to four channels, each weighted by one weight for all relations, chosen on validation
by coordinate ascent (two sweeps over a grid of multiples of the model's per-query score spread):

* ``cosine``     the plain cosine of the anchor's and the candidate's mean text features (centred). kgemb's
                 similarity channel (``text_channel``, stop 36) is this, folded into the model per relation;
* ``ridge``      per relation and direction, a ridge map of the training anchors' text vectors onto their answers'
                 ones; the cosine of the mapped anchor and the candidate (a matrix per relation: not foldable);
* ``anchor``     the anchor's ``k`` nearest entities with training links (by text), weighted by a softmax of their
                 cosine (temperature ``tau``), vote for their own answers of the relation;
* ``candidate``  a candidate is scored by how much the anchor's known answers of the relation (training links)
                 count it among their ``k`` nearest entities by text: an unseen candidate gets the votes of the seen
                 entities it resembles.

Filtered ranks among all entities, both directions; an irreflexive relation's anchor is left out as the model's
evaluation leaves it out. Prints the validation and test MRR after each step and each channel's share (the test MRR
without it). Memory: about (4 + 2·channels + 1) bytes × entities × (test + sampled validation queries).

    python benchmarks/inductive_channels.py MODEL_DIR [--k 10] [--tau 0.05] [--valid 2500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import torch

import kgemb
from kgemb.channels import TextVotes

NAMES = ("cosine", "ridge", "anchor", "candidate")
GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def neighbours(text_mean: torch.Tensor, seen: np.ndarray, k: int, tau: float) -> sp.csr_matrix:
    """Row ``e``: ``e``'s ``k`` nearest seen entities (itself excluded), weights a softmax of cosine / ``tau``: the
    text-neighbour vote's ``near`` relation (:meth:`kgemb.channels.TextVotes.build`), as a sparse matrix."""
    votes = TextVotes.build(text_mean, torch.from_numpy(seen), k, tau)
    n, k = votes.near.shape
    return sp.csr_matrix((votes.strength.ravel(), (np.repeat(np.arange(n), k), votes.near.ravel())), (n, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved text model (its folder)")
    parser.add_argument("--k", type=int, default=10, help="text neighbours per entity")
    parser.add_argument(
        "--tau", type=float, default=0.05, help="softmax temperature of the neighbours' cosines"
    )
    parser.add_argument("--ridge", type=float, default=1.0, help="ridge penalty of the per-relation maps")
    parser.add_argument(
        "--valid", type=int, default=2500, help="validation triples sampled to choose the weights"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, cpu = time.perf_counter(), time.process_time()
    model = kgemb.load(args.model)
    kg, pm = model.kg, model.pykeen_model.eval()
    rep = model.representation
    if rep.mode != "text":
        raise SystemExit(
            f"{args.model} is a {rep.mode!r} model; this script measures channels beside a text model"
        )
    x = rep.text_mean - rep.text_mean.mean(0)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    train = kg.triples("train")
    n, r_base = kg.num_entities, kg.num_relations
    seen = np.zeros(n, bool)
    seen[train[:, [0, 2]].ravel()] = True
    near = neighbours(rep.text_mean, seen, args.k, args.tau)
    adjacency, maps = {}, {}
    for r in range(r_base):
        t = train[train[:, 1] == r]
        adjacency[r, 0] = sp.csr_matrix((np.ones(len(t), np.float32), (t[:, 0], t[:, 2])), (n, n))
        adjacency[r, 1] = adjacency[r, 0].T.tocsr()
        for d, (a, g) in enumerate(((t[:, 0], t[:, 2]), (t[:, 2], t[:, 0]))):
            xa = x[a]
            gram = xa.T @ xa + args.ridge * torch.eye(x.shape[1])
            maps[r, d] = torch.linalg.solve(gram, xa.T @ x[g])
    known: dict[tuple[int, int, int], list[int]] = {}
    for h, r, t in kg.all_triples().tolist():
        known.setdefault((h, r, 0), []).append(t)
        known.setdefault((t, r, 1), []).append(h)
    skips = pm.irreflexive

    @torch.no_grad()
    def queries(triples: np.ndarray) -> list[tuple]:
        out = []
        for d in (0, 1):
            for r in np.unique(triples[:, 1]).tolist():
                b = torch.as_tensor(triples[triples[:, 1] == r])
                own = pm.score_t(b[:, :2]) if d == 0 else pm.score_h(b[:, 1:])
                anchor, answer = (b[:, 0], b[:, 2]) if d == 0 else (b[:, 2], b[:, 0])
                a = anchor.numpy()
                mapped = x[anchor] @ maps[r, d]
                mapped = mapped / mapped.norm(dim=1, keepdim=True).clamp_min(1e-12)
                links = adjacency[r, d]
                channels = [
                    x[anchor] @ x.T,
                    mapped @ x.T,
                    torch.from_numpy((near[a] @ links).toarray()),
                    torch.from_numpy((links[a] @ near.T).toarray()),
                ]
                blocked = torch.zeros_like(own, dtype=torch.bool)
                for j, (q, g) in enumerate(zip(a.tolist(), answer.tolist(), strict=True)):
                    blocked[j, [e for e in known[(q, r, d)] if e != g]] = True
                    if skips is not None and bool(skips[r]) and q != g:
                        blocked[j, q] = True
                out.append((own, [c.half() for c in channels], blocked, answer))
        return out

    def mrr(batches: list[tuple], weights: list[float]) -> float:
        reciprocal = []
        for own, channels, blocked, answer in batches:
            s = own.clone()
            for w, c in zip(weights, channels, strict=True):
                if w:
                    s += w * c.float()
            s = s.masked_fill(blocked, float("-inf"))
            true = s.gather(1, answer.unsqueeze(1))
            reciprocal.append(1.0 / ((s > true).sum(1) + 1).float())
        return float(torch.cat(reciprocal).mean())

    valid = kg.triples("valid")
    valid = valid[np.random.default_rng(0).choice(len(valid), min(len(valid), args.valid), replace=False)]
    v, t = queries(valid), queries(kg.triples("test"))
    spread = float(torch.cat([own.std(1) for own, *_ in t]).mean())
    print(f"scored in {time.perf_counter() - started:.0f} s; the model's score spread per query {spread:.3f}")
    weights = [0.0] * len(NAMES)
    print(f"model alone: valid {mrr(v, weights):.4f}, test {mrr(t, weights):.4f}", flush=True)
    for sweep in range(2):
        for i, name in enumerate(NAMES):
            best = max(GRID, key=lambda g: (mrr(v, [*weights[:i], g * spread, *weights[i + 1 :]]), -g))
            weights[i] = best * spread
            print(
                f"sweep {sweep + 1}, {name} -> {best} × spread: valid {mrr(v, weights):.4f}, "
                f"test {mrr(t, weights):.4f}",
                flush=True,
            )
    for i, name in enumerate(NAMES):
        print(f"test without {name}: {mrr(t, [*weights[:i], 0.0, *weights[i + 1 :]]):.4f}")
    print(
        f"{(time.perf_counter() - started) / 60:.1f} wall / {(time.process_time() - cpu) / 60:.1f} CPU minutes"
    )


if __name__ == "__main__":
    main()
