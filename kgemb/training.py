"""Training: ``kgemb.train(kg, ...)`` builds the text-aware model and trains it with PyKEEN's training loops.

Text features are computed once (the encoder caches them) before training. Early stopping on validation MRR keeps
the best weights in memory; checkpoints (safetensors + JSON, never pickle) let an interrupted run resume with
``resume=True`` and end where an uninterrupted run would. ``update`` continues training a trained model on new
triples and entities, replaying old triples so it does not forget.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pykeen.training import LCWATrainingLoop, SLCWATrainingLoop, TrainingCallback

from kgemb import distributed
from kgemb.errors import ConfigError, InputError
from kgemb.evaluation import rank_metrics
from kgemb.features import TextFeatures, compute_text_features, encode_texts
from kgemb.files import write_atomic
from kgemb.model import (
    COMBINATIONS,
    MODES,
    POOLINGS,
    TextAwareModel,
    TrainedModel,
    build_model,
    check_dim,
    fold_text_channel,
    interaction_spec,
    relation_rows,
    relation_text_initializer,
    scores_by_dot,
    similarity_map,
    unfold_text_channel,
)

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph

log = logging.getLogger(__name__)

#: kgemb loss name -> (PyKEEN loss name, default kwargs)
LOSSES: dict[str, tuple[str, dict[str, Any]]] = {
    # kgemb's own objective (kgemb.objective): reciprocal 1-N softmax cross-entropy, self-negatives, N3
    "softmax": ("crossentropy", {}),
    "nssa": ("nssa", {"margin": 9.0, "adversarial_temperature": 1.0}),
    "margin": ("marginranking", {"margin": 1.0}),
    "softplus": ("softplus", {}),
    "bce": ("bcewithlogits", {}),
    "crossentropy": ("crossentropy", {}),  # with the LCWA loop: every entity is scored for each (h, r)
    "infonce": ("infonce", {"margin": 0.0}),
}
SAMPLERS = ("basic", "hard")
#: softmax objective: every entity is a candidate up to this many entities, else SHARED_NEGATIVES shared ones
FULL_SCORING_LIMIT = 20_000
SHARED_NEGATIVES = 4096
#: N3 weight by interaction (softmax objective): on UMLS N3 0.01 lifted ComplEx from 0.643 to 0.925 test MRR and
#: lowered RotatE from 0.868 to 0.779
DEFAULT_N3 = {"complex": 0.01, "distmult": 0.01}
#: structure dropout of the "convex" fused combination: with 0, the gate leans on the structural parts and an unseen
#: entity's text part ranks poorly against them (WN18RR inductive test MRR 0.133 against 0.190 at 0.25; 0.189 for
#: the "gate" default; benchmarks/results/linkpred_fused_convex.md)
CONVEX_DROPOUT = 0.25
#: epochs that train a late model's text -> structural part map for ranking (kgemb.objective.train_structure_map)
STRUCTURE_MAP_EPOCHS = 2
#: weight of a fused model's text-part loss beside its fused loss (TrainingConfig.text_channel)
TEXT_LOSS = 1.0
#: update() continues at this fraction of the original learning rate (Adam moves every candidate row)
UPDATE_LR_FACTOR = 0.3
CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_TENSORS = "checkpoint.safetensors"


@dataclass
class TrainingConfig:
    """Every setting of a training run (stored in the model's config.json). ``None`` means "chosen for the graph"."""

    mode: str = "fused"
    interaction: str = "complex"  # softmax objective + N3: ComplEx beat RotatE on UMLS (0.925 / 0.868)
    dim: int | None = (
        None  # reals per entity vector (complex: dim/2 numbers); None: 512 below 10k triples, else 256
    )
    epochs: int | None = None  # None: about 500k triples seen (softmax; 1.5M otherwise), 10 to 100 epochs
    batch_size: int | None = None  # None: 256 below 1,000 training triples, else 1024
    lr: float = 0.01  # Adam
    weight_decay: float = 1e-5
    loss: str = "softmax"  # kgemb.objective (reciprocal 1-N); or one of PyKEEN's, trained by its loops
    margin: float | None = None  # loss margin (nssa, margin, infonce); None: the loss's default
    temperature: float | None = None  # softmax / InfoNCE temperature, NSSA adversarial temperature
    # softmax: shared negatives per batch (None: every entity up to FULL_SCORING_LIMIT, else 4,096);
    # PyKEEN's sLCWA losses: negatives per positive (None: 32)
    negatives: int | None = None
    label_smoothing: float = 0.1  # softmax
    rules: bool = True  # mine rules and add them to the score per relation where validation says they help
    # a relation (nearly) without self-loops in training (kgemb.rules.irreflexive_relations) never answers its anchor
    irreflexive: bool = True
    # fused, softmax, complex/distmult: train the text part with a loss of its own and add its score per relation
    # where validation says it helps (kgemb.channels); text (and a late model's text part), complex/distmult: add
    # the cosine of the entities' texts per relation where validation says it helps (the similarity channel)
    text_channel: bool = True
    n3: float | None = None  # softmax: weight of the N3 regulariser; None: chosen for the graph
    sampler: str | None = (
        None  # "basic" (uniform) or "hard" (text neighbours + in-batch); None: hard for infonce
    )
    hard_negatives: float = 0.25  # fraction of negatives from text neighbours (hard sampler)
    in_batch_negatives: float = 0.25  # fraction of negatives from the batch (hard sampler)
    pooling: str = "attention"  # over an entity's views: "attention" or "mean"
    heads: int = 4
    # fused: "late" (the structural and the text part scored apart, as two models, and their scores added with a
    # weight per relation), "gate" (t + g·s), "convex" ((1-g)·t + g·s), "elementwise" (t + g·s, a gate per
    # dimension) or "sum"; None: "late" where it applies (softmax loss, complex or distmult), else "gate"
    combination: str | None = None
    # fused: chance that an entity's structural part is dropped in a training step (it is then its text part, as an
    # entity unseen in training is); None: 0.25 for "convex", whose unseen entities need it, else 0
    structure_dropout: float | None = None
    relation_text_init: bool = False
    languages: list[str] | None = None
    early_stopping: bool = True
    eval_every: int | None = None  # None: a tenth of the epochs
    patience: int = 3
    valid_max_triples: int | None = None  # early stopping on the full validation set (None) or a sample
    max_minutes: float | None = None  # stop after the epoch that passes this much training time
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0  # epochs between checkpoints (0: none)
    resume: bool = False
    device: str | None = None  # "cpu", "cuda", ...; None: cuda when available (the result lives on the CPU)
    threads: int | None = None  # None: 1 below 20,000 training triples, else torch's (see _auto_threads)
    seed: int = 0
    show_progress: bool = True

    #: settings that do not change what is trained (excluded from the resume check)
    RUNTIME = (
        "epochs",
        "max_minutes",
        "checkpoint_dir",
        "checkpoint_every",
        "resume",
        "device",
        "threads",
        "show_progress",
    )

    def __post_init__(self) -> None:
        self.mode = _choice("mode", self.mode, MODES)
        interaction_spec(self.interaction)
        self.interaction = self.interaction.lower()
        self.loss = _choice("loss", self.loss, tuple(LOSSES))
        self.pooling = _choice("pooling", self.pooling, POOLINGS)
        if self.combination is None:
            self.combination = "late" if self.trains_text_channel else "gate"
        self.combination = _choice("combination", self.combination, COMBINATIONS)
        if self.structure_dropout is None:  # depends on the combination only, not on the graph
            self.structure_dropout = CONVEX_DROPOUT if self.combination == "convex" else 0.0
        if self.combination == "late" and self.mode == "fused" and not self.trains_text_channel:
            raise ConfigError(
                "combination='late' scores the text part on its own, as a text channel: it needs text_channel=True, "
                f"loss='softmax' and a dot-product interaction (complex, distmult), not {self.interaction!r} with "
                f"loss {self.loss!r}; or choose combination='gate'"
            )
        if self.sampler is not None:
            self.sampler = _choice("sampler", self.sampler, SAMPLERS)
        if self.dim is not None:
            check_dim(self.interaction, self.dim)
        for name in ("epochs", "batch_size", "negatives", "eval_every"):  # None: chosen for the graph
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}={value!r} must be a whole number of at least 1")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing={self.label_smoothing!r} must lie in [0, 1)")
        if self.n3 is not None and not self.n3 >= 0:
            raise ConfigError(f"n3={self.n3!r} must be 0 (off) or positive")
        for name in ("patience", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a whole number of at least 1")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr!r} must be positive (e.g. 1e-3)")
        for name in ("hard_negatives", "in_batch_negatives", "structure_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must lie between 0 and 1")
        if self.margin is not None and "margin" not in LOSSES[self.loss][1]:
            raise ConfigError(
                f"loss {self.loss!r} has no margin; drop margin= or use nssa, margin or infonce"
            )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes={self.max_minutes!r} must be positive")
        if self.temperature is not None and not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature!r} must be positive")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every!r} must be 0 (off) or positive")
        if (self.checkpoint_every or self.resume) and not self.checkpoint_dir:
            raise ConfigError("checkpoints and resume need checkpoint_dir (the CLI uses OUT/checkpoint)")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> TrainingConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**options)

    @classmethod
    def from_saved(cls, training: dict[str, Any]) -> TrainingConfig:
        """The settings stored in a model's ``config.json["training"]`` (its run summary left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in training.items() if k in known})

    @property
    def trains_text_channel(self) -> bool:
        """Whether the run trains a text channel (see :attr:`text_channel`)."""
        return (
            self.text_channel
            and self.mode == "fused"
            and self.loss == "softmax"
            and scores_by_dot(self.interaction)
        )

    @property
    def weighs_similarity(self) -> bool:
        """Whether the run weighs a similarity channel: a text model's, or a late model's text part's (see
        :attr:`text_channel`)."""
        if self.mode == "fused":
            return self.trains_text_channel and self.combination == "late"
        return self.text_channel and self.mode == "text" and scores_by_dot(self.interaction)

    @property
    def reciprocal(self) -> bool:
        """Whether the model learns an inverse of every relation (the softmax objective trains both directions)."""
        return self.loss == "softmax"

    def resolved(self, num_train: int, num_entities: int = 0) -> TrainingConfig:
        """A copy with the graph-dependent defaults (epochs, batch size, sampler, negatives) filled in."""
        out = TrainingConfig(**asdict(self))
        large = num_entities > FULL_SCORING_LIMIT
        small = num_train < 10_000
        # a fused step recomputes every candidate's vector: its cost grows with entities x dim^2
        if out.dim is None:
            out.dim = 512 if small and not large else 256
            check_dim(out.interaction, out.dim)
        if out.loss == "softmax":
            if out.negatives is None and large:
                out.negatives = SHARED_NEGATIVES
            if out.n3 is None:
                out.n3 = DEFAULT_N3.get(out.interaction, 0.0)
            if out.epochs is None:
                out.epochs = int(min(100, max(10, math.ceil(500_000 / max(num_train, 1)))))
        elif out.negatives is None:
            out.negatives = 32
        if out.epochs is None:
            out.epochs = int(min(200, max(20, math.ceil(1_500_000 / max(num_train, 1)))))
        if out.eval_every is None:
            out.eval_every = max(1, out.epochs // 10)
        if out.batch_size is None:
            # a fused step computes every entity's vector once per batch: 1,024 spreads that over 4x the triples
            # (UMLS, Nations, Kinships: fused's test MRR no lower than at 256, its step 2.0x structure's, not 3.3x;
            # benchmarks/results/linkpred_small_batch1024.md); below 1,000 triples 256 keeps several steps an epoch
            out.batch_size = 256 if num_train < 1_000 else 1024
        if out.sampler is None:
            out.sampler = "hard" if out.loss == "infonce" and out.mode != "structure" else "basic"
        return out

    def describe(self, kg: KnowledgeGraph) -> str:
        """What a run will do, in two lines: the graph's counts and the settings (printed before training)."""
        splits = ", ".join(f"{len(a):,} {name}" for name, a in kg.splits.items())
        has_valid = kg.has_triples("valid")
        if self.loss == "softmax":
            candidates = "every entity" if self.negatives is None else f"{self.negatives:,} shared negatives"
            objective = (
                f"reciprocal 1-N softmax over {candidates} + self-negatives, label smoothing "
                f"{self.label_smoothing}, N3 {self.n3}"
            )
        else:
            objective = f"{self.loss} loss, {self.negatives} negatives per triple (PyKEEN loop)"
        return (
            f"graph: {kg.num_entities:,} entities, {kg.num_relations:,} relations, triples {splits}\n"
            f"training: {self.mode} {self.interaction}"
            + (
                " (late: the structural part, then the text part)"
                if self.mode == "fused" and self.combination == "late"
                else ""
            )
            + f", dim {self.dim}, {objective}; batch {self.batch_size}, "
            f"up to {self.epochs} epochs, lr {self.lr}"
            + (
                f", validation every {self.eval_every} (patience {self.patience})"
                if self.early_stopping and has_valid
                else ", no early stopping"
            )
            + (
                f"; the {'structural part' if self.mode == 'fused' else 'model'} trains every epoch: no validation "
                "triple between entities with training triples"
                if self.early_stopping
                and has_valid
                and (self.mode == "structure" or (self.mode == "fused" and self.combination == "late"))
                and not len(structural_validation(kg, kg.triples("valid")))
                else ""
            )
            + (", text channel weighed on validation" if self.trains_text_channel and has_valid else "")
            + (", text similarity weighed on validation" if self.weighs_similarity and has_valid else "")
            + (
                ", rules mined and weighed on validation"
                + (" with a text-neighbour vote" if self.mode != "structure" and votes_fit(kg) else "")
                if self.rules and has_valid
                else ", no rules (they need a validation split)"
                if self.rules
                else ""
            )
            + (f", at most {self.max_minutes} min" if self.max_minutes else "")
        )

    def loss_kwargs(self) -> dict[str, Any]:
        kwargs = dict(LOSSES[self.loss][1])
        if self.margin is not None:
            kwargs["margin"] = self.margin
        if self.loss == "infonce":
            kwargs["log_adversarial_temperature"] = math.log(self.temperature or 1.0)
        elif self.loss == "nssa" and self.temperature is not None:
            kwargs["adversarial_temperature"] = self.temperature
        return kwargs

    def trained_settings(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self.RUNTIME}


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value).lower()
    if text not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
    return text


