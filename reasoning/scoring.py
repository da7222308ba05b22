"""Score every entity as the missing head or tail of a batch of queries and keep the exact top k: the one scorer of
``predict`` (:class:`~kgemb.reasoning.LinkPredictor`), ``rank``, ``enrich`` and calibration.

:meth:`CandidateScorer.best` is the top-k path. For the interactions whose score is a dot product or a Euclidean
distance after a rotation (DistMult, ComplEx, RotatE, TransE with p=2; see :func:`kgemb.model.product_form`) it
selects on a value that ranks like the score — ``q·e``, or ``2 q·e - |e|²`` with the norms computed once — by
blocked matrix products against the entity matrix, never taking a square root of a whole row. The selection keeps a
pool of candidates per query, in float32, bfloat16 or int8 (``precision``; a single query row's product through
SimSIMD's matrix-vector kernels, see :func:`_product`); the pool is then scored exactly with the
model's own PyKEEN interaction, its rule channel added (rules are >= 0, so the entities a rule fires for join the
pool), and ordered by score (ties: smaller id first). A bound on the selection's rounding error certifies each
row: the k-th exact score must beat the best score an entity left out of the pool could have. A row the bound does
not certify is done again in float32, and, failing that, by the plain path (every entity scored by the
interaction itself), which is also the path of the other interactions. So every precision returns the same answers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kgemb.errors import InputError
from kgemb.model import Side, matmul_t, product_scores, query_vector, to_interaction_layout, to_real_layout

if TYPE_CHECKING:
    from kgemb.model import TrainedModel

PRECISIONS = ("fp32", "bf16", "int8")
_U32 = 2.0**-24  # unit roundoff of float32
_U16 = 2.0**-8  # of bfloat16
_CHUNK_FLOATS = 1 << 22  # products per block (16 MB in float32): each filtered once after its product
_EXACT_FLOATS = 1 << 23  # floats of the (rows, candidates, dim) temporaries of exact scoring
_RULE_ROWS = 256  # query rows whose dense rule scores are held at once


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a clear :class:`InputError`."""
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    return precision


class _Table:
    """The entity matrix in the real layout, with what selection needs, computed once per entity tensor."""

    def __init__(self, ents: torch.Tensor) -> None:
        self.ents = ents  # the model's cached tensor: a new one whenever a parameter changes
        self.real = to_real_layout(ents).float().contiguous()
        self.dim = self.real.shape[1]
        self.sq = (self.real * self.real).sum(dim=1)
        self.neg_sq = -self.sq
        self.max_norm = float(self.sq.max().sqrt()) if len(self.sq) else 0.0
        self._bf16: torch.Tensor | None = None
        self._int8: tuple[torch.Tensor, float, float] | None = None

    @property
    def bf16(self) -> torch.Tensor:
        if self._bf16 is None:
            self._bf16 = self.real.to(torch.bfloat16)
        return self._bf16

    @property
    def int8(self) -> tuple[torch.Tensor, float, float, float]:
        """The matrix quantised with one scale, ``e ≈ ê = scale · q_e``: ``(q (N, d) int8, scale,
        max ‖e - ê‖₂, max ‖ê‖₂)`` over the entities (one scale: a selection value is then ``scale_q · scale ·
        (q_q · q_e)``; the two maxima are what :meth:`CandidateScorer._bound` needs)."""
        if self._int8 is None:
            scale = max(float(self.real.abs().max()) / 127.0, 1e-30) if self.real.numel() else 1.0
            q = torch.empty(self.real.shape, dtype=torch.int8)
            err = hat = 0.0
            for lo in range(0, len(q), 1 << 16):  # in slices: no float temporary of the whole matrix
                part = torch.round(self.real[lo : lo + (1 << 16)] / scale).clamp_(-127, 127)
                q[lo : lo + (1 << 16)] = part.to(torch.int8)
                part *= scale
                hat = max(hat, float(part.norm(dim=1).max()))
                err = max(err, float((self.real[lo : lo + (1 << 16)] - part).norm(dim=1).max()))
            self._int8 = (q, scale, err, hat)
        return self._int8


