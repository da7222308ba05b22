"""The text-aware relational model: a PyKEEN ``ERModel`` whose entity representation fuses text and structure.

Three modes share one code path, :class:`TextAwareRepresentation`:

- ``structure``: a learned embedding per entity (a plain PyKEEN model, the baseline);
- ``text``: a learned projection of the entity's frozen text features (pooled over its views), so an entity never
  seen in training still gets a vector. With a *similarity channel* (dot-product interactions), each entity vector
  is ``[projection ; c]``, ``c`` the unit-length principal components of its mean text features (``dim`` of them,
  :func:`similarity_map`), and each relation vector ``[r ; w_r 1]``: the score is ``projection score + w_r ·
  cos(c_a, c_e)``, ``w_r`` chosen per relation on validation (:func:`kgemb.channels.fit_similarity_weights`). The
  trained projection ranks entities unseen in training below what their texts' plain similarity says (WN18RR
  inductive); the channel gives that back where validation shows it helps;
- ``fused``, ``late`` combination (the default for dot-product interactions): a learned embedding ``s`` and the text
  projection ``t``, each scored with relation vectors of its own (``[s ; t]`` against ``[r_s ; w_r r_t]``), so the
  score is ``structure score + w_r · text score``; the parts are trained apart, as the structure and text models they
  are (:func:`kgemb.training.train`), and ``w_r`` is 1 unless validation shows another weight significantly better
  (:func:`kgemb.channels.fit_late_weights`). An entity unseen in training gets ``s`` estimated from ``t`` (a ridge
  regression over the seen entities, :meth:`TextAwareRepresentation.fit_structure_map`). With the text part's
  similarity channel (as a text model's, where validation chooses it) the vectors are ``[s ; t ; c]`` and the
  relation vectors ``[r_s ; w_r r_t ; w_r u_r 1]``.
- ``fused``, the other combinations: ``t`` plus ``s`` weighed per dimension by a gate ``g`` computed from both,
  ``t + g s`` (``gate``, the default for the other interactions), or mixed, ``(1 - g) t + g s`` (``convex``: the gate
  can also switch the text part off); an entity unseen in training is its text part ``t``.
  With a *text channel* (dot-product interactions), each entity vector is ``[fused ; text part]`` and each relation
  vector ``[r ; w_r r]``, so every scorer computes ``fused score + w_r · text-part score`` with one product; ``w_r``
  is chosen per relation on validation (:func:`kgemb.channels.fit_text_weights`, :func:`fold_text_channel`).

The interaction (TransE, RotatE, …) and the relation representations are PyKEEN's own, looked up by name.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pykeen.models import ERModel
from pykeen.nn import Embedding
from pykeen.nn.init import PretrainedInitializer
from pykeen.nn.modules import interaction_resolver, parallel_unsqueeze
from pykeen.nn.representation import Representation
from pykeen.triples import KGInfo
from torch import nn

from kgemb.errors import ConfigError, InputError, KgembError
from kgemb.features import TextFeatures

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph

MODES = ("fused", "text", "structure")
POOLINGS = ("attention", "mean")
COMBINATIONS = ("gate", "convex", "elementwise", "sum", "late")


@dataclass(frozen=True)
class InteractionSpec:
    """How kgemb builds one PyKEEN interaction: its representations' dtype, count, initialisers and constraints."""

    pykeen_name: str
    complex: bool = False
    relation_reps: int = 1
    normalize_entities: bool = False
    entity_init: str = "xavier_uniform"
    relation_init: str = "xavier_uniform"
    relation_init_kwargs: dict[str, Any] = field(default_factory=dict)
    relation_constrainer: str | None = None
    interaction_kwargs: dict[str, Any] = field(default_factory=dict)


#: interactions by name (PyKEEN's names); ``dim`` is the number of real numbers per entity vector
INTERACTIONS: dict[str, InteractionSpec] = {
    "transe": InteractionSpec("transe", normalize_entities=True, interaction_kwargs={"p": 1}),
    "distmult": InteractionSpec("distmult", relation_init="xavier_normal_norm"),
    # ComplEx barely trains with PyKEEN's normal_ initialiser here; xavier_normal_ works
    "complex": InteractionSpec(
        "complex", complex=True, entity_init="xavier_normal", relation_init="xavier_normal"
    ),
    "rotate": InteractionSpec(
        "rotate", complex=True, relation_init="init_phases", relation_constrainer="complex_normalize"
    ),
    "pairre": InteractionSpec(
        "pairre",
        relation_reps=2,
        normalize_entities=True,
        relation_init="uniform",
        interaction_kwargs={"p": 1},
    ),
}


def interaction_spec(name: str) -> InteractionSpec:
    """The spec of an interaction by (case-insensitive) name; :class:`ConfigError` listing the known ones."""
    spec = INTERACTIONS.get(name.lower().replace("_", "").replace("-", ""))
    if spec is None:
        raise ConfigError(f"unknown interaction {name!r}; choose one of {', '.join(INTERACTIONS)}")
    return spec


def check_dim(interaction: str, dim: int) -> None:
    """Reject a dimension the interaction cannot take (complex ones need an even number of reals)."""
    if not isinstance(dim, int) or dim < 2:
        raise ConfigError(f"dim={dim!r} is too small; pass an integer of at least 2 (e.g. dim=256)")
    if interaction_spec(interaction).complex and dim % 2:
        raise ConfigError(
            f"dim={dim} is odd, but {interaction} uses complex numbers (dim/2 of them): pass an even dim, "
            f"e.g. {dim + 1}"
        )


