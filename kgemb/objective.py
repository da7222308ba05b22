"""kgemb's training objective: reciprocal 1-N softmax cross-entropy with self-negatives, N3 and row-wise Adam.

Every training triple ``(h, r, t)`` gives two queries, ``(h, r, ?)`` and ``(t, r + R, ?)`` (a reciprocal model, see
:class:`~kgemb.model.TextAwareModel`), so one objective trains both directions. Each query is scored against its
candidates by the same matrix product that evaluation and ranking use (:func:`~kgemb.model.product_form`):

- all entities, when ``negatives`` is None (1-N scoring, the candidate matrix costs one ``batch × entities``
  product);
- otherwise ``negatives`` entities drawn uniformly and shared by the batch, plus every true answer and every query
  entity of the batch: in-batch negatives, and **self-negatives** — the query entity itself is always a candidate,
  as it is in evaluation (its own vector is its nearest neighbour, so a model never shown it as a negative ranks it
  first).

A model that reads text (``text``, ``fused``) draws its candidates from the entities with training triples only: an
entity without any (unseen in training; scored from its text) is never a negative, since the training graph says
nothing against it. Shown as a negative in every batch and an answer in none, its text taught the model to rank
such texts low (WN18RR inductive, text model with the encoder fine-tuned on the links, 5 epochs: test MRR 0.242
against 0.235 with every entity a candidate, 0.214 against 0.209 without the similarity channel;
``benchmarks/results/linkpred_wn18rr_stop37.md``).

Other true answers of a query in the training graph are masked out of its negatives. The loss is softmax
cross-entropy with label smoothing, plus an N3 penalty (Lacroix et al. 2018) on the factors the batch uses. A fused
model's text part also gets a loss of its own (``text_loss``, the same cross-entropy on the scores of the text-part
vectors with the same relations), so that it ranks well alone: the text channel (:mod:`kgemb.channels`) and entities
unseen in training use it. With the ``convex`` combination that loss trains the text part only, the relations
being the fused loss's, held fixed in it (shared, they were pulled towards the text part: Nations test MRR 0.782
against 0.809 held fixed, mean of three seeds; with ``gate`` holding them made no difference,
``benchmarks/results/linkpred_fused_convex.md``). A ``late`` model's two parts each answer with their own half of
the relation vectors, so the two losses train two models side by side (``update`` trains them so; ``train`` trains
them one after the other). The optimiser (:class:`RowAdam`) updates only the embedding rows
a batch touched when the candidates are sampled.

:class:`OneToNLoop` has the attributes PyKEEN's training loops expose to callbacks (``model``, ``optimizer``,
``_epoch``, ``losses_per_epochs``, ``_should_stop``), so early stopping, the time limit and checkpoints are shared
with PyKEEN's loops.

Under ``torchrun`` (:mod:`kgemb.distributed`) the loop is data parallel: every rank draws the same batches and
candidates (same seed), scores its share of each batch's rows, and the gradients are summed over the ranks before
the optimiser's step, so all ranks keep the same weights, those of one process training on the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.optim.adam import adam
from tqdm.auto import tqdm

from kgemb import distributed
from kgemb.model import TextAwareModel, query_vector, to_interaction_layout, to_real_layout


@dataclass(frozen=True)
class Objective:
    """The settings of :class:`OneToNLoop` (see the module docstring)."""

    negatives: int | None = None  # shared negatives per batch; None: every entity is a candidate
    label_smoothing: float = 0.1
    n3: float = 0.0  # weight of the N3 penalty
    temperature: float = 1.0  # logits are scores / temperature
    lr: float = 0.01
    weight_decay: float = 0.0  # L2 on the dense (non-embedding) weights: projection, gate, pooling
    text_loss: float = 0.0  # fused models: weight of the text part's own cross-entropy


class RowAdam(torch.optim.Optimizer):
    """Adam that, for a sparse gradient (an embedding looked up by ids), reads and writes only the rows it holds —
    the lazy Adam of torch's ``SparseAdam`` — and is plain Adam with L2 ``weight_decay`` for dense gradients.

    Complex parameters are updated as their real view (moments per real and imaginary part).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, (b1, b2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            dense: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]] = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                if not grad.is_sparse:
                    dense.append((p, grad, state))
                    continue
                state["step"] += 1
                t = float(state["step"])
                c1, c2 = 1 - b1**t, 1 - b2**t
                w, m, v = (_real(x) for x in (p, state["exp_avg"], state["exp_avg_sq"]))
                grad = grad.coalesce()
                rows, values = grad.indices()[0], _real(grad.values())
                m_rows = m[rows].mul_(b1).add_(values, alpha=1 - b1)
                v_rows = v[rows].mul_(b2).addcmul_(values, values, value=1 - b2)
                m[rows], v[rows] = m_rows, v_rows
                w[rows] -= (lr / c1) * m_rows / ((v_rows / c2).sqrt_().add_(eps))
            # one fused kernel over all dense weights (UMLS fused: 3.0 -> 1.0 ms of a 23 ms step)
            if dense:
                _dense_adam(dense, lr=lr, b1=b1, b2=b2, eps=eps, decay=decay)