# ---------------------------------------------------------------------------------------------------- input checks
def check_graph(kg: KnowledgeGraph) -> None:
    """Reject graphs the model cannot learn from: no training triples, relations never seen in training."""
    train = kg.triples("train")
    if len(train) == 0:
        total = sum(len(a) for a in kg.splits.values())
        hint = "; split it first: kg = kg.split()" if total else "; load a graph with triples"
        raise InputError(f"the graph has no training triples{hint}")
    trained = set(np.unique(train[:, 1]).tolist())
    missing = sorted(
        {int(r) for s, a in kg.splits.items() if s != "train" for r in np.unique(a[:, 1]).tolist()} - trained
    )
    if missing:
        names = ", ".join(repr(kg.relations[r]) for r in missing[:5])
        raise InputError(
            f"relation(s) {names} occur only in valid/test triples, so the model cannot learn them; "
            "move some of their triples to train or re-split with kg.split()"
        )


def structural_validation(kg: KnowledgeGraph, valid: np.ndarray) -> np.ndarray:
    """The triples of ``valid`` a structural model (or a late model's structural part) stops early on: those whose
    entities both have training triples in ``kg``. It knows no other entity, so the rest rank at random for it and
    only add noise to when it stops (WN18RR's inductive split names one in every validation triple: validation MRR
    0.04, a late model's structural part stopped at epoch 4 and kept epoch 1); with none left it trains its epochs."""
    seen = seen_entities(kg).numpy()
    return valid[seen[valid[:, 0]] & seen[valid[:, 2]]]