def _quantised(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Query rows quantised to int8 with one scale per row: ``(q_int8, scale (b,))``, ``q ≈ scale · q_int8``."""
    scale = (q.abs().amax(dim=1) / 127.0).clamp_min(1e-30)
    return torch.round(q / scale.unsqueeze(1)).clamp_(-127, 127).to(torch.int8), scale


@functools.cache
def int8_supported() -> bool:
    """Whether this torch multiplies int8 matrices on the CPU (``torch._int_mm``); where not, ``"int8"``
    selects in bfloat16."""
    try:
        a = torch.ones(1, 32, dtype=torch.int8)
        return int(torch._int_mm(a, a.T)[0, 0]) == 32
    except (RuntimeError, AttributeError):
        return False


class CandidateScorer:
    """Blocked scoring of all entities against queries given as entity vectors (ids or inductive) and relations.

    ``precision`` (``"fp32"``, ``"bf16"``, ``"int8"``) is the arithmetic of the selection in :meth:`best`; the
    answers are the same in each (see the module docstring), only the speed differs."""

    def __init__(self, model: TrainedModel, chunk_size: int | None = None, precision: str = "fp32") -> None:
        self.model = model
        self.interaction = model.pykeen_model.interaction
        self.complex = bool(model.representation.complex)
        self.chunk_size = chunk_size
        self.form = model.pykeen_model.scoring_form
        self.precision = check_precision(precision)
        self._table: _Table | None = None
        self.fallbacks = 0  # rows the bound did not certify, done again (for tests and benchmarks)

    # ------------------------------------------------------------------ representations
    def entities(self) -> torch.Tensor:
        """All entity representations in the interaction's layout (cached by the model)."""
        if self.model.pykeen_model.training:
            self.model.pykeen_model.eval()
        with torch.no_grad():
            return self.model.representation(indices=None)

    def table(self) -> _Table:
        ents = self.entities()
        if self._table is None or self._table.ents is not ents:
            self._table = _Table(ents)
        return self._table

    def anchors(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Representations of the given entity ids (the known side of each query)."""
        return self.entities()[torch.as_tensor(np.asarray(ids), dtype=torch.long)]

    def from_real(self, vectors: torch.Tensor) -> torch.Tensor:
        """Real vectors (``model.embed_texts``) in the interaction's layout, normalised like the model's."""
        return to_interaction_layout(vectors.float(), self.complex)

    def relations(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The relations of a batch of queries, to pass to :meth:`best`, :meth:`scores` and :meth:`exact`."""
        return torch.as_tensor(np.asarray(ids), dtype=torch.long)

    def _orient(self, side: Side, relations: torch.Tensor) -> tuple[Side, Any]:
        """The side and relation representations a query is scored with (a reciprocal model answers head
        queries as tail queries of the inverse relation); a list where the interaction takes several."""
        pykeen_model = self.model.pykeen_model
        side, ids = pykeen_model.orient(side, relations)
        with torch.no_grad():
            reps = [rep(indices=ids) for rep in pykeen_model.relation_representations]
        return side, reps[0] if len(reps) == 1 else reps

    def _query(self, side: Side, anchor: torch.Tensor, rel: Any) -> torch.Tensor:
        """The real-layout vector ``q`` each candidate is compared with, for the matrix-product forms."""
        with torch.no_grad():
            return to_real_layout(query_vector(self.interaction, side, anchor, rel)).float().contiguous()

    # ------------------------------------------------------------------ exact scores
    @torch.no_grad()
    def exact(self, side: Side, anchor: torch.Tensor, rel: Any, candidates: torch.Tensor) -> torch.Tensor:
        """The model's own scores ``(b, k)`` of candidate ids ``(b, k)`` as the ``side`` of each query row (the
        PyKEEN interaction; no rule channel)."""
        side, rel = self._orient(side, rel)
        return self._exact(side, anchor, rel, candidates)

    def _exact(self, side: Side, anchor: torch.Tensor, rel: Any, candidates: torch.Tensor) -> torch.Tensor:
        ents = self.entities()
        b, c = candidates.shape
        width = max(1, to_real_layout(ents[:1]).shape[-1])
        step = max(1, _EXACT_FLOATS // max(1, c * width))
        out = torch.empty(b, c)
        for lo in range(0, b, step):
            hi = min(b, lo + step)
            cand = ents[candidates[lo:hi]]
            r = rel[lo:hi] if not isinstance(rel, list) else [x[lo:hi] for x in rel]
            rel_b = [x.unsqueeze(1) for x in r] if isinstance(r, list) else r.unsqueeze(1)
            a = anchor[lo:hi].unsqueeze(1)
            out[lo:hi] = (
                self.interaction(h=a, r=rel_b, t=cand)
                if side == "tail"
                else self.interaction(h=cand, r=rel_b, t=a)
            ).float()
        return out

    @torch.no_grad()
    def scores(self, side: Side, anchor: torch.Tensor, rel: Any, *, columns: bool = False) -> torch.Tensor:
        """The raw scores ``(b, num_entities)`` of every entity (no rule channel), as ``TrainedModel.score_tails``
        computes them: one blocked matrix product for the product forms, the interaction otherwise.
        ``columns=True``: the transpose ``(num_entities, b)``, one column per query, which the product forms
        compute fastest (for combining each entity's scores over the queries)."""
        side, rel = self._orient(side, rel)
        num = self.model.kg.num_entities
        b = anchor.shape[0]
        if self.form is not None:
            table = self.table()
            q = self._query(side, anchor, rel)
            return product_scores(self.form, q, table.real, table.sq, columns=columns)
        out = torch.empty(b, num)
        step = self._plain_step(b)
        for start in range(0, num, step):
            stop = min(num, start + step)
            out[:, start:stop] = self._plain_block(side, anchor, rel, start, stop)
        return out.T if columns else out

    def _plain_block(self, side: Side, anchor: torch.Tensor, rel: Any, start: int, stop: int) -> torch.Tensor:
        cand = self.entities()[start:stop]
        rel_b = [x.unsqueeze(1) for x in rel] if isinstance(rel, list) else rel.unsqueeze(1)
        if side == "tail":
            return self.interaction(h=anchor.unsqueeze(1), r=rel_b, t=cand.unsqueeze(0)).float()
        return self.interaction(h=cand.unsqueeze(0), r=rel_b, t=anchor.unsqueeze(1)).float()

    def _plain_step(self, rows: int) -> int:
        if self.chunk_size:
            return self.chunk_size
        width = max(1, to_real_layout(self.entities()[:1]).shape[-1])
        return int(max(256, _EXACT_FLOATS // max(1, rows * width)))

    # ------------------------------------------------------------------ the top-k path
    @torch.no_grad()
    def best(
        self,
        side: Side,
        anchor: torch.Tensor,
        rel: torch.Tensor,
        k: int,
        *,
        anchor_ids: Sequence[int | None] | None = None,
        exclude: Sequence[np.ndarray] | None = None,
        blocked: Sequence[torch.Tensor | None] | None = None,
        precision: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact top ``k`` entities of each query row: ``(scores, ids)``, each ``(b, k)``, best first (ties:
        the smaller id first); ``-inf`` / ``-1`` pad rows with fewer than ``k`` candidates left.

        ``anchor`` (b, …): the known side's vectors (:meth:`anchors`, :meth:`from_real`); ``rel`` (b,): relation
        ids. ``anchor_ids``: the anchors' entity ids (None for a new entity): with them the model's rule channel
        is added to the scores. ``exclude``: per row, sorted entity ids to leave out (known links); ``blocked``:
        per row, a boolean mask over all entities of those to leave out (type constraints), or None.
        ``precision``: the selection's arithmetic (default: the scorer's).
        """
        precision = check_precision(precision or self.precision)
        if precision == "int8" and not int8_supported():
            precision = "bf16"
        num = self.model.kg.num_entities
        b = anchor.shape[0]
        k = max(0, min(int(k), num))
        if b == 0 or k == 0:
            return torch.full((b, k), float("-inf")), torch.full((b, k), -1, dtype=torch.long)
        masks = _Masks(b, num, self._with_anchors(rel, anchor_ids, exclude), blocked)
        o_side, o_rel = self._orient(side, rel)
        out_v = torch.full((b, k), float("-inf"))
        out_i = torch.full((b, k), -1, dtype=torch.long)
        step = b if anchor_ids is None or self.model.pykeen_model.rule_channel is None else _RULE_ROWS
        for lo in range(0, b, step):
            hi = min(b, lo + step)
            rows = torch.arange(lo, hi)
            rules = None
            if anchor_ids is not None:
                rules = self._rules(side, anchor_ids[lo:hi], rel[lo:hi])
            sub_rel = o_rel[lo:hi] if not isinstance(o_rel, list) else [x[lo:hi] for x in o_rel]
            sub = masks.rows(rows)
            if self.form is None:
                v, i = self._plain_top(o_side, anchor[lo:hi], sub_rel, k, rules, sub)
            else:
                v, i = self._pool_top(o_side, anchor[lo:hi], sub_rel, k, rules, sub, precision)
            out_v[lo:hi], out_i[lo:hi] = v, i
        return out_v, out_i

    def _with_anchors(
        self, rel: torch.Tensor, anchor_ids: Sequence[int | None] | None, exclude: Sequence[np.ndarray] | None
    ) -> Sequence[np.ndarray] | None:
        """``exclude`` with each row's anchor added where its relation is irreflexive (the model's
        ``irreflexive``, from its training triples): such a query never answers its own anchor."""
        if self.model.pykeen_model.irreflexive is None or anchor_ids is None:
            return exclude
        flags = self.model.pykeen_model.skips_anchor(rel).tolist()
        out = list(exclude) if exclude is not None else [np.zeros(0, dtype=np.int64)] * len(anchor_ids)
        for row, (a, flag) in enumerate(zip(anchor_ids, flags, strict=True)):
            if a is not None and flag:
                out[row] = np.union1d(out[row], np.asarray([a], dtype=np.int64))
        return out

    def _rules(self, side: Side, anchor_ids: Sequence[int | None], rel: torch.Tensor) -> torch.Tensor | None:
        pykeen_model = self.model.pykeen_model
        rows = [i for i, a in enumerate(anchor_ids) if a is not None]
        if pykeen_model.rule_channel is None or not rows:
            return None
        out = torch.zeros(len(anchor_ids), self.model.kg.num_entities)
        ids = torch.as_tensor([anchor_ids[i] for i in rows], dtype=torch.long)
        out[rows] = pykeen_model.rule_scores(side, ids, rel[rows]).float()
        return out

    def _pool_top(
        self,
        side: Side,
        anchor: torch.Tensor,
        rel: Any,
        k: int,
        rules: torch.Tensor | None,
        masks: _Masks,
        precision: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Select a pool on the product, score it exactly, certify each row (see the module docstring)."""
        table = self.table()
        num = table.real.shape[0]
        b = anchor.shape[0]
        q = self._query(side, anchor, rel)
        pool = min(num, k + 8 if precision == "fp32" else 2 * k + 64)
        sel_v, sel_i = self._select(table, q, pool, masks, precision)
        t = sel_v[:, -1] if sel_v.shape[1] == pool else torch.full((b,), float("-inf"))
        t = torch.where(torch.isfinite(sel_v[:, -1]), t, torch.full_like(t, float("-inf")))
        # candidates: the pool, and every entity a rule fires for (rules are >= 0: they can only lift a score)
        cand, valid = sel_i, torch.isfinite(sel_v)
        if rules is not None:
            fired = rules > 0
            if masks.any:
                fired &= ~masks.dense()
            n_fired = int(fired.sum(dim=1).max())
            if n_fired:
                extra_v, extra_i = torch.topk(fired.float(), n_fired, dim=1)
                cand = torch.cat([cand, extra_i], dim=1)
                valid = torch.cat([valid, extra_v > 0], dim=1)
        cand = torch.where(valid, cand, torch.zeros_like(cand))
        exact = self._exact(side, anchor, rel, cand)
        if rules is not None:
            exact = exact + rules.gather(1, cand)
        exact = torch.where(valid, exact, torch.full_like(exact, float("-inf")))
        # the same entity may be in the pool and among the fired ones: keep one copy
        exact, cand = _dedupe(exact, cand)
        v, i = _order(exact, cand, k)
        # the best score an entity outside the pool (no rule fired for it) can have
        delta = self._bound(table, q, precision)
        ceiling = _score_of(self.form, t + delta, (q * q).sum(dim=1))
        kth = v[:, -1]
        slack = 1e-5 * (kth.abs() + ceiling.abs() + 1.0)
        done = torch.isneginf(t) | (kth > ceiling + slack)
        if not bool(done.all()):
            redo = torch.nonzero(~done).flatten()
            self.fallbacks += len(redo)
            r_rel = rel[redo] if not isinstance(rel, list) else [x[redo] for x in rel]
            r_rules = None if rules is None else rules[redo]
            if precision != "fp32":
                rv, ri = self._pool_top(side, anchor[redo], r_rel, k, r_rules, masks.rows(redo), "fp32")
            else:
                rv, ri = self._plain_top(side, anchor[redo], r_rel, k, r_rules, masks.rows(redo))
            v[redo], i[redo] = rv, ri
        return v, i

    def _select(
        self, table: _Table, q: torch.Tensor, pool: int, masks: _Masks, precision: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``pool`` best selection values per row and their ids (best first), blocked over the entity matrix.

        A block's product (float32, bfloat16 or int32) becomes the selection values in one fused pass
        (``c · raw + add``: ``c`` the query's int8 scale, ``add`` = ``-|e|²`` for the distance forms), the
        left-out entities set to -inf. Each row keeps the ``pool`` largest maxima of its groups of :data:`_GROUP`
        entities seen so far: they are ``pool`` distinct entities, so the smallest of them is a floor under the
        row's ``pool``-th best value. Only the groups whose maximum reaches the floor are copied out of the block
        (while it is in cache) into the row's candidates: no sort or top-k of whole blocks. An entity left out has
        a value below the floor, so below the ``pool``-th value returned."""
        num, b = table.real.shape[0], q.shape[0]
        distance = self.form == "distance"
        qs = 2.0 * q if distance else q
        c: torch.Tensor | None = None
        if precision == "fp32":
            q_lp, matrix = qs, table.real
        elif precision == "bf16":
            q_lp, matrix = qs.to(torch.bfloat16), table.bf16
        else:
            matrix, s_e, _, _ = table.int8
            q_lp, s_q = _quantised(qs)
            c = (s_q * s_e).unsqueeze(1)
        add = table.neg_sq if distance else None
        # int8 distance forms: the int32 products are read as floats shifted by _MAGIC, so each row's values are
        # too large by c * _MAGIC (the same for the whole row: the order in it holds); taken off at the end
        shift = c * _MAGIC if c is not None and add is not None and _magic_fits(table.dim) else None
        shifted = False  # (one row's product may come as float32 already: not shifted)
        step = self.chunk_size or max(_GROUP, _CHUNK_FLOATS // max(1, b) // _GROUP * _GROUP)
        groups_best = torch.full((b, 0), float("-inf"))  # the largest group maxima so far, per row
        found = _Found(b, pool)
        for start in range(0, num, step):
            stop = min(num, start + step)
            block = matrix[start:stop]
            g = _GROUP if (stop - start) % _GROUP == 0 else 1
            if c is not None and add is None:
                # int8, dot forms: c > 0 keeps the order, so the groups' maxima are taken on the raw product
                # itself and only they and the runs copied out are scaled (no float copy of the block)
                v = _product(q_lp, block)
                masks.apply(v, start, stop, _INT_OUT if v.dtype == torch.int32 else float("-inf"))
                gmax = _scaled(v.view(b, -1, g).amax(dim=2) if g > 1 else v, c)
            else:
                if c is not None:
                    raw = _product(q_lp, block)
                    if raw.dtype == torch.int32 and shift is not None:
                        # (raw + _MAGIC) as float32, in place: no int-to-float pass
                        raw, shifted = _as_shifted_float(raw), True
                    # into the product's own buffer where it is float32 (no second block-sized allocation)
                    v = torch.addcmul(
                        add[start:stop], raw, c, out=raw if raw.dtype == torch.float32 else None
                    )
                else:
                    v = _product(q_lp, block).float()
                    if add is not None:
                        v += add[start:stop]
                masks.apply(v, start, stop)
                gmax = v.view(b, -1, g).amax(dim=2) if g > 1 else v
            groups_best = torch.cat([groups_best, gmax], dim=1)
            if groups_best.shape[1] > pool:
                groups_best = torch.topk(groups_best, pool, dim=1, sorted=False).values
            if groups_best.shape[1] < pool:
                hit = gmax > float("-inf")
            else:
                hit = gmax >= groups_best.amin(dim=1, keepdim=True)
                hit &= gmax > float("-inf")
            rows, grp = torch.nonzero(hit, as_tuple=True)
            if len(rows):
                run = v.view(b, -1, g)[rows, grp]
                if c is not None and add is None:
                    run = _scaled(run, c[rows])
                found.add(rows, run, grp * g + start, gmax[rows, grp])
        short = groups_best.shape[1] < pool  # fewer groups than the pool: every run counts
        values, ids = found.best(torch.full((b,), float("-inf")) if short else groups_best.amin(dim=1))
        if shifted:
            values -= shift
        return values, ids

    def _bound(self, table: _Table, q: torch.Tensor, precision: str) -> torch.Tensor:
        """Per row, a bound on |selection value - its exact value| for every entity."""
        d = table.dim
        qn = q.norm(dim=1)
        m = table.max_norm
        gamma = 2.0 * (d + 4) * _U32  # float32 products and sums of length d, with room
        factor = 2.0 if self.form == "distance" else 1.0
        dot_scale = qn * m
        err = gamma * (factor * dot_scale + (m * m if self.form == "distance" else 0.0))
        if precision == "bf16":
            # inputs rounded to bfloat16 (2u), the sum accumulated in float32 and returned in bfloat16 (u)
            err = err + factor * 4 * _U16 * (1 + gamma) * dot_scale
        elif precision == "int8":
            qs = factor * q
            q_int, s_q = _quantised(qs)
            _, s_max, e_err, e_hat = table.int8
            q_err = (qs - q_int.float() * s_q.unsqueeze(1)).norm(dim=1)
            # |q·e - q̂·ê| <= |q| |e - ê| + |q - q̂| |ê| (Cauchy-Schwarz, with the largest |e - ê| and |ê| over
            # the entities: about 25% tighter than the entry-wise |q|₁ |e - ê|∞ + |q - q̂|∞ |ê|₁ at 256 dims)
            err = err + qs.norm(dim=1) * e_err + q_err * e_hat + gamma * factor * dot_scale * 2
            if self.form == "distance" and _magic_fits(d):  # shifted floats: two roundings near c * _MAGIC
                err = err + 4 * _U32 * _MAGIC * s_q * s_max
        return err * 1.01

    def _plain_top(
        self,
        side: Side,
        anchor: torch.Tensor,
        rel: Any,
        k: int,
        rules: torch.Tensor | None,
        masks: _Masks,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every entity scored by the interaction itself, block by block, rules added; a running top k."""
        num = self.model.kg.num_entities
        b = anchor.shape[0]
        step = self._plain_step(b)
        best_v = torch.full((b, 0), float("-inf"))
        best_i = torch.zeros((b, 0), dtype=torch.long)
        for start in range(0, num, step):
            stop = min(num, start + step)
            v = self._plain_block(side, anchor, rel, start, stop)
            if rules is not None:
                v = v + rules[:, start:stop]
            masks.apply(v, start, stop)
            bv, bi = torch.topk(v, min(k, stop - start), dim=1)
            best_v, best_i = torch.cat([best_v, bv], dim=1), torch.cat([best_i, bi + start], dim=1)
            if best_v.shape[1] > k:
                best_v, pos = torch.topk(best_v, k, dim=1)
                best_i = best_i.gather(1, pos)
        return _order(best_v, best_i, k)


class _Masks:
    """The entities left out of each query row: sorted ids per row (``exclude``) and boolean masks (``blocked``)."""

    def __init__(
        self,
        b: int,
        num: int,
        exclude: Sequence[np.ndarray] | None,
        blocked: Sequence[torch.Tensor | None] | None,
    ) -> None:
        self.num = num
        # exclusions as (row, id) pairs sorted by id, so a block of entities is one slice
        rows_l, ids_l = [], []
        for row, ex in enumerate(exclude or ()):
            ex = np.asarray(ex, dtype=np.int64)
            if len(ex):
                rows_l.append(np.full(len(ex), row, dtype=np.int64))
                ids_l.append(ex)
        if ids_l:
            ids = np.concatenate(ids_l)
            order = np.argsort(ids, kind="stable")
            self.ex_rows = torch.from_numpy(np.concatenate(rows_l)[order])
            self.ex_ids = ids[order]
        else:
            self.ex_rows, self.ex_ids = torch.zeros(0, dtype=torch.long), np.zeros(0, dtype=np.int64)
        # type masks: distinct masks stacked, one index per row (-1: none, or a mask that leaves nothing out)
        self.block_table: torch.Tensor | None = None
        self.block_row = torch.full((b,), -1, dtype=torch.long)
        if blocked is not None:
            seen: dict[int, int] = {}
            tables: list[torch.Tensor] = []
            index = [-1] * b
            for row, m in enumerate(blocked):
                if m is None:
                    continue
                if id(m) not in seen:
                    seen[id(m)] = len(tables) if bool(m.any()) else -1
                    if seen[id(m)] >= 0:
                        tables.append(m.bool())
                index[row] = seen[id(m)]
            if tables:
                self.block_table = torch.stack(tables)
                self.block_row = torch.tensor(index, dtype=torch.long)
        self.any = self.block_table is not None or len(self.ex_ids) > 0

    def rows(self, rows: torch.Tensor) -> _Masks:
        """The masks of a subset of the rows, renumbered."""
        sub = _Masks.__new__(_Masks)
        sub.num = self.num
        pos = torch.full((len(self.block_row),), -1, dtype=torch.long)
        pos[rows] = torch.arange(len(rows))
        keep = (pos[self.ex_rows] >= 0).numpy() if len(self.ex_rows) else np.zeros(0, dtype=bool)
        sub.ex_rows = pos[self.ex_rows][torch.from_numpy(keep)] if len(self.ex_rows) else self.ex_rows
        sub.ex_ids = self.ex_ids[keep]
        sub.block_table = self.block_table
        sub.block_row = self.block_row[rows]
        sub.any = sub.block_table is not None or len(sub.ex_ids) > 0
        return sub

    def apply(self, values: torch.Tensor, start: int, stop: int, out: float = float("-inf")) -> None:
        """Set the left-out entries of ``values`` (rows, entities ``start..stop``) to ``out``, in place."""
        if self.block_table is not None:
            rows = self.block_row
            if bool((rows >= 0).all()) and bool((rows == rows[0]).all()):
                values.masked_fill_(self.block_table[int(rows[0]), start:stop].unsqueeze(0), out)
            else:
                has = torch.nonzero(rows >= 0).flatten()
                if len(has):
                    sub = values[has]
                    sub.masked_fill_(self.block_table[rows[has], start:stop], out)
                    values[has] = sub
        if len(self.ex_ids):
            lo, hi = np.searchsorted(self.ex_ids, [start, stop])
            if hi > lo:
                values[self.ex_rows[lo:hi], torch.from_numpy(self.ex_ids[lo:hi] - start)] = out

    def dense(self) -> torch.Tensor:
        """All masks as one boolean ``(rows, num)`` tensor (True: left out)."""
        out = torch.zeros(len(self.block_row), self.num, dtype=torch.bool)
        if self.block_table is not None:
            has = torch.nonzero(self.block_row >= 0).flatten()
            out[has] = self.block_table[self.block_row[has]]
        if len(self.ex_ids):
            out[self.ex_rows, torch.from_numpy(self.ex_ids)] = True
        return out


class _Found:
    """Candidates of :meth:`CandidateScorer._select`: runs of a group's values copied out of a block, with the
    group's maximum and the row's floor at the end, so only the runs that can hold one of the ``pool`` best are
    packed (about ``pool`` per row, however many were copied while the floor was still low)."""

    def __init__(self, b: int, pool: int) -> None:
        self.b, self.pool = b, pool
        self.rows: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.first: list[torch.Tensor] = []
        self.maxima: list[torch.Tensor] = []

    def add(
        self, rows: torch.Tensor, values: torch.Tensor, first: torch.Tensor, maxima: torch.Tensor
    ) -> None:
        """Runs ``values`` (n, g) of rows ``rows`` (n,), of the entities ``first + 0..g-1``, whose largest values
        are ``maxima`` (n,)."""
        g = values.shape[1]
        if g != _GROUP:  # a short block: one run per entity, padded to the group's width
            values = torch.cat([values, values.new_full((len(rows), _GROUP - g), float("-inf"))], dim=1)
        self.rows.append(rows)
        self.values.append(values)
        self.first.append(first)
        self.maxima.append(maxima)

    def best(self, floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``pool`` best values per row and their ids, best first (-inf where a row has fewer); ``floor``
        (b,): each row's final floor (a run whose maximum is below it holds none of them)."""
        if not self.rows:
            return torch.full((self.b, 0), float("-inf")), torch.zeros((self.b, 0), dtype=torch.long)
        rows, first, maxima = torch.cat(self.rows), torch.cat(self.first), torch.cat(self.maxima)
        keep = torch.nonzero(maxima >= floor[rows]).flatten()
        rows, first = rows[keep], first[keep]
        values = torch.cat(self.values)[keep]
        order = torch.argsort(rows, stable=True)
        rows, first, values = rows[order], first[order], values[order]
        counts = torch.bincount(rows, minlength=self.b)
        width = int(counts.max())
        slot = torch.arange(len(rows)) - (torch.cumsum(counts, 0) - counts)[rows]
        packed = torch.full((self.b, width, _GROUP), float("-inf"))
        ids = torch.zeros((self.b, width, _GROUP), dtype=torch.long)
        packed[rows, slot] = values
        ids[rows, slot] = first.unsqueeze(1) + torch.arange(_GROUP)
        k = min(self.pool, width * _GROUP)
        v, pos = torch.topk(packed.view(self.b, -1), k, dim=1, sorted=True)
        return v, ids.view(self.b, -1).gather(1, pos)


_INT_OUT = -(2**31)  # a left-out entry of an int32 product (no product of int8 vectors comes near it)


def _scaled(raw: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Products of int8 vectors times their row's scale ``c`` > 0: int32 ones with left-out entries
    :data:`_INT_OUT` (they become -inf), or float32 ones (:func:`_product` of one row) with -inf there."""
    if raw.dtype != torch.int32:
        return raw * c
    return (raw.float() * c).masked_fill_(raw == _INT_OUT, float("-inf"))


# SimSIMD capability names of the CPUs with a vector kernel for each selection precision's dot product
_SIMD_KERNELS = {
    "fp32": ("haswell", "skylake", "neon", "sve"),
    "bf16": ("genoa", "sapphire", "turin", "neon_bf16", "sve_bf16"),
    "int8": ("ice", "sapphire", "turin", "neon_i8", "sve_i8"),
}
_PRECISION_OF = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.int8: "int8"}


@functools.cache
def _simd_precisions() -> frozenset[str]:
    """The precisions SimSIMD has a vector dot-product kernel for on this CPU (none where it is not installed)."""
    try:
        import simsimd
    except ImportError:
        return frozenset()
    caps = {name for name, on in simsimd.get_capabilities().items() if on}
    return frozenset(p for p, kernels in _SIMD_KERNELS.items() if caps.intersection(kernels))


def _product(q: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """``q @ block.T`` for a block of the selection: float32 from float32 or bfloat16 inputs, int32 (or float32
    holding the same integers) from int8 ones.

    One query row goes through SimSIMD's dot-product kernels on all threads where the CPU has them: a
    matrix-vector product reads the block once, and BLAS / oneDNN run the one-row shape far below memory speed
    (1M x 256 here: int8 8 ms against 16-24 ms in ``torch._int_mm``, bfloat16 15 ms against 42 ms). int8 dot
    products of up to 1,024 dims stay below 2^24, so float32 holds them exactly; SimSIMD accumulates bfloat16 in
    float32, as the bound of :meth:`CandidateScorer._bound` allows."""
    precision = _PRECISION_OF[q.dtype]
    if len(q) == 1 and block.shape[1] <= 1024 and precision in _simd_precisions():
        import simsimd

        out = torch.empty(1, len(block))
        a, b = q.contiguous(), block.contiguous()
        if precision == "bf16":
            a, b = a.view(torch.int16), b.view(torch.int16)
        simsimd.cdist(
            a.numpy(),
            b.numpy(),
            metric="dot",
            dtype={"fp32": "float32", "bf16": "bf16", "int8": "int8"}[precision],
            out=out.numpy(),
            out_dtype="float32",
            threads=torch.get_num_threads(),
        )
        return out
    if precision == "int8":
        return torch._int_mm(q, block.T)
    return matmul_t(q, block)


_MAGIC = 1.5 * 2**23  # float32 whose bits plus an int32 x below 2^22 in size are the float32 _MAGIC + x
_MAGIC_BITS = 0x4B400000


def _magic_fits(dim: int) -> bool:
    """Whether every product of two int8 vectors (entries in [-127, 127]) of ``dim`` numbers is below 2^22."""
    return 127 * 127 * dim < 2**22


def _as_shifted_float(raw: torch.Tensor) -> torch.Tensor:
    """int32 products ``x`` (|x| < 2^22) as the float32 values ``_MAGIC + x``, in place (one integer add:
    torch's int-to-float conversion inside ``addcmul`` took longer than the int8 product's epilogue should)."""
    return raw.add_(_MAGIC_BITS).view(torch.float32)


_GROUP = 32  # entities per group in the filter of CandidateScorer._select


def _score_of(form: str | None, selection: torch.Tensor, q_sq: torch.Tensor) -> torch.Tensor:
    """The score that a selection value stands for (``q·e``; or ``-|q - e|`` from ``2 q·e - |e|²``)."""
    if form == "dot":
        return selection
    return -(q_sq - selection).clamp_min(0).sqrt()


def _dedupe(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-inf for every repeat of an id within a row (values of one id are equal)."""
    if ids.shape[1] < 2:
        return values, ids
    sorted_ids, pos = torch.sort(ids, dim=1, stable=True)
    repeat = torch.zeros_like(sorted_ids, dtype=torch.bool)
    repeat[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
    mask = torch.zeros_like(repeat).scatter_(1, pos, repeat)
    return values.masked_fill(mask, float("-inf")), ids


def _order(values: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best per row by score, then by smaller id; ``-inf`` / ``-1`` where fewer are finite."""
    b, c = values.shape
    by_id = torch.argsort(ids, dim=1, stable=True)
    values, ids = values.gather(1, by_id), ids.gather(1, by_id)
    order = torch.argsort(values, dim=1, descending=True, stable=True)[:, :k]
    v, i = values.gather(1, order), ids.gather(1, order)
    if c < k:
        v = torch.cat([v, torch.full((b, k - c), float("-inf"))], dim=1)
        i = torch.cat([i, torch.full((b, k - c), -1, dtype=torch.long)], dim=1)
    i = torch.where(torch.isfinite(v), i, torch.full_like(i, -1))
    return v, i