def _dense_adam(
    items: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
    *,
    lr: float,
    b1: float,
    b2: float,
    eps: float,
    decay: float,
) -> None:
    """Adam with L2 ``decay`` on dense gradients, by torch's fused kernel where it runs (float32 on CPU/CUDA),
    else its foreach one: the same update as ``torch.optim.Adam`` (complex weights as their real view)."""
    params, grads, avgs, avg_sqs, steps = [], [], [], [], []
    for p, grad, state in items:
        params.append(_real(p))
        grads.append(_real(grad))
        avgs.append(_real(state["exp_avg"]))
        avg_sqs.append(_real(state["exp_avg_sq"]))
        steps.append(state["step"])
    fused = all(x.dtype == torch.float32 and x.device.type in ("cpu", "cuda") for x in params)
    adam(
        params,
        grads,
        avgs,
        avg_sqs,
        [],
        steps,
        foreach=None if fused else True,
        fused=fused or None,
        amsgrad=False,
        beta1=b1,
        beta2=b2,
        lr=lr,
        weight_decay=decay,
        eps=eps,
        maximize=False,
    )


class _N3(torch.autograd.Function):
    """``sum |x|³`` over the entries of a real or complex tensor (the modulus for complex ones), with the gradient
    written out: ``3 |x| x`` for both. autograd's ``x.abs().pow(3)`` on complex factors goes through complex ``abs``
    (1.0 ms for 1,024 x 256 here, against 0.26 from the real and imaginary parts) and ``sgn`` and several more
    element-wise passes."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        if x.is_complex():
            parts = torch.view_as_real(x)
            squares = parts * parts
            squared = torch.add(squares[..., 0], squares[..., 1])
            modulus = squared.sqrt()
            cubes = squared.mul_(modulus)
        else:
            modulus = x.abs()
            cubes = modulus * modulus * modulus
        ctx.save_for_backward(x, modulus)
        return cubes.sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, modulus = ctx.saved_tensors
        scale = modulus * (3 * grad)
        if x.is_complex():
            return torch.view_as_complex(torch.view_as_real(x) * scale.unsqueeze(-1))
        return x * scale


def _real(x: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(x) if torch.is_complex(x) else x


class KnownAnswers:
    """The true answers of every training query ``(anchor, relation)`` (relation ids of the reciprocal model),
    stored as CSR over the distinct queries, to mask other true answers out of a query's negatives."""

    def __init__(self, anchors: np.ndarray, relations: np.ndarray, answers: np.ndarray, num_relations: int):
        key = anchors.astype(np.int64) * num_relations + relations
        order = np.lexsort((answers, key))
        keys, starts = np.unique(key[order], return_index=True)
        self.num_relations, self.keys = num_relations, keys
        self.indptr = torch.from_numpy(np.append(starts, len(key)).astype(np.int64))
        self.answers = torch.from_numpy(answers[order].astype(np.int64))
        #: the query id of each example (position in the distinct queries)
        self.query_of = self.lookup(anchors, relations)

    def lookup(self, anchors: np.ndarray, relations: np.ndarray) -> torch.Tensor:
        """The query ids of ``(anchor, relation)`` pairs that are among the known queries."""
        key = np.asarray(anchors, dtype=np.int64) * self.num_relations + np.asarray(relations)
        return torch.from_numpy(np.searchsorted(self.keys, key).astype(np.int64))

    def pairs(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(row, entity)`` for every true answer of each query row."""
        starts = self.indptr[queries]
        counts = self.indptr[queries + 1] - starts
        rows = torch.repeat_interleave(torch.arange(len(queries)), counts)
        first = torch.cumsum(counts, 0) - counts
        within = torch.arange(int(counts.sum())) - first[rows]
        return rows, self.answers[starts[rows] + within]


def reciprocal_examples(triples: np.ndarray, num_relations: int) -> np.ndarray:
    """``(anchor, relation, answer)`` rows of both directions: ``(h, r, t)`` and ``(t, r + R, h)``."""
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    return np.concatenate([np.stack([h, r, t], 1), np.stack([t, r + num_relations, h], 1)]).astype(np.int64)


def shared_candidates(
    num_entities: int,
    negatives: int,
    anchors: torch.Tensor,
    answers: torch.Tensor,
    pool: torch.Tensor | None = None,
) -> torch.Tensor:
    """The sorted candidate ids of a batch: ``negatives`` uniform draws (from ``pool`` when given), every true
    answer of the batch (in-batch negatives for the other rows) and every query entity (self-negatives)."""
    if pool is None:
        drawn = torch.randint(num_entities, (negatives,)).to(anchors.device)
    else:
        drawn = pool.to(anchors.device)[torch.randint(len(pool), (negatives,)).to(anchors.device)]
    return torch.unique(torch.cat([drawn, answers, anchors]))


def embedding_parameters(model: TextAwareModel) -> list[tuple[str, torch.nn.Parameter]]:
    """The embedding tables (entity structure, relations): regularised by N3, updated row-wise."""
    return [(n, p) for n, p in model.named_parameters() if n.endswith("_embeddings.weight")]


class OneToNLoop:
    """Train a reciprocal :class:`~kgemb.model.TextAwareModel` with :class:`Objective` (see the module docstring)."""

    def __init__(self, model: TextAwareModel, triples: np.ndarray, objective: Objective) -> None:
        if not model.reciprocal:
            raise ValueError("the 1-N objective trains reciprocal models (build_model(..., reciprocal=True))")
        self.model = model
        self.objective = objective
        self.num_entities = model.num_entities
        self.examples = torch.from_numpy(reciprocal_examples(np.asarray(triples), model.num_base_relations))
        ex = self.examples.numpy()
        self.known = KnownAnswers(ex[:, 0], ex[:, 1], ex[:, 2], model.num_relations)
        rep = model.entity_representations[0]
        # a text-using model's candidates: the entities seen in training (see the module docstring)
        self.pool = torch.nonzero(rep.seen).flatten() if rep.uses_text and not bool(rep.seen.all()) else None
        universe = self.num_entities if self.pool is None else len(self.pool)
        self.sampled = objective.negatives is not None and objective.negatives < universe
        tables = embedding_parameters(model)
        if self.sampled:  # look-ups by id give sparse gradients: RowAdam touches those rows only
            for module in model.modules():
                if isinstance(module, torch.nn.Embedding):
                    module.sparse = True
        table_ids = {id(p) for _, p in tables}
        dense = [p for p in model.parameters() if p.requires_grad and id(p) not in table_ids]
        groups = [{"params": [p for _, p in tables], "weight_decay": 0.0}]
        if dense:
            groups.append({"params": dense, "weight_decay": objective.weight_decay})
        self.optimizer = RowAdam(groups, lr=objective.lr)
        self._epoch = 0
        self.losses_per_epochs: list[float] = []
        self._should_stop = False

    # -- PyKEEN's TrainingLoop surface used by kgemb's callbacks --------------------------------------------------
    def train(
        self,
        *,
        num_epochs: int,
        batch_size: int,
        use_tqdm: bool = True,
        tqdm_kwargs: dict[str, Any] | None = None,
        callbacks: list[Any] | None = None,
        continue_training: bool = False,
        **_: Any,
    ) -> list[float]:
        callbacks = callbacks or []
        for callback in callbacks:
            callback.register_training_loop(self)
        if not continue_training:
            self._epoch, self.losses_per_epochs = 0, []
        self._should_stop = False
        n = len(self.examples)
        share, ranks = distributed.rank(), distributed.world_size()
        distributed.broadcast_module(self.model)
        epochs = range(self._epoch + 1, num_epochs + 1)
        bar = tqdm(epochs, disable=not use_tqdm, unit="epoch", **(tqdm_kwargs or {}))
        for epoch in bar:
            self.model.train()
            order = torch.randperm(n)
            total = 0.0
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]
                total += self._step(rows, rows[share::ranks]) * len(rows)
            self._epoch = epoch
            self.losses_per_epochs.append(total / n)
            bar.set_postfix(loss=f"{total / n:.4f}")
            for callback in callbacks:
                callback.post_epoch(epoch=epoch, epoch_loss=total / n)
            if self._should_stop:
                break
        self.model.eval()
        for callback in callbacks:
            callback.post_train(losses=self.losses_per_epochs)
        return self.losses_per_epochs

    # -- one step -------------------------------------------------------------------------------------------------
    def _step(self, rows: torch.Tensor, mine: torch.Tensor | None = None) -> float:
        """One optimiser step on the batch ``rows``, of which this rank scores ``mine`` (all of them in one
        process); the loss is the batch's mean, summed over the ranks."""
        model, obj = self.model, self.objective
        mine = rows if mine is None else mine
        device = next(model.parameters()).device
        batch = self.examples[rows].to(device)
        local = self.examples[mine].to(device)
        anchors, relations, answers = local[:, 0], local[:, 1], local[:, 2]
        entity_rep = model.entity_representations[0]
        text_loss = obj.text_loss if entity_rep.mode == "fused" else 0.0
        if self.sampled or self.pool is not None:
            if self.sampled:
                candidates = shared_candidates(
                    self.num_entities, obj.negatives, batch[:, 0], batch[:, 2], self.pool
                )
            else:
                candidates = self.pool.to(device)
            target = torch.searchsorted(candidates, answers.contiguous())
            anchor_pos = torch.searchsorted(candidates, anchors.contiguous())
        else:
            candidates, target, anchor_pos = None, answers, anchors
        if text_loss or entity_rep.late:
            ents, text_ents = entity_rep.parts(candidates)
        else:
            ents, text_ents = entity_rep(indices=candidates), None
        anchor_vec = ents[anchor_pos]
        rels = [rep(indices=relations) for rep in model.relation_representations]
        text_rels = rels
        if entity_rep.late:  # each part answers with relation vectors of its own, [r_s ; r_t]
            text_rels = [r[..., r.shape[-1] // 2 :] for r in rels]
            rels = [r[..., : r.shape[-1] // 2] for r in rels]
        elif entity_rep.combination == "convex":
            # the text part learns to answer with the relations the fused loss trains, without moving them
            text_rels = [r.detach() for r in rels]
        logits = self._scores(anchor_vec, rels, ents)
        mask = self._mask(self.known.query_of[mine], target, candidates, logits.shape[1])
        loss = self._cross_entropy(logits, target, mask, len(rows))
        if text_ents is not None:
            text_logits = self._scores(text_ents[anchor_pos], text_rels, text_ents)
            loss = loss + text_loss * self._cross_entropy(text_logits, target, mask, len(rows))
        if obj.n3:
            factors = [anchor_vec, ents[target], *rels]
            if entity_rep.late:  # the text part is a model of its own, regularised as one
                assert text_ents is not None
                factors += [text_ents[anchor_pos], text_ents[target], *text_rels]
            loss = loss + obj.n3 * sum(_N3.apply(x) for x in factors) / len(rows)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.all_reduce_gradients(model.parameters())
        self.optimizer.step()
        model.post_parameter_update()
        return distributed.all_reduce_sum(float(loss.detach()))

    def _cross_entropy(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, batch: int | None = None
    ) -> torch.Tensor:
        """Softmax cross-entropy (label-smoothed) of the rows' targets among their unmasked candidates, summed
        and divided by ``batch`` (the whole batch's rows, of which these are a rank's share; default: the mean)."""
        obj = self.objective
        if obj.temperature != 1.0:
            logits = logits / obj.temperature
        lse = torch.logsumexp(logits.masked_fill(mask, float("-inf")), dim=1)
        loss = lse - logits.gather(1, target.unsqueeze(1)).squeeze(1)
        if obj.label_smoothing:  # cross-entropy against the uniform distribution over the row's candidates
            valid = (~mask).sum(dim=1)
            spread = lse - logits.masked_fill(mask, 0.0).sum(dim=1) / valid
            loss = (1 - obj.label_smoothing) * loss + obj.label_smoothing * spread
        if batch is None or batch == len(loss):  # one process: the mean, as it always was
            return loss.mean()
        return loss.sum() / batch

    def _scores(self, anchor: torch.Tensor, rels: list[torch.Tensor], ents: torch.Tensor) -> torch.Tensor:
        """Scores ``(b, C)`` of every candidate as the tail of each query, with gradients."""
        model = self.model
        if model.scoring_form is None:
            r = rels[0].unsqueeze(1) if len(rels) == 1 else [x.unsqueeze(1) for x in rels]
            return model.interaction(h=anchor.unsqueeze(1), r=r, t=ents.unsqueeze(0))
        q = to_real_layout(query_vector(model.interaction, "tail", anchor, rels[0]))
        e = to_real_layout(ents)
        if model.scoring_form == "dot":
            return q @ e.T
        squared = (q * q).sum(dim=1, keepdim=True) - 2 * (q @ e.T) + (e * e).sum(dim=1)
        return -squared.clamp_min(1e-12).sqrt()

    def _mask(
        self, queries: torch.Tensor, target: torch.Tensor, candidates: torch.Tensor | None, width: int
    ) -> torch.Tensor:
        """True where a candidate is another known answer of the row's query (never the row's own target)."""
        rows, ents = (x.to(target.device) for x in self.known.pairs(queries))
        if candidates is None:
            cols = ents
        else:
            cols = torch.searchsorted(candidates, ents).clamp_max(width - 1)
            present = candidates[cols] == ents
            rows, cols = rows[present], cols[present]
        other = cols != target[rows]
        mask = torch.zeros(len(queries), width, dtype=torch.bool, device=target.device)
        mask[rows[other], cols[other]] = True
        return mask


def train_structure_map(
    model: TextAwareModel,
    triples: np.ndarray,
    *,
    epochs: int = 1,
    batch_size: int = 1024,
    negatives: int | None = None,
    lr: float = 0.01,
    label_smoothing: float = 0.1,
) -> list[float]:
    """Train a late model's text -> structural part map (:meth:`~kgemb.model.TextAwareRepresentation.fit_structure_map`
    gives its start) for what it is used for: ranking. Everything else is held fixed; on the training triples the
    structural part's queries rank the entities by their *estimated* structural parts, and queries from estimated
    anchors rank them by their real ones (an unseen entity is a candidate, or the query's anchor). Softmax
    cross-entropy over every entity, or ``negatives`` shared ones; returns the mean loss of each epoch."""
    rep = model.entity_representations[0]
    examples = torch.from_numpy(reciprocal_examples(np.asarray(triples), model.num_base_relations))
    with torch.no_grad():
        text = rep.text_part().detach()
        structure = rep.structure(indices=None).detach()
        relations = model.relation_representations[0](indices=None).detach()
        relations = relations[..., : relations.shape[-1] // 2]  # the structural part's half
    weight = torch.nn.Parameter(rep.structure_map.detach().clone())
    optimizer = torch.optim.Adam([weight], lr=lr)
    n = rep.max_id

    def scores(anchor: torch.Tensor, rel: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        q = query_vector(model.interaction, "tail", to_interaction_layout(anchor, rep.complex), rel)
        return to_real_layout(q) @ candidates.T

    losses = []
    for _ in range(epochs):
        order, total = torch.randperm(len(examples)), 0.0
        for start in range(0, len(examples), batch_size):
            batch = examples[order[start : start + batch_size]]
            anchors, answers = batch[:, 0], batch[:, 2].contiguous()
            if negatives is None or negatives >= n:
                candidates, target = torch.arange(n), answers
            else:
                candidates = shared_candidates(n, negatives, anchors, answers)
                target = torch.searchsorted(candidates, answers)
            estimated = torch.addmm(weight[-1], text[candidates], weight[:-1])
            anchor_estimated = torch.addmm(weight[-1], text[anchors], weight[:-1])
            rel = relations[batch[:, 1]]
            loss = torch.nn.functional.cross_entropy(
                scores(structure[anchors], rel, estimated), target, label_smoothing=label_smoothing
            ) + torch.nn.functional.cross_entropy(
                scores(anchor_estimated, rel, structure[candidates]), target, label_smoothing=label_smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(examples))
    with torch.no_grad():
        rep.structure_map.copy_(weight)
    rep.clear_cache()
    return losses