def seen_entities(kg: KnowledgeGraph, triples: np.ndarray | None = None) -> torch.Tensor:
    """Boolean mask of entities that occur in training triples (the others fall back to text in fused mode)."""
    train = kg.triples("train") if triples is None else triples
    seen = torch.zeros(kg.num_entities, dtype=torch.bool)
    seen[torch.as_tensor(train[:, 0])] = True
    seen[torch.as_tensor(train[:, 2])] = True
    return seen


# ---------------------------------------------------------------------------------------------------- encoder
#: encoder options a saved model does not record: this machine's settings, and what must be asked for again
UNRECORDED_ENCODER_OPTIONS = frozenset(
    {
        "threads",
        "cache",
        "cache_dir",
        "device",
        "batch_size",
        "batch_tokens",
        "local_files_only",
        "trust_remote_code",
    }
)


def encoder_info(encoder: Any, spec: Any) -> dict[str, Any]:
    """What config.json records about the encoder: spec and options to re-create it, fingerprint to check it, dim.

    ``trust_remote_code`` is never recorded, so loading a model directory cannot switch it on: an encoder that needs
    it is passed again, ``kgemb.load(directory, encoder=...)``.
    """
    saved_spec = spec if isinstance(spec, str) else None
    if saved_spec is None:
        saved_spec = (
            "default" if type(encoder).__name__ == "DefaultEncoder" else getattr(encoder, "name", None)
        )
    options = {
        k: v
        for k, v in (getattr(encoder, "options", None) or {}).items()
        if k not in UNRECORDED_ENCODER_OPTIONS and (v is None or isinstance(v, str | int | float | bool))
    }
    return {
        "spec": saved_spec,
        "fingerprint": encoder.fingerprint,
        "dim": int(encoder.dim),
        "options": options,
    }


def resolve_encoder(encoder: Any) -> Any:
    from kgemb.encoders import load_encoder

    if encoder is None:
        raise ConfigError("modes 'text' and 'fused' need an encoder: pass encoder='default' or a model id")
    return load_encoder(encoder)


# ---------------------------------------------------------------------------------------------------- callbacks
@contextmanager
def _no_epoch_gc() -> Iterator[None]:
    """PyKEEN runs the garbage collector after every epoch (~130 ms, most of an epoch on small graphs); skip it."""
    from pykeen.training import training_loop

    original = training_loop.gc
    training_loop.gc = SimpleNamespace(collect=lambda *args, **kwargs: 0)  # type: ignore[assignment]
    try:
        yield
    finally:
        training_loop.gc = original  # type: ignore[assignment]


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a torch device; use 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} asked for, but torch sees no CUDA GPU here; use device='cpu'")
    return device


def _auto_threads(threads: int | None, num_train: int) -> int | None:
    """One thread for small graphs: their tensor ops are too small to gain from threads, and on a busy machine
    two spinning threads made a tiny run 20 times slower than one."""
    if threads is not None:
        return threads
    return 1 if num_train < 20_000 else None


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads={threads!r} must be a whole number of at least 1")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class EarlyStopping(TrainingCallback):
    """Every ``every`` epochs: validation MRR; keep the best weights in memory; stop after ``patience`` misses."""

    def __init__(self, triples: np.ndarray, filters: list[np.ndarray], every: int, patience: int) -> None:
        super().__init__()
        self.triples, self.filters, self.every, self.patience = triples, filters, every, patience
        self.best_mrr = -1.0
        self.best_epoch = 0
        self.best_metrics: dict[str, float] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[tuple[int, float]] = []
        self.misses = 0

    def post_epoch(self, epoch: int, epoch_loss: float, **kwargs: Any) -> None:
        if epoch % self.every == 0:
            self.check(epoch)

    def check(self, epoch: int) -> None:
        """Evaluate now; keep the weights if they are the best so far, else count a miss. With several ranks,
        rank 0 evaluates and tells the others whether to stop."""
        if not distributed.is_main():
            self.history.append((epoch, float("nan")))
            if distributed.broadcast_flag(False):
                self.training_loop._should_stop = True
            return
        self._check(epoch)
        distributed.broadcast_flag(self.training_loop._should_stop)

    def _check(self, epoch: int) -> None:
        metrics = rank_metrics(self.model, self.triples, self.filters)
        self.history.append((epoch, metrics["mrr"]))
        log.info("epoch %d: validation MRR %.4f", epoch, metrics["mrr"])
        if metrics["mrr"] > self.best_mrr:
            self.best_mrr, self.best_epoch, self.best_metrics, self.misses = metrics["mrr"], epoch, metrics, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.misses += 1
            if self.misses >= self.patience:
                log.info("early stop at epoch %d (best %d)", epoch, self.best_epoch)
                self.training_loop._should_stop = True

    def state(self) -> dict[str, Any]:
        return {
            "best_mrr": self.best_mrr,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "history": self.history,
            "misses": self.misses,
        }

    def restore(self, state: dict[str, Any], best: dict[str, torch.Tensor] | None) -> None:
        self.best_mrr, self.best_epoch = state["best_mrr"], state["best_epoch"]
        self.best_metrics, self.misses = state["best_metrics"], state["misses"]
        self.history = [tuple(h) for h in state["history"]]  # type: ignore[misc]
        self.best_state = best