class ViewPooling(nn.Module):
    """Pool the views of each entity into one vector: plain mean, or multi-head attention with learned queries.

    Attention: each head has a learned query; a view's weight is the softmax (over the entity's views) of the query
    against the view; head ``k`` pools the ``k``-th slice of the view vectors. The queries start at zero, so the
    pooling starts as the plain mean and learns which views (language, label or description) to trust.
    """

    def __init__(self, dim: int, heads: int = 4, kind: str = "attention") -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ConfigError(f"unknown pooling {kind!r}; choose one of {', '.join(POOLINGS)}")
        while dim % heads:
            heads -= 1
        self.kind, self.dim, self.heads = kind, dim, heads
        self.query = nn.Linear(dim, heads, bias=False) if kind == "attention" else None

    def reset_parameters(self) -> None:
        if self.query is not None:
            nn.init.zeros_(self.query.weight)

    def forward(self, views: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
        """``views`` (V, dim) owned by ``segment`` (V,) in ``range(n)`` -> pooled (n, dim)."""
        if self.query is None:
            total = views.new_zeros(n, self.dim).index_add_(0, segment, views)
            counts = torch.bincount(segment, minlength=n).clamp_min(1).to(views.dtype)
            return total / counts.unsqueeze(1)
        scores = self.query(views) / math.sqrt(self.dim / self.heads)  # (V, H)
        seg = segment.unsqueeze(1).expand_as(scores)
        top = scores.new_full((n, self.heads), -torch.inf).scatter_reduce(0, seg, scores, reduce="amax")
        weights = (scores - top[segment]).exp()
        weights = weights / weights.new_zeros(n, self.heads).index_add_(0, segment, weights)[segment]
        per_head = views.view(-1, self.heads, self.dim // self.heads) * weights.unsqueeze(-1)
        return (
            views.new_zeros(n, self.heads, self.dim // self.heads)
            .index_add_(0, segment, per_head)
            .view(n, -1)
        )


class ElementwiseGate(nn.Module):
    """The pre-activation of a gate per dimension, ``w_t * t + w_s * s + b`` (``3 * dim`` weights): the ``gate``
    combination without its ``2 dim x dim`` matrix, whose products cost most of a small graph's fused step."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2, dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(torch.addcmul(self.bias, t, self.weight[0]), s, self.weight[1])


class TextAwareRepresentation(Representation):
    """Entity representation of all three modes (see the module docstring), in PyKEEN's Representation API.

    Vectors are ``dim`` reals; complex interactions read them as ``dim / 2`` complex numbers (interleaved real and
    imaginary parts, as :class:`pykeen.nn.Embedding` stores them). In evaluation (no gradients) the vectors of all
    entities are computed once and cached until a parameter changes.
    """

    def __init__(
        self,
        *,
        max_id: int,
        dim: int,
        mode: str = "fused",
        complex_: bool = False,
        features: TextFeatures | None = None,
        pooling: str = "attention",
        heads: int = 4,
        combination: str = "gate",
        seen: torch.Tensor | None = None,
        structure_init: str = "xavier_uniform",
        structure_dropout: float = 0.0,
        normalize: bool = False,
        text_channel: bool = False,
        similarity: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if combination not in COMBINATIONS:
            raise ConfigError(f"unknown combination {combination!r}; choose one of {', '.join(COMBINATIONS)}")
        if text_channel and mode == "structure":
            raise ConfigError(
                "a text or similarity channel belongs to 'fused' and 'text' models, not 'structure'"
            )
        late = mode == "fused" and combination == "late"
        text_channel = text_channel or late  # late: always [structural part ; text part]
        if similarity and not late and mode != "text":
            raise ConfigError("a similarity channel belongs to text models and late fused ones")
        # a text model's channel is its similarity channel; a late model's text part can have one too
        similarity = (text_channel and mode == "text") or (late and similarity)
        # [fused ; text part (; similarity)], or text: [projection ; similarity]
        out_dim = dim * (1 + (mode == "fused" and text_channel) + similarity)
        super().__init__(
            max_id=max_id,
            shape=(out_dim // 2,) if complex_ else (out_dim,),
            normalizer="normalize" if normalize else None,
            normalizer_kwargs={"dim": -1} if normalize else None,
            unique=True,
        )
        self.mode, self.dim, self.complex, self.combination = mode, dim, complex_, combination
        self.text_channel, self.out_dim, self.late, self.similarity = text_channel, out_dim, late, similarity
        self.structure_dropout = structure_dropout
        self.uses_text = mode in ("text", "fused")
        self.uses_structure = mode in ("structure", "fused")
        self.structure = (
            Embedding(max_id=max_id, shape=(dim,), initializer=structure_init)
            if self.uses_structure
            else None
        )
        self.gate: nn.Module | None = None
        if mode == "fused" and combination in ("gate", "convex"):
            self.gate = nn.Linear(2 * dim, dim)
        elif mode == "fused" and combination == "elementwise":
            self.gate = ElementwiseGate(dim)
        if self.uses_text:
            if features is None:
                raise ConfigError(f"mode {mode!r} needs text features; pass an encoder")
            if features.num_entities != max_id:
                raise InputError(
                    f"the text features cover {features.num_entities} entities, the graph has {max_id}; "
                    "recompute them for this graph"
                )
            self.register_buffer("text_vectors", features.vectors, persistent=False)
            self.register_buffer("text_offsets", features.offsets, persistent=False)
            self.register_buffer("text_owners", features.owners(), persistent=False)
            self.register_buffer("text_mean", features.mean_pooled(), persistent=False)
            self.pooling = ViewPooling(features.dim, heads=heads, kind=pooling)
            self.project = nn.Linear(features.dim, dim)
            # at most one view per entity: attention weighs each entity's one view by exactly 1, so the pooled text
            # is the (constant) text_mean and the pooling is skipped; its queries get no gradient (it would be 0)
            self.one_view = bool((features.offsets[1:] - features.offsets[:-1]).max() <= 1)
            if similarity:  # [P ; -mean P]: similarity components (similarity_map)
                self.register_buffer("similarity_map", torch.zeros(features.dim + 1, dim))
        else:
            self.pooling = None
            self.project = None
            self.one_view = False
        # entities seen in training triples; in fused mode the others fall back to their text part
        seen = torch.ones(max_id, dtype=torch.bool) if seen is None else seen.bool()
        self.register_buffer("seen", seen)
        if late:  # [W ; b]: an unseen entity's structural part estimated from its text part, t W + b
            self.register_buffer("structure_map", torch.zeros(dim + 1, dim))
        self._cache: tuple[Any, torch.Tensor] | None = None

    # -- PyKEEN Representation API -------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        if self.gate is not None:  # both gates start at sigmoid(0) = 1/2 for every entity
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        self._cache = None

    def clear_cache(self) -> None:
        """Forget the cached entity vectors (they are recomputed on next use, with this process's threads)."""
        self._cache = None

    def train(self, mode: bool = True) -> TextAwareRepresentation:
        # the cache is dropped for training only: PyKEEN's predict() calls eval() for every batch, and the cache
        # key already sees any change of the weights
        if mode:
            self._cache = None
        return super().train(mode)

    def _plain_forward(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training and not torch.is_grad_enabled():
            full = self._cached()
            return full if indices is None else full[indices.to(full.device)]
        return self._as_interaction_layout(self.real_vectors(indices))

    # -- kgemb ---------------------------------------------------------------------------------------------------
    def real_vectors(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Entity vectors as reals, shape ``(*indices.shape, out_dim)`` (before the PyKEEN normalizer)."""
        x, text = self._parts(indices)
        blocks = [x, text] if self.mode == "fused" and self.text_channel else [x]
        if self.similarity:  # [projection ; similarity components], late: [s ; t ; similarity components]
            flat = None if indices is None else indices.reshape(-1)
            mean = self.text_mean if flat is None else self.text_mean[flat]
            blocks.append(self._similarity(mean).reshape(x.shape))
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1)

    def parts(self, indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A fused model's (fused vectors, text-part vectors) in the interaction's layout, normalised like the
        model's vectors; each ``dim`` reals (the text channel's two halves, or what its training scores)."""
        if self.mode != "fused":
            raise ConfigError("only a 'fused' model has a fused and a text part")
        x, text = self._parts(indices)
        return tuple(self._as_interaction_layout(self._normalized_real(v)) for v in (x, text))  # type: ignore

    def _parts(self, indices: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        shape = (self.max_id,) if indices is None else tuple(indices.shape)
        flat = None if indices is None else indices.reshape(-1)
        text = self.text_part(flat) if self.uses_text else None
        x = text
        if self.mode == "structure":
            x = self.structure(indices=flat)
        elif self.mode == "fused":
            assert text is not None
            s = self.structure(indices=flat)
            x = s if self.late else self._combine(text, s)
            keep = self.seen if flat is None else self.seen[flat]
            if self.training and self.structure_dropout > 0:
                keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.structure_dropout)
            # an entity without its structural part (unseen in training, or dropped) is its text part alone; in a
            # late model its structural part is estimated from its text part
            if not bool(keep.all()):
                x = torch.where(keep.unsqueeze(1), x, self._structure_from_text(text) if self.late else text)
        assert x is not None
        return x.reshape(*shape, self.dim), None if text is None else text.reshape(*shape, self.dim)

    def text_only(self, standardised: torch.Tensor) -> torch.Tensor:
        """Vectors (reals, normalised like the model's) of new entities from their standardised text features."""
        if not self.uses_text:
            raise ConfigError(
                "this model was trained in 'structure' mode and has no text part; train 'text' or 'fused'"
            )
        standardised = standardised.to(self.project.weight.device)
        x = self.project(standardised)
        blocks = [x]
        if self.text_channel and self.mode == "fused":  # a new entity's fused vector is that of an unseen one
            blocks = [self._structure_from_text(x) if self.late else x, x]
        if self.similarity:
            blocks.append(self._similarity(standardised))
        return self._normalized_real(blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1))

    def text_part(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The text parts (reals, ``(n, dim)``, before any normaliser) of entities ``indices`` (None: all)."""
        return self.project(self._pooled_text(indices))

    def _similarity(self, mean_text: torch.Tensor) -> torch.Tensor:
        """A text model's similarity components (:func:`similarity_vectors`) of mean text features."""
        return similarity_vectors(mean_text, self.similarity_map)

    def _structure_from_text(self, text: torch.Tensor) -> torch.Tensor:
        """A late model's estimate of structural parts from text parts (reals, ``(n, dim)``)."""
        return torch.addmm(self.structure_map[-1], text, self.structure_map[:-1])

    @torch.no_grad()
    def fit_structure_map(
        self, ridges: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0), seed: int = 0
    ) -> float:
        """Fit a late model's :attr:`structure_map` (ridge regression of the seen entities' structural parts on
        their text parts, the penalty chosen on a tenth of them held out, then refit on all); returns the held-out
        R². Unseen entities then rank among seen ones by an estimate of where the graph would put them, not by 0."""
        if not self.late:
            raise ConfigError("only a late fused model maps text parts to structural parts")
        seen = torch.nonzero(self.seen).flatten()
        t = self.text_part(seen).float()
        s = self.structure(indices=seen).float()
        order = torch.randperm(len(seen), generator=torch.Generator().manual_seed(seed))
        held = torch.zeros(len(seen), dtype=torch.bool)
        held[order[: max(1, len(seen) // 10)]] = True

        def fit(rows: torch.Tensor, ridge: float) -> torch.Tensor:
            tm, sm = t[rows].mean(0), s[rows].mean(0)
            tc = t[rows] - tm
            gram = tc.T @ tc
            eye = torch.eye(len(gram), dtype=gram.dtype)
            w = torch.linalg.solve(gram + ridge * gram.diagonal().mean() * eye, tc.T @ (s[rows] - sm))
            return torch.cat([w, (sm - tm @ w).unsqueeze(0)])

        def r2(m: torch.Tensor) -> float:
            pred = torch.addmm(m[-1], t[held], m[:-1])
            return float(1 - ((pred - s[held]) ** 2).sum() / ((s[held] - s[held].mean(0)) ** 2).sum())

        scores = {ridge: r2(fit(~held, ridge)) for ridge in ridges} if len(seen) >= 20 else {ridges[-1]: 0.0}
        best = max(scores, key=scores.get)
        self.structure_map.copy_(fit(torch.ones(len(seen), dtype=torch.bool), best))
        self._cache = None
        return scores[best]

    def _normalized_real(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalizer is None:
            return x
        return self.normalizer(x)

    def _combine(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The fused vectors of text parts ``t`` and structural parts ``s``."""
        if self.gate is None:
            return t + s
        if isinstance(self.gate, ElementwiseGate):
            return t + torch.sigmoid(self.gate(t, s)) * s
        g = torch.sigmoid(self.gate(torch.cat([t, s], dim=-1)))
        if self.combination == "convex":
            return torch.lerp(t, s, g)
        return t + g * s

    def _pooled_text(self, flat: torch.Tensor | None) -> torch.Tensor:
        assert self.pooling is not None
        if self.pooling.kind == "mean" or self.one_view:
            return self.text_mean if flat is None else self.text_mean[flat]
        if flat is None:
            return self.pooling(self.text_vectors, self.text_owners, self.max_id)
        starts = self.text_offsets[flat]
        counts = self.text_offsets[flat + 1] - starts
        segment = torch.repeat_interleave(torch.arange(flat.numel(), device=flat.device), counts)
        first = torch.cumsum(counts, 0) - counts
        view_ids = starts[segment] + torch.arange(segment.numel(), device=flat.device) - first[segment]
        return self.pooling(self.text_vectors[view_ids], segment, flat.numel())

    def _as_interaction_layout(self, x: torch.Tensor) -> torch.Tensor:
        return to_interaction_layout(x, self.complex)

    def _cached(self) -> torch.Tensor:
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._as_interaction_layout(self.real_vectors(None)))
        return self._cache[1]


@torch.no_grad()
def similarity_map(mean_text: torch.Tensor, dim: int, max_rows: int = 50_000, seed: int = 0) -> torch.Tensor:
    """``[P ; -mean P]``, shape ``(features + 1, dim)``: the first ``dim`` principal directions ``P`` of the
    entities' mean text features ``mean_text`` (fitted on at most ``max_rows`` of them; zero columns where the
    features have fewer dimensions), so that :func:`similarity_vectors` keeps the features' cosine similarity
    where ``dim`` is below their dimension."""
    x = mean_text.float()
    if len(x) > max_rows:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_rows]]
    mean = x.mean(0)
    _, _, vt = torch.linalg.svd(x - mean, full_matrices=False)
    directions = torch.zeros(x.shape[1], dim, device=x.device)
    k = min(dim, len(vt))
    directions[:, :k] = vt[:k].T
    return torch.cat([directions, -(mean @ directions).unsqueeze(0)])


def similarity_vectors(mean_text: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    """Unit-length similarity components of mean text features (``mapping`` from :func:`similarity_map`): their
    dot products are the features' cosine similarities, centred, in the principal subspace."""
    c = torch.addmm(mapping[-1], mean_text.to(mapping.dtype), mapping[:-1])
    return c / c.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def to_interaction_layout(vectors: torch.Tensor, complex_: bool) -> torch.Tensor:
    """Real ``(…, dim)`` vectors -> what the interaction takes (complex ``(…, dim/2)`` where needed)."""
    if not complex_:
        return vectors
    return torch.view_as_complex(vectors.reshape(*vectors.shape[:-1], -1, 2).contiguous())


def to_real_layout(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_interaction_layout`: complex ``(…, d)`` -> real ``(…, 2d)`` interleaved."""
    if not torch.is_complex(x):
        return x
    return torch.view_as_real(x).reshape(*x.shape[:-1], -1)


Side = Literal["head", "tail"]


_DOT_INTERACTIONS = ("DistMultInteraction", "ComplExInteraction")  # product_form "dot"


def product_form(interaction: Any) -> str | None:
    """How an interaction scores every candidate entity with one matrix product, or None where it cannot.

    ``"dot"``: score = q · t on the real layout (DistMult, ComplEx); ``"distance"``: score = -|q - t|₂ (RotatE,
    TransE with p=2), where q is :func:`query_vector` of the known side.
    """
    name = type(interaction).__name__
    if name in _DOT_INTERACTIONS:
        return "dot"
    if name == "RotatEInteraction":
        return "distance"
    if name == "TransEInteraction" and interaction.p == 2 and not interaction.power_norm:
        return "distance"
    return None


def scores_by_dot(interaction: str) -> bool:
    """Whether the interaction given by kgemb's name (``"complex"``, ``"rotate"``, ...) has :func:`product_form`
    ``"dot"``: a score linear in each side's vector, which a text channel needs."""
    return (
        interaction_resolver.lookup(interaction_spec(interaction).pykeen_name).__name__ in _DOT_INTERACTIONS
    )


def query_vector(interaction: Any, side: Side, anchor: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    """The vector each candidate is compared with (see :func:`product_form`), in the interaction's layout."""
    name = type(interaction).__name__
    if name == "TransEInteraction":
        return anchor + rel if side == "tail" else anchor - rel
    if side == "tail" or name == "DistMultInteraction":
        return anchor * rel
    return torch.conj(rel) * anchor  # ComplEx, and RotatE (|r| = 1): |h r - t| = |h - conj(r) t|


_FEW_ROWS = 32  # float32 queries up to which the candidates are multiplied by the queries (see matmul_t)


def _few_rows(q: torch.Tensor, cand: torch.Tensor) -> bool:
    return q.dtype == torch.float32 and q.shape[0] <= _FEW_ROWS < cand.shape[0]


def matmul_t(q: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """``q @ cand.T`` (b, C), contiguous.

    Without gradients, float32, from :data:`_DNN_ROWS` rows: oneDNN's kernel (``torch.ops.mkldnn._linear_pointwise``)
    instead of MKL's. On this machine's AMD EPYC, where MKL does not take its fast paths, oneDNN is 1.5-2.5x faster
    (100k x 256 by 10 rows: 10 against 15 ms; by 64 rows: 22-26 against 41-55 ms; 40,943 x 512 by 128 rows: 30
    against 50-70 ms). Up to :data:`_FEW_ROWS` rows the product is the tall ``(cand @ q.T).T`` (:func:`_tall`),
    then transposed; more rows take ``cand`` as the weight."""
    if not _few_rows(q, cand):
        if _by_dnn(q, cand):
            return _dnn_linear(q, cand)
        return q @ cand.T
    return _tall(q, cand).T.contiguous()


_DNN_ROWS = 8  # query rows from which products go through oneDNN (fewer: MKL's tall product is faster here)


def _by_dnn(q: torch.Tensor, cand: torch.Tensor) -> bool:
    return (
        q.shape[0] >= _DNN_ROWS
        and q.dtype == cand.dtype == torch.float32
        and not (torch.is_grad_enabled() and (q.requires_grad or cand.requires_grad))
        and q.device.type == cand.device.type == "cpu"
        and _dnn_works()
    )


def _tall(q: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """``cand @ q.T`` (C, b), the tall product: oneDNN's with the query rows as the weight (see :func:`matmul_t`),
    or, below :data:`_DNN_ROWS` rows, MKL's on both threads, one row as two (repeated, not expanded: an expanded
    row is not BLAS-able; MKL's matrix-vector path reads 1M x 256 at ~1.7 GB/s, 150 ms against 50 ms for two
    columns)."""
    if _by_dnn(q, cand):
        return _dnn_linear(cand, q)
    b = q.shape[0]
    return (cand @ (q if b > 1 else q.repeat(2, 1)).T)[:, :b]


def _dnn_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` by oneDNN's float32 linear kernel (the private op behind inductor's CPU linear)."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight.contiguous(), None, "none", [], "")


@functools.cache
def _dnn_works() -> bool:
    """Whether this torch has oneDNN's float32 linear kernel on the CPU (a private op: checked, not assumed)."""
    try:
        a, w = torch.arange(6.0).reshape(3, 2), torch.tensor([[1.0, 2.0]])
        return bool(torch.equal(_dnn_linear(a, w), a @ w.T))
    except (RuntimeError, AttributeError):
        return False


def product_scores(
    form: str,
    q: torch.Tensor,
    cand: torch.Tensor,
    cand_sq_norms: torch.Tensor | None = None,
    raw: bool = True,
    columns: bool = False,
) -> torch.Tensor:
    """Scores ``(b, C)`` of candidates ``cand`` (C, d) against queries ``q`` (b, d), both real layout.

    ``raw=False`` (distance form) returns ``2 q·t - |t|²``, which ranks like the score within each row: one fused
    matrix product and no square root. ``columns=True`` (raw scores, no gradients) returns the transpose
    ``(C, b)``, one column per query, as the tall product leaves it (see :func:`matmul_t`): for callers that
    combine each candidate's scores over the queries.
    """
    if columns:
        if not raw:
            raise ValueError("columns=True gives the raw scores only")
        return _product_columns(form, q, cand, cand_sq_norms)
    if form == "dot":
        return matmul_t(q, cand)
    tn = (cand * cand).sum(dim=-1) if cand_sq_norms is None else cand_sq_norms
    if _few_rows(q, cand) or _by_dnn(q, cand):
        proxy = matmul_t(2.0 * q, cand).sub_(tn)  # 2 q·t from the product (scaling by 2 is exact)
    else:
        proxy = torch.addmm(tn.unsqueeze(0), q, cand.T, beta=-1.0, alpha=2.0)
    if not raw:
        return proxy
    qq = (q * q).sum(dim=-1, keepdim=True)
    if proxy.requires_grad:
        return -(qq - proxy).clamp_min(0).sqrt()
    # -|q - t| = -sqrt(|q|² - (2 q·t - |t|²)), in place on the product (no temporaries of its size)
    return proxy.sub_(qq).clamp_max_(0).neg_().sqrt_().neg_()


def _product_columns(
    form: str, q: torch.Tensor, cand: torch.Tensor, cand_sq_norms: torch.Tensor | None
) -> torch.Tensor:
    """:func:`product_scores` with ``columns=True``: ``(C, b)``, every step in place on the product."""
    # -2 q·t straight from the product (scaling by a power of two is exact)
    prod = _tall(q if form == "dot" else -2.0 * q, cand)
    if form == "dot":
        return prod
    tn = ((cand * cand).sum(dim=-1) if cand_sq_norms is None else cand_sq_norms).unsqueeze(1)
    # -|q - t| = -sqrt(|q|² - 2 q·t + |t|²)
    return prod.add_(tn).add_((q * q).sum(dim=-1)).clamp_min_(0).sqrt_().neg_()


class TextAwareModel(ERModel):
    """PyKEEN's ``ERModel``; scoring every entity as head or tail without gradients (evaluation, ranking) is one
    matrix product against all entity vectors where the interaction allows it (:func:`product_form`), instead of
    PyKEEN's ``batch × entities × dim`` broadcast.

    A *reciprocal* model (``num_base_relations`` R, relation representations for 2R ids) has learned an inverse
    relation ``r + R`` for every relation ``r``: the head query ``(?, r, t)`` is answered as the tail query
    ``(t, r + R, ?)``, here and in every other scorer (:func:`orient`)."""

    def __init__(self, *args: Any, num_base_relations: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.num_base_relations = self.num_relations if num_base_relations is None else num_base_relations
        self.reciprocal = self.num_relations == 2 * self.num_base_relations
        self.rule_channel: Any = None  # a kgemb.channels.RuleChannel, added to scores by entity ids
        # bool per base relation (kgemb.rules.irreflexive_relations): its queries never answer their anchor, which
        # every ranking leaves out as it leaves out known links (kgemb.evaluation, channels, the reasoning scorer)
        self.irreflexive: torch.Tensor | None = None

    def skips_anchor(self, relations: torch.Tensor) -> torch.Tensor:
        """Per query relation id (a base relation, or a reciprocal model's inverse ``r + R``), whether its
        answer is never the query's own anchor: the relation is irreflexive (:attr:`irreflexive`)."""
        if self.irreflexive is None:
            return torch.zeros(relations.shape, dtype=torch.bool)
        return self.irreflexive[relations.cpu() % self.num_base_relations]

    @property
    def scoring_form(self) -> str | None:
        """The interaction's :func:`product_form` where this model can use it (one relation representation)."""
        return product_form(self.interaction) if len(self.relation_representations) == 1 else None

    def orient(self, side: Side, relations: torch.Tensor) -> tuple[Side, torch.Tensor]:
        """The side and relation ids a query is scored with: a reciprocal model turns head queries into tail
        queries of the inverse relation."""
        if self.reciprocal and side == "head":
            return "tail", relations + self.num_base_relations
        return side, relations

    def score_t(
        self, hr_batch: torch.Tensor, *, slice_size=None, mode=None, tails=None, rules_off: bool = False
    ) -> torch.Tensor:
        if tails is None and mode is None and self._by_product():
            ents = self.entity_representations[0](indices=None)
            scores = self._score_all("tail", ents, ents[hr_batch[:, 0]], hr_batch[:, 1])
        else:
            scores = super().score_t(hr_batch, slice_size=slice_size, mode=mode, tails=tails)
        return self._with_rules(scores, "tail", hr_batch[:, 0], hr_batch[:, 1], tails, mode, rules_off)

    def score_h(
        self, rt_batch: torch.Tensor, *, slice_size=None, mode=None, heads=None, rules_off: bool = False
    ) -> torch.Tensor:
        if heads is None and mode is None and self._by_product():
            ents = self.entity_representations[0](indices=None)
            scores = self._score_all("head", ents, ents[rt_batch[:, 1]], rt_batch[:, 0])
        elif self.reciprocal:
            inverse = torch.stack([rt_batch[:, 1], rt_batch[:, 0] + self.num_base_relations], dim=1)
            scores = super().score_t(inverse, slice_size=slice_size, mode=mode, tails=heads)
        else:
            scores = super().score_h(rt_batch, slice_size=slice_size, mode=mode, heads=heads)
        return self._with_rules(scores, "head", rt_batch[:, 1], rt_batch[:, 0], heads, mode, rules_off)

    def rule_scores(self, side: Side, anchors: torch.Tensor, relations: torch.Tensor) -> torch.Tensor | None:
        """The rule channel's weighted scores ``(b, num_entities)`` of queries by entity ids, or None."""
        if self.rule_channel is None:
            return None
        # rules answer head queries as tail queries of the inverse, whether or not the model is reciprocal
        inverse = relations + self.num_base_relations
        return self.rule_channel.scores(anchors, inverse if side == "head" else relations)

    def _with_rules(self, scores, side, anchors, relations, candidates, mode, rules_off) -> torch.Tensor:
        if rules_off or candidates is not None or mode is not None or torch.is_grad_enabled():
            return scores
        extra = self.rule_scores(side, anchors, relations)
        return scores if extra is None else scores + extra.to(scores.device, scores.dtype)

    def _by_product(self) -> bool:
        return not torch.is_grad_enabled() and self.scoring_form is not None

    def score_all(self, side: Side, anchor: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """Scores ``(b, num_entities)`` of every entity as the ``side`` of queries whose known side is given as
        vectors ``anchor`` (b, …) in the interaction's layout and whose relations are ids ``relations`` (b,)."""
        ents = self.entity_representations[0](indices=None)
        return self._score_all(side, ents, anchor.to(ents.device), relations)

    def _score_all(
        self, side: Side, ents: torch.Tensor, anchor: torch.Tensor, relations: torch.Tensor
    ) -> torch.Tensor:
        side, relations = self.orient(side, relations)
        reps = [rep(indices=relations.to(ents.device)) for rep in self.relation_representations]
        if self._by_product():
            q = to_real_layout(query_vector(self.interaction, side, anchor, reps[0]))
            return product_scores(self.scoring_form, q, to_real_layout(ents))
        r = parallel_unsqueeze(reps[0] if len(reps) == 1 else reps, dim=1)
        if side == "tail":
            return self.interaction(h=anchor.unsqueeze(1), r=r, t=ents.unsqueeze(0))
        return self.interaction(h=ents.unsqueeze(0), r=r, t=anchor.unsqueeze(1))


def relation_text_initializer(
    raw: np.ndarray, spec: InteractionSpec, dim: int, seed: int
) -> list[PretrainedInitializer]:
    """Initial relation vectors from relation texts: a fixed random projection of the centred text vectors.

    Relations with similar names start close together; the scale matches a Xavier initialisation.
    """
    x = torch.as_tensor(raw, dtype=torch.float32)
    x = x - x.mean(dim=0, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(spec.relation_reps):
        projection = torch.randn(x.shape[1], dim, generator=generator) / math.sqrt(x.shape[1])
        y = x @ projection
        y = y * (math.sqrt(2.0 / (x.shape[0] + dim)) / y.std().clamp_min(1e-6))
        if spec.complex:
            y = torch.view_as_complex(y.view(x.shape[0], dim // 2, 2).contiguous())
            if spec.relation_constrainer == "complex_normalize":
                y = y / y.abs().clamp_min(1e-6)
            y = torch.view_as_real(y).contiguous()  # PyKEEN initialises complex embeddings in this layout
        out.append(PretrainedInitializer(y))
    return out


def build_model(
    info: KGInfo,
    *,
    mode: str,
    interaction: str,
    dim: int,
    features: TextFeatures | None,
    pooling: str = "attention",
    heads: int = 4,
    combination: str = "gate",
    seen: torch.Tensor | None = None,
    structure_dropout: float = 0.0,
    relation_init: list[PretrainedInitializer] | None = None,
    loss: str | None = None,
    loss_kwargs: dict[str, Any] | None = None,
    reciprocal: bool = False,
    text_channel: bool = False,
    similarity: bool = False,
    seed: int = 0,
) -> TextAwareModel:
    """Compose a PyKEEN ``ERModel``: the text-aware entity representation, PyKEEN relation embeddings, interaction.

    ``reciprocal``: one more relation representation per relation, its inverse (see :class:`TextAwareModel`).
    ``text_channel``: the layout of :func:`fold_text_channel` (vectors twice as long), to load a folded model;
    ``similarity``: a late model's with its text part's similarity channel (three times as long)."""
    spec = interaction_spec(interaction)
    num_base_relations = info.num_relations
    if reciprocal:
        info = KGInfo(
            num_entities=info.num_entities,
            num_relations=2 * num_base_relations,
            create_inverse_triples=False,
        )
        if relation_init is not None:  # an inverse starts where its relation does
            relation_init = [
                PretrainedInitializer(torch.cat([init.tensor, init.tensor])) for init in relation_init
            ]
    check_dim(interaction, dim)
    torch.manual_seed(seed)
    entity = TextAwareRepresentation(
        max_id=info.num_entities,
        dim=dim,
        mode=mode,
        complex_=spec.complex,
        features=features,
        pooling=pooling,
        heads=heads,
        combination=combination,
        seen=seen,
        structure_init=spec.entity_init,
        structure_dropout=structure_dropout,
        normalize=spec.normalize_entities,
        text_channel=text_channel,
        similarity=similarity,
    )
    blocks = entity.out_dim // dim  # of the relation rows too
    if entity.text_channel:  # asked for, or a late model's layout
        if not scores_by_dot(interaction):
            raise ConfigError(
                f"a text channel (and combination 'late') needs a dot-product interaction (complex, distmult), "
                f"not {interaction}"
            )
        if relation_init is not None:  # every block of a relation row starts where its name puts it
            relation_init = [
                PretrainedInitializer(torch.cat([init.tensor] * blocks, dim=1)) for init in relation_init
            ]
    rel_dim = (dim // 2 if spec.complex else dim) * blocks
    relation_kwargs = []
    for k in range(spec.relation_reps):
        kwargs: dict[str, Any] = {"shape": rel_dim}
        if relation_init is not None:
            kwargs["initializer"] = relation_init[k]
        else:
            kwargs["initializer"] = spec.relation_init
            init_kwargs = dict(spec.relation_init_kwargs)
            if spec.relation_init == "uniform":  # PairRE's range, cf. pykeen.models.PairRE
                init_kwargs = {"a": -14 / dim, "b": 14 / dim, **init_kwargs}
            kwargs["initializer_kwargs"] = init_kwargs or None
        if spec.complex:
            kwargs["dtype"] = torch.cfloat
        if spec.relation_constrainer:
            kwargs["constrainer"] = spec.relation_constrainer
        relation_kwargs.append(kwargs)
    return TextAwareModel(
        triples_factory=info,
        interaction=spec.pykeen_name,
        interaction_kwargs=spec.interaction_kwargs or None,
        entity_representations=entity,
        relation_representations=[Embedding] * spec.relation_reps,
        relation_representations_kwargs=relation_kwargs,
        loss=loss,
        loss_kwargs=loss_kwargs,
        random_seed=seed,
        num_base_relations=num_base_relations,
    )


#: a text model's similarity map in its state dict (:func:`similarity_map`)
SIMILARITY_KEY = "entity_representations.0.similarity_map"


def fold_text_channel(
    state: dict[str, torch.Tensor],
    weights: Any,
    late: bool = False,
    similarity: torch.Tensor | None = None,
    complex_: bool = False,
    similarity_weights: Any = None,
) -> dict[str, torch.Tensor]:
    """The state dict of a fused model (trained with its text part's own loss, :mod:`kgemb.objective`) with its text
    channel folded in: relation row ``r`` becomes ``[r ; w_r r]``, so that on the representation's
    ``[fused ; text part]`` vectors a dot-product interaction scores ``fused + w_r · text part``. A ``late`` model's
    rows are ``[r_s ; r_t]`` already and become ``[r_s ; w_r r_t]``. A text model's similarity channel
    (``similarity``: its :func:`similarity_map`; ``complex_``: rows of interleaved complex numbers) makes them
    ``[r ; w_r 1]``; a late model's text part's (``similarity_weights`` ``u_r``) ``[r_s ; w_r r_t ; w_r u_r 1]``.
    Load it into ``build_model(..., text_channel=True, similarity=...)``; :func:`unfold_text_channel` undoes it."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
    u = w if similarity_weights is None else w * torch.as_tensor(np.asarray(similarity_weights, np.float32))
    out = dict(state)
    for name, value in relation_rows(state):
        if len(w) != len(value) or len(u) != len(value):
            raise ValueError(f"{len(w)} text weights for {len(value)} relation rows")
        w_r = w.to(value.dtype).unsqueeze(1)
        half = value.shape[1] // 2
        if late:
            blocks = [value[:, :half], value[:, half:] * w_r]
        else:
            blocks = [value] if similarity is not None else [value, value * w_r]
        if similarity is not None:
            one = torch.ones_like(blocks[-1])
            if complex_:
                one[:, 1::2] = 0  # 1 + 0i: the product of two components is their dot product
            blocks.append(one * u.to(value.dtype).unsqueeze(1))
        out[name] = torch.cat(blocks, dim=1)
    if similarity is not None:
        out[SIMILARITY_KEY] = similarity
    return out


def unfold_text_channel(state: dict[str, torch.Tensor], late_weights: Any = None) -> dict[str, torch.Tensor]:
    """A folded state dict (:func:`fold_text_channel`) back in the training layout: the relation rows' first half,
    or for a late model (``late_weights``: its text weights, all positive) ``[r_s ; r_t]``; a similarity channel
    (its map and its block of the rows) left out."""
    out = {k: v for k, v in state.items() if k != SIMILARITY_KEY}
    for name, value in relation_rows(state):
        if late_weights is None:
            out[name] = value[:, : value.shape[1] // 2].contiguous()
        else:
            block = value.shape[1] // (3 if SIMILARITY_KEY in state else 2)
            w = torch.as_tensor(np.asarray(late_weights, dtype=np.float32)).to(value.dtype).unsqueeze(1)
            out[name] = torch.cat([value[:, :block], value[:, block : 2 * block] / w], dim=1)
    return out


def relation_rows(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """The relation embedding tables of a model's state dict."""
    return [
        (name, value)
        for name, value in state.items()
        if name.startswith("relation_representations") and name.endswith("_embeddings.weight")
    ]


def _index(values: Any, upper: int, what: str) -> torch.Tensor:
    """Ids as a 1-d LongTensor, checked to lie in ``range(upper)``."""
    t = (
        torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
        .long()
        .reshape(-1)
    )
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= upper):
        raise InputError(f"{what} ids must lie in 0..{upper - 1}; got {int(t.min())}..{int(t.max())}")
    return t


class TrainedModel:
    """A trained text-aware model with its graph: scoring, vectors, inductive text queries, evaluation, save."""

    def __init__(
        self,
        kg: KnowledgeGraph,
        model: TextAwareModel,
        config: dict[str, Any],
        features: TextFeatures | None = None,
        encoder: Any = None,
    ) -> None:
        self.kg = kg
        self.pykeen_model = model.eval()
        # vectors cached while training ran with its own thread count would differ in the last bits from the
        # same model's vectors computed here (e.g. after save and load)
        self.representation.clear_cache()
        self.config = config
        self.features = features
        self._encoder = encoder

    # -- identity --------------------------------------------------------------------------------------------------
    @property
    def encoder_fingerprint(self) -> str | None:
        return (self.config.get("encoder") or {}).get("fingerprint")

    @property
    def mode(self) -> str:
        return self.config["mode"]

    @property
    def rules(self) -> Any:
        """The mined rules (:class:`kgemb.rules.RuleSet`) of the model's rule channel, or None."""
        channel = self.pykeen_model.rule_channel
        return None if channel is None else channel.rules

    @property
    def representation(self) -> TextAwareRepresentation:
        return self.pykeen_model.entity_representations[0]  # type: ignore[return-value]

    def __repr__(self) -> str:
        c = self.config
        return (
            f"TrainedModel(mode={c['mode']!r}, interaction={c['interaction']!r}, dim={c['dim']}, "
            f"entities={self.kg.num_entities}, relations={self.kg.num_relations})"
        )

    # -- scoring ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def score_hrt(self, hrt: Any) -> np.ndarray:
        """Raw interaction scores of (head, relation, tail) id triples, shape ``(n,)``; higher = more plausible."""
        t = (
            torch.as_tensor(np.asarray(hrt) if not isinstance(hrt, torch.Tensor) else hrt)
            .long()
            .reshape(-1, 3)
        )
        _index(t[:, [0, 2]], self.kg.num_entities, "entity")
        _index(t[:, 1], self.kg.num_relations, "relation")
        self.pykeen_model.eval()
        return self.pykeen_model.score_hrt(t).reshape(-1).float().numpy()

    @torch.no_grad()
    def score_tails(self, heads: Any, relations: Any) -> torch.Tensor:
        """Scores of every entity as tail of each (head, relation), shape ``(batch, num_entities)`` in id order."""
        h = _index(heads, self.kg.num_entities, "head")
        r = _index(relations, self.kg.num_relations, "relation")
        self.pykeen_model.eval()
        return self.pykeen_model.score_t(torch.stack([h, r], dim=1)).float()

    @torch.no_grad()
    def score_heads(self, relations: Any, tails: Any) -> torch.Tensor:
        """Scores of every entity as head of each (relation, tail), shape ``(batch, num_entities)`` in id order."""
        r = _index(relations, self.kg.num_relations, "relation")
        t = _index(tails, self.kg.num_entities, "tail")
        self.pykeen_model.eval()
        return self.pykeen_model.score_h(torch.stack([r, t], dim=1)).float()

    # -- vectors ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def entity_vectors(self) -> np.ndarray:
        """The final entity vectors (reals; complex ones interleaved), shape ``(num_entities, dim)``."""
        self.pykeen_model.eval()
        return to_real_layout(self.representation(indices=None)).float().numpy().copy()

    @torch.no_grad()
    def relation_vectors(self) -> np.ndarray:
        """The relation vectors (all of an interaction's relation representations side by side, as reals)."""
        self.pykeen_model.eval()
        reps = [to_real_layout(rep(indices=None)) for rep in self.pykeen_model.relation_representations]
        return torch.cat([r.reshape(r.shape[0], -1) for r in reps], dim=1).float().numpy().copy()

    # -- inductive -------------------------------------------------------------------------------------------------
    @property
    def encoder(self) -> Any:
        """The text encoder, re-created from the saved spec on first use; its fingerprint must match training."""
        if self._encoder is None:
            spec = (self.config.get("encoder") or {}).get("spec")
            if not spec:
                raise KgembError(
                    "this model was trained with an encoder object whose spec was not saved; "
                    "pass it again: kgemb.load(directory, encoder=your_encoder)"
                )
            from kgemb.encoders import load_encoder

            self._encoder = load_encoder(spec, **(self.config["encoder"].get("options") or {}))
        check_encoder(self._encoder, self.encoder_fingerprint)
        return self._encoder

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Vectors for NEW entities from text alone (their text part), shape ``(len(texts), dim)``, reals."""
        if isinstance(texts, str):
            raise InputError("embed_texts takes a list of texts, not one string; wrap it: [text]")
        if self.features is None:
            raise ConfigError(
                f"a model trained in {self.mode!r} mode has no text part; train 'text' or 'fused'"
            )
        from kgemb.features import encode_texts

        raw = encode_texts(self.encoder, texts, "query texts")
        self.pykeen_model.eval()
        return self.representation.text_only(self.features.standardise(raw)).float()

    @torch.no_grad()
    def score_tails_from_vectors(self, head_vectors: Any, relations: Any) -> torch.Tensor:
        """Like :meth:`score_tails` for heads given as vectors (e.g. from :meth:`embed_texts`)."""
        h, r = self._vectors_and_relations(head_vectors, relations)
        return self.pykeen_model.score_all("tail", h, r).float()

    @torch.no_grad()
    def score_heads_from_vectors(self, relations: Any, tail_vectors: Any) -> torch.Tensor:
        """Like :meth:`score_heads` for tails given as vectors (e.g. from :meth:`embed_texts`)."""
        t, r = self._vectors_and_relations(tail_vectors, relations)
        return self.pykeen_model.score_all("head", t, r).float()

    def _vectors_and_relations(self, vectors: Any, relations: Any) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.as_tensor(vectors, dtype=torch.float32)
        if v.ndim == 1:
            v = v.unsqueeze(0)
        width = self.representation.out_dim
        if v.ndim != 2 or v.shape[1] != width:
            raise InputError(f"vectors must have shape (n, {width}); got {tuple(v.shape)}")
        r = _index(relations, self.kg.num_relations, "relation")
        if r.numel() == 1 and v.shape[0] > 1:
            r = r.expand(v.shape[0])
        if r.numel() != v.shape[0]:
            raise InputError(
                f"got {v.shape[0]} vectors but {r.numel()} relations; pass one relation or one each"
            )
        self.pykeen_model.eval()
        return to_interaction_layout(v, self.representation.complex), r

    # -- evaluation, persistence, continued training ---------------------------------------------------------------
    def evaluate(self, split: str = "test", **options: Any) -> dict[str, float]:
        """Filtered MRR and Hits@1/3/10 over both directions on a split of the graph."""
        from kgemb.evaluation import evaluate

        return evaluate(self, split=split, **options)

    def filtered_ranks(self, split: str = "test", max_triples: int | None = 2000) -> np.ndarray:
        """The filtered rank of the true entity for each query of ``split`` (both directions), as in evaluate."""
        ranks: list[np.ndarray] = []
        self.evaluate(split, max_triples=max_triples, ranks_out=ranks)
        return np.concatenate(ranks) if ranks else np.zeros(0)

    def save(self, directory: Any) -> None:
        """Write the model directory (config.json, safetensors weights and features, the graph); see kgemb.load."""
        from kgemb.artifact import save

        save(self, directory)

    def update(self, new_kg_or_triples: Any, epochs: int | None = None, **options: Any) -> TrainedModel:
        """Add new entities and triples and keep training, replaying old triples so it does not forget."""
        from kgemb.training import update

        return update(self, new_kg_or_triples, epochs=epochs, **options)


def check_encoder(encoder: Any, fingerprint: str | None) -> None:
    """Raise if ``encoder`` is not the one the model was trained with (its fingerprint differs)."""
    if fingerprint and getattr(encoder, "fingerprint", None) != fingerprint:
        raise KgembError(
            f"the encoder's fingerprint {getattr(encoder, 'fingerprint', None)!r} differs from the one the model was "
            f"trained with ({fingerprint!r}); use the same encoder model, revision, pooling and dimension"
        )