class TimeLimit(TrainingCallback):
    """Stop training after the first epoch that ends past ``minutes`` of training."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.deadline = time.perf_counter() + 60 * minutes
        self.hit = False

    def post_epoch(self, epoch: int, epoch_loss: float, **kwargs: Any) -> None:
        # every rank stops after the same epoch: rank 0's clock decides
        if distributed.broadcast_flag(time.perf_counter() > self.deadline):
            self.hit = True
            self.training_loop._should_stop = True


class Checkpoint(TrainingCallback):
    """Every ``every`` epochs write weights, optimizer state, RNG state and early-stopping state (no pickle)."""

    def __init__(self, directory: Path, every: int, run_key: str, stopper: EarlyStopping | None) -> None:
        super().__init__()
        self.directory, self.every, self.run_key, self.stopper = directory, every, run_key, stopper

    def post_epoch(self, epoch: int, epoch_loss: float, **kwargs: Any) -> None:
        if (epoch % self.every == 0 or self.training_loop._should_stop) and distributed.is_main():
            write_checkpoint(self.directory, self.training_loop, epoch, self.run_key, self.stopper)


# ---------------------------------------------------------------------------------------------------- checkpoints
def write_checkpoint(
    directory: Path, loop: Any, epoch: int, run_key: str, stopper: EarlyStopping | None
) -> None:
    """Write ``checkpoint.safetensors`` then ``checkpoint.json`` (which holds its hash), each atomically."""
    from safetensors.torch import save

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in loop.model.state_dict().items()}
    optim = loop.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in optim["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    if stopper is not None and stopper.best_state is not None:
        tensors.update({f"best.{k}": v.cpu().contiguous() for k, v in stopper.best_state.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    payload = save(tensors)
    write_atomic(directory / CHECKPOINT_TENSORS, payload)
    doc = {
        "format": "kgemb-checkpoint",
        "epoch": epoch,
        "run": run_key,
        "losses": list(loop.losses_per_epochs),
        "param_groups": optim["param_groups"],
        "optimizer_scalars": scalars,
        "stopper": stopper.state() if stopper is not None else None,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    write_atomic(directory / CHECKPOINT_JSON, json.dumps(doc).encode())


def read_checkpoint(directory: Path, run_key: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The checkpoint in ``directory`` (None if there is none); InputError if it is damaged or from another run."""
    from safetensors.torch import load

    doc_path, tensor_path = directory / CHECKPOINT_JSON, directory / CHECKPOINT_TENSORS
    if not doc_path.exists():
        return None
    try:
        doc = json.loads(doc_path.read_text())
        payload = tensor_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise InputError(
            f"the checkpoint in {directory} cannot be read ({exc}); delete it to start over"
        ) from None
    if doc.get("format") != "kgemb-checkpoint" or hashlib.sha256(payload).hexdigest() != doc.get("sha256"):
        raise InputError(f"the checkpoint in {directory} is damaged or incomplete; delete it to start over")
    if doc.get("run") != run_key:
        raise InputError(
            f"the checkpoint in {directory} was made by a run with other settings or another graph; "
            "pass the same options as that run, or delete the checkpoint to start over"
        )
    return doc, load(payload)


def restore_checkpoint(
    loop: Any, doc: dict[str, Any], tensors: dict[str, torch.Tensor], stopper: EarlyStopping | None
) -> None:
    """Put a training loop back where a checkpoint left it (weights, optimizer, RNG, epoch, stopper)."""
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    loop.model.load_state_dict(model_state)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in doc["optimizer_scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    loop.optimizer.load_state_dict({"state": state, "param_groups": doc["param_groups"]})
    loop._epoch = int(doc["epoch"])
    loop.losses_per_epochs = list(doc["losses"])
    torch.set_rng_state(tensors["rng.torch"])
    if stopper is not None and doc.get("stopper"):
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
        stopper.restore(doc["stopper"], best)


def _prime_optimizer(loop: Any) -> None:
    """Give the optimizer state without moving any weight, so PyKEEN continues instead of re-initialising."""
    decay = [group.get("weight_decay", 0.0) for group in loop.optimizer.param_groups]
    for group in loop.optimizer.param_groups:
        group["weight_decay"] = 0.0
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    loop.optimizer.step()
    loop.optimizer.zero_grad(set_to_none=True)
    for group, value in zip(loop.optimizer.param_groups, decay, strict=True):
        group["weight_decay"] = value


# ---------------------------------------------------------------------------------------------------- training
def _run_key(kg: KnowledgeGraph, settings: dict[str, Any], fingerprint: str | None) -> str:
    doc = {
        "settings": settings,
        "entities": kg.num_entities,
        "relations": kg.num_relations,
        "train": len(kg.triples("train")),
        "encoder": fingerprint,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _make_loop(model: Any, factory: Any, cfg: TrainingConfig, features: TextFeatures | None) -> Any:
    optimizer_kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    common = dict(
        model=model,
        triples_factory=factory,
        optimizer="adam",
        optimizer_kwargs=optimizer_kwargs,
        automatic_memory_optimization=False,
    )
    if cfg.loss == "softmax":
        from kgemb.objective import Objective, OneToNLoop

        objective = Objective(
            negatives=cfg.negatives,
            label_smoothing=cfg.label_smoothing,
            n3=cfg.n3 or 0.0,
            temperature=cfg.temperature or 1.0,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            text_loss=TEXT_LOSS if cfg.trains_text_channel else 0.0,
        )
        return OneToNLoop(model, factory.mapped_triples.numpy(), objective)
    if cfg.loss == "crossentropy":
        return LCWATrainingLoop(**common)
    sampler_kwargs: dict[str, Any] = {"num_negs_per_pos": cfg.negatives}
    if cfg.sampler == "hard":
        from kgemb.sampling import TextHardNegativeSampler, text_neighbours

        device = next(model.parameters()).device
        neighbours = text_neighbours(features.mean_pooled(), device=device) if features is not None else None
        sampler = TextHardNegativeSampler(
            mapped_triples=factory.mapped_triples,
            num_entities=factory.num_entities,
            num_relations=factory.num_relations,
            neighbours=neighbours,
            hard=cfg.hard_negatives,
            in_batch=cfg.in_batch_negatives,
            **sampler_kwargs,
        )
        return SLCWATrainingLoop(negative_sampler=sampler, **common)
    return SLCWATrainingLoop(negative_sampler="basic", negative_sampler_kwargs=sampler_kwargs, **common)


def _relation_init(kg: KnowledgeGraph, encoder: Any, cfg: TrainingConfig) -> list[Any] | None:
    if not cfg.relation_text_init:
        return None
    texts = [kg.relation_text(r, cfg.languages) for r in range(kg.num_relations)]
    raw = encode_texts(encoder, texts, "relation texts")
    return relation_text_initializer(raw, interaction_spec(cfg.interaction), cfg.dim, cfg.seed)


def model_for(
    kg: KnowledgeGraph,
    cfg: TrainingConfig,
    features: TextFeatures | None,
    *,
    seen: torch.Tensor | None = None,
    relation_init: list[Any] | None = None,
    text_channel: bool = False,
    similarity: bool = False,
) -> TextAwareModel:
    """The untrained model ``cfg`` describes for ``kg`` (``seen``: entities with training triples, by default
    those of ``kg``'s train split; ``text_channel``: in the folded layout of :func:`attach_text_channel`,
    ``similarity``: a late model's with its text part's similarity channel)."""
    model = build_model(
        kg.to_triples_factory("train"),
        mode=cfg.mode,
        interaction=cfg.interaction,
        dim=cfg.dim,
        features=features,
        pooling=cfg.pooling,
        heads=cfg.heads,
        combination=cfg.combination,
        seen=seen_entities(kg) if seen is None else seen,
        structure_dropout=cfg.structure_dropout,
        relation_init=relation_init,
        loss=LOSSES[cfg.loss][0],
        loss_kwargs=cfg.loss_kwargs(),
        reciprocal=cfg.reciprocal,
        text_channel=text_channel,
        similarity=similarity,
        seed=cfg.seed,
    )
    if cfg.irreflexive:
        from kgemb.rules import irreflexive_relations

        model.irreflexive = torch.from_numpy(irreflexive_relations(kg.triples("train"), kg.num_relations))
    return model


def _versions() -> dict[str, str]:
    import pykeen

    from kgemb._version import __version__

    return {"kgemb": __version__, "pykeen": pykeen.get_version(), "torch": torch.__version__}


def train(kg: KnowledgeGraph, *, encoder: Any = "default", **options: Any) -> TrainedModel:
    """Train a text-aware link-prediction model on ``kg``'s train split; see :class:`TrainingConfig` for options.

    ``mode`` is "fused" (default), "text" or "structure"; ``interaction`` a PyKEEN interaction name ("rotate",
    "transe", "distmult", "complex", "pairre"); ``encoder`` "default" (USE multilingual v3), a Hugging Face id, a
    model folder, or a TextEncoder. The same ``seed`` gives the same model.
    """
    cfg = TrainingConfig.from_options(options)
    from kgemb.graph import as_graph

    kg = as_graph(kg)  # a PyKEEN TriplesFactory works too
    check_graph(kg)
    train_triples = kg.triples("train")
    cfg = cfg.resolved(len(train_triples), kg.num_entities)
    here = distributed.init(cfg.device)  # under torchrun: join the ranks (kgemb.distributed)
    if here is not None:
        cfg.device = str(here)
        cfg.show_progress = cfg.show_progress and distributed.is_main()
    if cfg.show_progress:
        print(cfg.describe(kg), file=sys.stderr, flush=True)
    started = time.perf_counter()
    with _threads(_auto_threads(cfg.threads, len(train_triples))):
        needs_encoder = cfg.mode != "structure" or cfg.relation_text_init
        enc = resolve_encoder(encoder) if needs_encoder else None
        features = None
        if cfg.mode != "structure":
            features = None
            if distributed.is_main():  # computed once, sent to the other ranks
                features = compute_text_features(
                    kg, enc, languages=cfg.languages, show_progress=cfg.show_progress
                )
            features = _shared_features(features)
        relation_init = _relation_init(kg, enc, cfg)
        model = model_for(kg, cfg, features, relation_init=relation_init)
        info = encoder_info(enc, encoder) if enc is not None else None
        if model.entity_representations[0].late:
            summary = _fit_late(kg, model, cfg, features, info, relation_init)
        else:
            summary = _fit(kg, model, cfg, features, info)
        text_channel = rules = None
        if distributed.is_main():  # the other ranks' copies are dropped: rank 0 writes the model
            model, text_channel, rules = attach_channels(kg, model, cfg, features)
    valid_metrics = summary.pop("valid_metrics", None)
    config = {
        "format": "kgemb-model",
        "format_version": 1,
        "mode": cfg.mode,
        "interaction": cfg.interaction,
        "dim": cfg.dim,
        "reciprocal": cfg.reciprocal,
        "text_dim": features.dim if features is not None else None,
        "encoder": info,
        "training": {**cfg.trained_settings(), "epochs": cfg.epochs, **summary},
        "metrics": {"valid": valid_metrics} if valid_metrics else {},
        "text_channel": text_channel,
        "rules": rules,
        "irreflexive": _irreflexive_keys(kg, model),
        "versions": _versions(),
        "graph": {"entities": kg.num_entities, "relations": kg.num_relations, "train": len(train_triples)},
        "no_text_entities": kg.no_text_count,
        "training_seconds": round(time.perf_counter() - started, 1),
    }
    return TrainedModel(kg, model, config, features, enc)


def _irreflexive_keys(kg: KnowledgeGraph, model: TextAwareModel) -> list[str] | None:
    """The relations whose queries never answer their anchor (config.json), or None when the option is off."""
    if model.irreflexive is None:
        return None
    return [kg.relations[r] for r in np.flatnonzero(model.irreflexive.numpy())]


def _shared_features(features: TextFeatures | None) -> TextFeatures:
    """Rank 0's text features on every rank (one process: ``features`` itself)."""
    if not distributed.active():
        assert features is not None
        return features
    if features is not None and features.adapter is not None:
        raise ConfigError("a cross-lingual adapter cannot be used with several training processes yet")
    dtypes = [torch.float32, torch.int64, torch.float32, torch.float64]
    sent = None
    if features is not None:
        parts = [features.vectors, features.offsets, features.center, torch.tensor([features.scale])]
        sent = [t.to(dtype).contiguous() for t, dtype in zip(parts, dtypes, strict=True)]
    vectors, offsets, center, scale = distributed.broadcast_tensors(sent, dtypes)
    return TextFeatures(vectors, offsets, center, float(scale.item()))


def _fit(
    kg: KnowledgeGraph,
    model: Any,
    cfg: TrainingConfig,
    features: TextFeatures | None,
    encoder: dict[str, Any] | None,
    factory: Any = None,
    continue_from_weights: bool = False,
) -> dict[str, Any]:
    """Run PyKEEN's training loop with early stopping and checkpoints; leave the best weights in ``model``."""
    factory = factory if factory is not None else kg.to_triples_factory("train")
    model.to(_device(cfg.device))
    loop = _make_loop(model, factory, cfg, features)
    callbacks: list[TrainingCallback] = []
    stopper = None
    valid = kg.triples("valid") if "valid" in kg.splits else np.empty((0, 3), dtype=np.int64)
    if cfg.mode == "structure":
        valid = structural_validation(kg, valid)
    if cfg.early_stopping and len(valid):
        if cfg.valid_max_triples and len(valid) > cfg.valid_max_triples:
            pick = np.random.default_rng(cfg.seed).choice(len(valid), cfg.valid_max_triples, replace=False)
            valid = valid[np.sort(pick)]
        stopper = EarlyStopping(
            valid, [kg.triples(s) for s in kg.splits], every=cfg.eval_every, patience=cfg.patience
        )
        callbacks.append(stopper)
    limit = TimeLimit(cfg.max_minutes) if cfg.max_minutes else None
    if limit is not None:
        callbacks.append(limit)
    run_key = _run_key(kg, cfg.trained_settings(), encoder["fingerprint"] if encoder else None)
    continue_training = continue_from_weights
    if cfg.checkpoint_dir:
        directory = Path(cfg.checkpoint_dir)
        if cfg.checkpoint_every:
            callbacks.append(Checkpoint(directory, cfg.checkpoint_every, run_key, stopper))
        if cfg.resume:
            found = read_checkpoint(directory, run_key)
            if found is not None:
                restore_checkpoint(loop, *found, stopper)
                continue_training = True
                log.info("resuming from epoch %d", loop._epoch)
    if continue_training and not loop.optimizer.state:
        _prime_optimizer(loop)
    if not continue_training:
        torch.manual_seed(cfg.seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    with _no_epoch_gc():
        loop.train(
            triples_factory=factory,
            num_epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            use_tqdm=cfg.show_progress,
            use_tqdm_batch=False,
            tqdm_kwargs={"desc": f"training {cfg.mode} {cfg.interaction}"},
            callbacks=callbacks or None,
            continue_training=continue_training,
            pin_memory=False,
        )
    epochs_run = loop._epoch
    summary: dict[str, Any] = {
        "epochs_run": epochs_run,
        "final_loss": loop.losses_per_epochs[-1] if loop.losses_per_epochs else None,
        "loss_history": [round(float(x), 6) for x in loop.losses_per_epochs],  # for the report's plot
        "fit_seconds": round(time.perf_counter() - started, 1),
        # this process's CPU seconds of the same span (all its threads): the fair figure on a shared machine
        "fit_cpu_seconds": round(time.process_time() - cpu_started, 1),
        "stopped_by_time_limit": bool(limit is not None and limit.hit),
        "valid_triples": len(stopper.triples) if stopper is not None else 0,  # that early stopping watched
    }
    if stopper is not None:
        if not stopper.history or stopper.history[-1][0] != epochs_run:
            stopper.check(epochs_run)  # the last epoch competes too when it was off the schedule
        if stopper.best_state is not None:
            model.load_state_dict(stopper.best_state)
            summary.update(best_epoch=stopper.best_epoch, valid_history=stopper.history)
            summary["valid_metrics"] = stopper.best_metrics
    model.cpu().eval()
    return summary


def _fit_late(
    kg: KnowledgeGraph,
    model: TextAwareModel,
    cfg: TrainingConfig,
    features: TextFeatures | None,
    encoder: dict[str, Any] | None,
    relation_init: list[Any] | None,
) -> dict[str, Any]:
    """Train a late model's two parts as the structure and the text model they are, one after the other, each with
    its own early stopping (their best epochs differ), and put their weights side by side in ``model``: the same
    weights as ``train(mode="structure")`` and ``train(mode="text")`` with these settings. Returns the summary,
    with each part's under ``parts``."""
    trained = {}
    parts: dict[str, Any] = {}
    for mode in ("structure", "text"):
        part_cfg = replace(
            cfg,
            mode=mode,
            max_minutes=cfg.max_minutes / 2 if cfg.max_minutes else None,  # half the time limit each
            checkpoint_dir=str(Path(cfg.checkpoint_dir) / mode) if cfg.checkpoint_dir else None,
        )
        part = model_for(kg, part_cfg, features if mode == "text" else None, relation_init=relation_init)
        parts[mode] = _fit(kg, part, part_cfg, features, encoder)
        trained[mode] = part.state_dict()
    state = model.state_dict()
    relations = dict(relation_rows(state))
    for name in state:
        if name in relations:  # [r_s ; r_t]
            state[name] = torch.cat([trained["structure"][name], trained["text"][name]], dim=1)
        elif not name.endswith(".seen"):  # ".seen" and the structure map are the late model's own
            for mode in ("structure", "text"):
                if name in trained[mode]:
                    state[name] = trained[mode][name]
    model.load_state_dict(state)
    model.eval()
    structure_map = fit_unseen_map(model, kg.triples("train"), cfg)
    valid = kg.triples("valid") if "valid" in kg.splits else np.empty((0, 3), dtype=np.int64)
    summary: dict[str, Any] = {
        "epochs_run": max(p["epochs_run"] for p in parts.values()),
        "fit_seconds": round(sum(p["fit_seconds"] for p in parts.values()), 1),
        "fit_cpu_seconds": round(sum(p["fit_cpu_seconds"] for p in parts.values()), 1),
        "stopped_by_time_limit": any(p["stopped_by_time_limit"] for p in parts.values()),
        "parts": {mode: {k: v for k, v in p.items() if k != "valid_metrics"} for mode, p in parts.items()},
        **structure_map,
    }
    if len(valid) and distributed.is_main():
        summary["valid_metrics"] = rank_metrics(model, valid, [kg.triples(s) for s in kg.splits])
    return summary


def fit_unseen_map(model: TextAwareModel, triples: np.ndarray, cfg: TrainingConfig) -> dict[str, Any]:
    """A late model's estimate of an unseen entity's structural part from its text part: a ridge regression over the
    seen entities, then trained for ranking on ``triples`` (:func:`kgemb.objective.train_structure_map`); what the
    run summary records (the ridge's held-out R², the ranking loss per epoch)."""
    from kgemb.objective import train_structure_map

    r2 = model.entity_representations[0].fit_structure_map(seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    losses = train_structure_map(
        model, triples, epochs=STRUCTURE_MAP_EPOCHS, batch_size=cfg.batch_size, negatives=cfg.negatives
    )
    return {"structure_map_r2": round(r2, 4), "structure_map_losses": [round(x, 4) for x in losses]}


def attach_channels(
    kg: KnowledgeGraph,
    model: TextAwareModel,
    cfg: TrainingConfig,
    features: TextFeatures | None,
    with_rules: bool = True,
) -> tuple[TextAwareModel, dict[str, Any] | None, dict[str, Any] | None]:
    """The trained ``model`` with its text channel and rule channel (unless ``with_rules`` is off), each weighted
    per relation on the validation triples (:mod:`kgemb.channels`), and what config.json records of each. A late
    model's are chosen together, as for the sum of its structure model and its text model with the rule channel
    each would have alone (:func:`kgemb.channels.fit_late_weights`)."""
    with_rules = with_rules and cfg.rules
    if not model.entity_representations[0].late:
        model, text_channel = attach_text_channel(kg, model, cfg, features)
        return model, text_channel, attach_rules(kg, model, cfg) if with_rules else None
    model.rule_channel = None
    if not kg.has_triples("valid"):
        return model, None, None  # the parts' scores added: the training layout as it is
    from kgemb.channels import fit_late_weights

    started = time.perf_counter()
    mined = mine_rules(kg) if with_rules else None
    mapping = _similarity_map(model, cfg)
    votes = text_votes(kg, model) if mined is not None else None
    fitted = fit_late_weights(model, kg, mined, similarity=mapping, votes=votes, seed=cfg.seed)
    u = fitted.similarity
    taken = mapping if u is not None and u.any() else None  # the layout's third block only where it counts
    model, text_channel = _fold_text_channel(kg, model, cfg, features, fitted.text, fitted.summary, taken, u)
    if mined is None:
        return model, text_channel, None
    return (
        model,
        text_channel,
        _set_rules(
            kg,
            model,
            mined,
            fitted.rules,
            fitted.rule_summary,
            started,
            cfg.seed,
            None if votes is None else (votes, fitted.votes, fitted.vote_summary),
        ),
    )


def mine_rules(kg: KnowledgeGraph) -> Any:
    """The rules (:class:`kgemb.rules.RuleSet`) mined from ``kg``'s training triples."""
    from kgemb.rules import RuleSet

    return RuleSet.mine(kg.triples("train"), kg.num_entities, kg.num_relations, relation_names=kg.relations)


def attach_text_channel(
    kg: KnowledgeGraph, model: TextAwareModel, cfg: TrainingConfig, features: TextFeatures | None
) -> tuple[TextAwareModel, dict[str, Any] | None]:
    """The trained gated fused ``model`` with its text channel (a text model: its similarity channel) folded in
    (:mod:`kgemb.channels`), weights per relation chosen on the validation triples, and what config.json records;
    ``model`` itself and None when the run has no such channel or the graph no validation triples."""
    if not (cfg.trains_text_channel or cfg.weighs_similarity) or not kg.has_triples("valid"):
        return model, None
    from kgemb.channels import fit_similarity_weights, fit_text_weights

    mapping = _similarity_map(model, cfg)
    if mapping is not None:
        weights, summary = fit_similarity_weights(model, kg, mapping, seed=cfg.seed)
        return _fold_text_channel(kg, model, cfg, features, weights, summary, mapping)
    weights, summary = fit_text_weights(model, kg, seed=cfg.seed)
    return _fold_text_channel(kg, model, cfg, features, weights, summary)


def _similarity_map(model: TextAwareModel, cfg: TrainingConfig) -> torch.Tensor | None:
    """The similarity map (:func:`kgemb.model.similarity_map`) of the run's similarity channel, or None."""
    if not cfg.weighs_similarity:
        return None
    return similarity_map(model.entity_representations[0].text_mean, cfg.dim, seed=cfg.seed)


def _fold_text_channel(
    kg: KnowledgeGraph,
    model: TextAwareModel,
    cfg: TrainingConfig,
    features: TextFeatures | None,
    weights: np.ndarray,
    summary: dict[str, float],
    similarity: torch.Tensor | None = None,
    similarity_weights: np.ndarray | None = None,
) -> tuple[TextAwareModel, dict[str, Any]]:
    """``model`` with the text channel weights (a text model's similarity weights, its ``similarity`` map; a late
    model's text weights, and with ``similarity`` its text part's ``similarity_weights``) folded into its relation
    rows (a new model; ``model`` itself when no relation gains from the channel), and what config.json records."""
    rep = model.entity_representations[0]
    log.info("%s channel: validation MRR %s", "similarity" if rep.mode == "text" else "text", summary)
    info = {"used": bool(weights.any()), "weights": [float(x) for x in weights]}
    if similarity_weights is not None:
        info["similarity_weights"] = [float(x) for x in similarity_weights]
    info |= {k: round(v, 4) for k, v in summary.items()}  # as the rule channel's summary
    if not info["used"]:
        return model, info
    folded = model_for(kg, cfg, features, seen=rep.seen, text_channel=True, similarity=similarity is not None)
    complex_ = interaction_spec(cfg.interaction).complex
    state = fold_text_channel(model.state_dict(), weights, rep.late, similarity, complex_, similarity_weights)
    folded.load_state_dict(state)
    folded.rule_channel = model.rule_channel
    return folded.eval(), info


def attach_rules(kg: KnowledgeGraph, model: TextAwareModel, cfg: TrainingConfig) -> dict[str, Any] | None:
    """Give ``model`` its rule channel: rules mined from ``kg``'s training triples with the weights per relation
    chosen on the validation triples (see :mod:`kgemb.channels`); what config.json records, or None when
    ``cfg.rules`` is off or the graph has no validation triples."""
    model.rule_channel = None
    if not cfg.rules or not kg.has_triples("valid"):
        return None
    from kgemb.channels import fit_weights

    started = time.perf_counter()
    rules = mine_rules(kg)
    weights, summary = fit_weights(model, rules, kg, seed=cfg.seed)
    return _set_rules(kg, model, rules, weights, summary, started, cfg.seed)


def _set_rules(
    kg: KnowledgeGraph,
    model: TextAwareModel,
    rules: Any,
    weights: np.ndarray,
    summary: dict[str, Any],
    started: float,
    seed: int,
    votes: tuple[Any, np.ndarray, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Give ``model`` the rule channel of ``rules`` with ``weights``, and its text-neighbour vote where validation
    chooses it (:func:`attach_votes`; ``votes``: one already weighed); none when no weight is positive. What
    config.json records of it (``summary``, rounded, the vote's and the seconds since ``started``)."""
    from kgemb.channels import RuleChannel

    model.rule_channel = RuleChannel(rules, weights) if (weights > 0).any() else None
    log.info("rules: %d mined, validation MRR %s", len(rules), summary)
    votes = attach_votes(kg, model, rules, weights, seed, votes)
    return {
        "used": model.rule_channel is not None,
        "count": len(rules),
        "weights": [float(w) for w in weights],
        **{k: round(v, 4) for k, v in summary.items()},
        **({"votes": votes} if votes is not None else {}),
        "seconds": round(time.perf_counter() - started, 1),
    }


def text_votes(kg: KnowledgeGraph, model: TextAwareModel) -> Any:
    """The text-neighbour vote's neighbours (:class:`kgemb.channels.TextVotes`) of ``model``'s entities, or None
    for a model without entity texts, a graph without validation triples or one with too many pairs of entities to
    compare (:data:`kgemb.channels.VOTE_MAX_PAIRS`)."""
    from kgemb.channels import TextVotes

    rep = model.entity_representations[0]
    if rep.mode == "structure" or not kg.has_triples("valid"):
        return None
    seen = seen_entities(kg)
    if not votes_fit(kg, seen):
        log.info(
            "text-neighbour vote skipped: %d entities × %d with training triples", len(seen), int(seen.sum())
        )
        return None
    return TextVotes.build(rep.text_mean, seen)


def votes_fit(kg: KnowledgeGraph, seen: torch.Tensor | None = None) -> bool:
    """Whether ``kg`` has few enough pairs of entities (each against those with training triples, ``seen``) for
    the text-neighbour vote (:data:`kgemb.channels.VOTE_MAX_PAIRS`)."""
    from kgemb.channels import VOTE_MAX_PAIRS

    seen = seen_entities(kg) if seen is None else seen
    return len(seen) * int(seen.sum()) <= VOTE_MAX_PAIRS


def attach_votes(
    kg: KnowledgeGraph,
    model: TextAwareModel,
    rules: Any,
    weights: np.ndarray,
    seed: int = 0,
    fitted: tuple[Any, np.ndarray, dict[str, float]] | None = None,
) -> dict[str, Any] | None:
    """Add the text-neighbour vote (:func:`text_votes`) to ``model``'s rule channel (``rules`` with rule
    ``weights``; one with only the vote where no rule weight is positive) where validation chooses it
    (:func:`kgemb.channels.fit_vote_weights`; ``fitted``: the votes, their weights and summary, chosen already);
    what config.json records of it, or None without one (:func:`text_votes`)."""
    from kgemb.channels import VOTE_TEMPERATURE, RuleChannel, fit_vote_weights

    started = time.perf_counter()
    if fitted is None:
        votes = text_votes(kg, model)
        if votes is None:
            return None
        vote_weights, summary = fit_vote_weights(model, rules, votes, kg, seed=seed)
    else:
        votes, vote_weights, summary = fitted
    used = bool((vote_weights > 0).any())
    if used:
        model.rule_channel = RuleChannel(rules, weights, votes, vote_weights)
    log.info("text-neighbour vote: validation MRR %s", summary)
    return {
        "used": used,
        "unseen_entities": int((~seen_entities(kg)).sum()),
        "neighbours": int(votes.near.shape[1]),
        "temperature": VOTE_TEMPERATURE,
        "weights": [float(w) for w in vote_weights],
        # a late model's: chosen on its text part (validation MRRs of the text part without and with the vote)
        **({"chosen_on": "text part"} if fitted is not None else {}),
        **{k: round(v, 4) for k, v in summary.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


# ---------------------------------------------------------------------------------------------------- update
def update(
    trained: TrainedModel,
    new: Any,
    *,
    epochs: int | None = None,
    replay: float = 4.0,
    lr: float | None = None,
    show_progress: bool | None = None,
    seed: int | None = None,
) -> TrainedModel:
    """Add new entities and triples to a trained model and keep training on new + replayed old triples.

    ``new`` is a KnowledgeGraph that holds the old graph's entities and relations (same keys) plus new ones, or an
    iterable of ``(head_key, relation_key, tail_key)`` training triples. Old entities keep their weights; a new
    entity starts from its text (fused and text modes; a late model's structural part where the model scored it
    while unseen, the map from its text part) or a fresh embedding. Each run trains on all new triples and
    ``replay`` times as many old training triples (a fixed random sample; all of them when there are fewer), so the
    model does not forget. ``epochs`` defaults to a twentieth of the original run's (at least 5). On UMLS, 10 epochs
    with 1x replay lost 3 points of the old test MRR, with 4x (all old triples) it gained 6.
    """
    from kgemb.graph import KnowledgeGraph

    old_kg = trained.kg
    new_kg = new if isinstance(new, KnowledgeGraph) else extend_graph(old_kg, new)
    entity_map = _key_map([e.key for e in old_kg.entities], [e.key for e in new_kg.entities], "entity")
    relation_map = _key_map(old_kg.relations, new_kg.relations, "relation")
    check_graph(new_kg)
    old_cfg = TrainingConfig.from_saved(trained.config["training"])
    settings = asdict(old_cfg)
    old_train_new_ids = _remap(old_kg.triples("train"), entity_map, relation_map)
    new_train = new_kg.triples("train")
    fresh = _difference(new_train, old_train_new_ids)
    if len(fresh) == 0:
        raise InputError("the update holds no new training triples; add triples the model has not seen")
    epochs = epochs if epochs is not None else max(5, (trained.config["training"].get("epochs") or 100) // 20)
    settings.update(
        epochs=epochs,
        early_stopping=False,
        checkpoint_every=0,
        checkpoint_dir=None,
        resume=False,
        seed=old_cfg.seed if seed is None else seed,
        lr=lr if lr is not None else old_cfg.lr * UPDATE_LR_FACTOR,
        show_progress=old_cfg.show_progress if show_progress is None else show_progress,
    )
    cfg = TrainingConfig(**settings)
    rng = np.random.default_rng(cfg.seed)
    n_replay = min(len(old_train_new_ids), round(replay * len(fresh)))
    replayed = old_train_new_ids[rng.choice(len(old_train_new_ids), n_replay, replace=False)]
    schedule = np.concatenate([fresh, replayed], axis=0)

    features = None
    if trained.features is not None:
        features = _extended_features(trained, new_kg, entity_map, cfg)
    model = model_for(new_kg, cfg, features)
    old_state = trained.pykeen_model.state_dict()
    old_channel = trained.config.get("text_channel") or {}
    if old_channel.get("used"):  # trained in the training layout; folded again below
        late = trained.representation.late
        old_state = unfold_text_channel(old_state, old_channel["weights"] if late else None)
    _transfer_weights(old_state, model, entity_map, relation_map)
    factory = new_kg.to_triples_factory("train").clone_and_exchange_triples(torch.as_tensor(schedule))
    with _threads(_auto_threads(cfg.threads, len(schedule))):
        summary = _fit(
            new_kg, model, cfg, features, trained.config.get("encoder"), factory, continue_from_weights=True
        )
    if model.entity_representations[0].late:  # the structural parts moved: refit their estimate from text
        summary.update(fit_unseen_map(model, schedule, cfg))
    with_rules = trained.pykeen_model.rule_channel is not None
    model, text_channel, rules = attach_channels(new_kg, model, cfg, features, with_rules)
    config = json.loads(json.dumps(trained.config))
    config["text_channel"] = text_channel
    config["rules"] = rules
    config["irreflexive"] = _irreflexive_keys(new_kg, model)
    config["graph"] = {
        "entities": new_kg.num_entities,
        "relations": new_kg.num_relations,
        "train": len(new_train),
    }
    config.setdefault("updates", []).append(
        {
            "new_entities": new_kg.num_entities - old_kg.num_entities,
            "new_triples": len(fresh),
            "replayed_triples": n_replay,
            "epochs": epochs,
            "lr": cfg.lr,
            **{k: v for k, v in summary.items() if k in ("epochs_run", "final_loss", "fit_seconds")},
        }
    )
    return TrainedModel(new_kg, model, config, features, trained._encoder)


def extend_graph(kg: KnowledgeGraph, triples: Any) -> KnowledgeGraph:
    """A copy of ``kg`` with extra training triples given by keys (new entities and relations are added)."""
    from kgemb.graph import GraphBuilder

    builder = GraphBuilder()
    for e in kg.entities:
        builder.add_entity(e.key)
        target = builder.entity(e.key)
        target.labels.update({k: list(v) for k, v in e.labels.items()})
        target.aliases.update({k: list(v) for k, v in e.aliases.items()})
        target.descriptions.update({k: list(v) for k, v in e.descriptions.items()})
        target.types.extend(e.types)
        target.attributes.update({k: list(v) for k, v in e.attributes.items()})
    for r, key in enumerate(kg.relations):
        builder.add_relation(key, kg.relation_labels[r])
    for split, arr in kg.splits.items():
        for h, r, t in arr.tolist():
            builder.add_triple_ids(h, r, t, split)
    count = 0
    for row in triples:
        try:
            h, r, t = (str(x) for x in row)
        except (TypeError, ValueError):
            raise InputError(f"update triples must be (head, relation, tail) keys; got {row!r}") from None
        builder.add_triple(h, r, t, "train")
        count += 1
    if count == 0:
        raise InputError("no triples given to update the model with")
    return builder.build({**kg.metadata, "updated_with": count})


def _key_map(old: list[str], new: list[str], what: str) -> np.ndarray:
    index = {k: i for i, k in enumerate(new)}
    missing = [k for k in old if k not in index]
    if missing:
        raise InputError(
            f"the new graph lacks {len(missing)} {what}(s) of the trained model (e.g. {missing[0]!r}); "
            f"an update must keep every old {what} (same keys)"
        )
    return np.array([index[k] for k in old], dtype=np.int64)


def _remap(triples: np.ndarray, entity_map: np.ndarray, relation_map: np.ndarray) -> np.ndarray:
    return np.stack(
        [entity_map[triples[:, 0]], relation_map[triples[:, 1]], entity_map[triples[:, 2]]], axis=1
    )


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of ``a`` not in ``b``."""
    if len(b) == 0:
        return a
    known = {tuple(row) for row in b.tolist()}
    return a[np.array([tuple(row) not in known for row in a.tolist()], dtype=bool)]


def _extended_features(
    trained: TrainedModel, new_kg: KnowledgeGraph, entity_map: np.ndarray, cfg: TrainingConfig
) -> TextFeatures:
    """Old entities keep their stored features; new ones are encoded and standardised the same way."""
    old = trained.features
    assert old is not None
    new_ids = np.setdiff1d(np.arange(new_kg.num_entities), entity_map)
    per_entity: list[torch.Tensor | None] = [None] * new_kg.num_entities
    for old_id, new_id in enumerate(entity_map.tolist()):
        per_entity[new_id] = old.vectors[old.offsets[old_id] : old.offsets[old_id + 1]]
    if len(new_ids):
        from kgemb.features import entity_view_texts

        views = entity_view_texts(new_kg, cfg.languages)
        texts = [t for i in new_ids for t in views[i]]
        raw = encode_texts(trained.encoder, texts, "entity texts")
        vectors = old.standardise(raw)
        start = 0
        for i in new_ids.tolist():
            per_entity[i] = vectors[start : start + len(views[i])]
            start += len(views[i])
    counts = [len(v) for v in per_entity]  # type: ignore[arg-type]
    offsets = torch.zeros(len(counts) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor(counts), 0)
    return TextFeatures(torch.cat(per_entity), offsets, old.center, old.scale)  # type: ignore[arg-type]


def _transfer_weights(
    old_state: dict[str, torch.Tensor], new: Any, entity_map: np.ndarray, relation_map: np.ndarray
) -> None:
    """Copy every weight of the old model's state into the new one; entity and relation rows go to their new ids."""
    new_state = new.state_dict()
    emap, rmap = torch.as_tensor(entity_map), torch.as_tensor(relation_map)
    fused = new.entity_representations[0].mode == "fused"
    for name, value in old_state.items():
        target = new_state.get(name)
        if target is None or name.endswith(".seen"):  # which entities are seen comes from the new graph
            continue
        if not name.endswith("_embeddings.weight"):
            target.copy_(value)
            continue
        rows = emap if name.startswith("entity_representations") else rmap
        if len(value) == 2 * len(rmap) and rows is rmap:  # a reciprocal model: the inverses follow
            rows = torch.cat([rmap, rmap + len(target) // 2])
        if fused and name.startswith("entity_representations"):
            target.zero_()  # a new entity starts from its text part alone
        target[rows] = value
    new.load_state_dict(new_state)
    rep = new.entity_representations[0]
    if rep.late:  # a new entity's structural part starts where it was scored while unseen, not at 0
        fresh = torch.as_tensor(np.setdiff1d(np.arange(rep.max_id), entity_map))
        if len(fresh):  # text_part() takes no empty index
            with torch.no_grad():
                rep.structure._embeddings.weight[fresh] = rep._structure_from_text(rep.text_part(fresh))
