"""Cross-lingual alignment learned from the graph's own multilingual labels: a residual adapter on frozen vectors.

Entities with labels in several languages are parallel pairs. :func:`fit_adapter` trains a small residual MLP
(``x + W2 relu(W1 x)``, ``W2`` zero-initialised so it starts as the identity) on the frozen, L2-normalised encoder
vectors with a symmetric InfoNCE loss over in-batch negatives plus each pair's hardest other entities (mined once
in the raw space), so every language lands near its translations. The adapter is applied to raw encoder vectors
before anything else (search, new-name look-ups, the model's text features) and is saved as safetensors + JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from kgemb.errors import ConfigError, InputError
from kgemb.files import write_atomic

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
FORMAT = "kgemb-adapter/1"
MIN_PAIRS = 32  # fewer parallel labels than this teach nothing: no adapter is trained


class Adapter(nn.Module):
    """``normalise(x + up(relu(down(x))))`` on unit encoder vectors; the identity until trained."""

    def __init__(self, dim: int, hidden: int | None = None, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.dim, self.hidden = int(dim), int(hidden or 2 * dim)
        self.down = nn.Linear(self.dim, self.hidden)
        self.up = nn.Linear(self.hidden, self.dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.info: dict[str, Any] = dict(info or {})  # encoder fingerprint, pairs, languages, settings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x + self.up(torch.relu(self.down(x))), dim=-1)

    @torch.no_grad()
    def apply(self, vectors: np.ndarray | torch.Tensor, batch: int = 65536) -> np.ndarray:
        """Adapt raw encoder vectors ``(n, dim)`` (float32 out, unit rows)."""
        x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InputError(f"the adapter takes vectors of shape (n, {self.dim}); got {tuple(x.shape)}")
        self.eval()
        return torch.cat([self(x[i : i + batch]) for i in range(0, len(x), batch)] or [x]).numpy()

    def save(self, directory: str | os.PathLike) -> list[str]:
        """Write ``adapter.safetensors`` and ``adapter.json`` into ``directory``; return the file names."""
        from safetensors.torch import save as to_bytes

        out = Path(directory)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        write_atomic(out / ADAPTER_WEIGHTS, to_bytes(state))
        meta = {"format": FORMAT, "dim": self.dim, "hidden": self.hidden, **self.info}
        write_atomic(out / ADAPTER_CONFIG, json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8"))
        return [ADAPTER_WEIGHTS, ADAPTER_CONFIG]


def load_adapter(directory: str | os.PathLike) -> Adapter:
    """Read an adapter written by :meth:`Adapter.save` (JSON + safetensors; no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    src = Path(directory)
    try:
        meta = json.loads((src / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        state = load_file(src / ADAPTER_WEIGHTS)
    except (OSError, ValueError, SafetensorError) as exc:
        raise InputError(f"the adapter in {src} cannot be read ({exc}); save the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{src / ADAPTER_CONFIG} is not a kgemb adapter; save the model again")
    info = {k: v for k, v in meta.items() if k not in ("format", "dim", "hidden")}
    adapter = Adapter(int(meta["dim"]), int(meta["hidden"]), info)
    try:
        adapter.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"{src / ADAPTER_WEIGHTS} does not fit {src / ADAPTER_CONFIG} ({exc})") from None
    return adapter.eval()


@dataclass
class ParallelPairs:
    """Texts of one entity in two languages: ``left[i]`` and ``right[i]`` name entity ``entities[i]``."""

    left: list[str]
    right: list[str]
    entities: list[int]
    languages: list[tuple[str, str]]


def parallel_pairs(kg: KnowledgeGraph, entities: Sequence[int] | None = None) -> ParallelPairs:
    """Every (other-language label, pivot label) pair of entities labelled in several languages.

    The pivot is the entity's label in its preferred language (English first, see ``KnowledgeGraph.label``);
    language tags are compared by their primary subtag (``zh-cn`` is ``zh``).
    """
    from kgemb.names import language_order

    out = ParallelPairs([], [], [], [])
    for i in range(kg.num_entities) if entities is None else entities:
        labels = kg.entities[i].labels
        order = [lang for lang in language_order(labels) if labels[lang]]
        if len(order) < 2:
            continue
        pivot_lang = order[0]
        pivot = labels[pivot_lang][0]
        for lang in order[1:]:
            if primary(lang) == primary(pivot_lang):
                continue
            for text in labels[lang]:
                if text != pivot:
                    out.left.append(text)
                    out.right.append(pivot)
                    out.entities.append(i)
                    out.languages.append((primary(lang), primary(pivot_lang)))
    return out


def primary(tag: str) -> str:
    """The primary language subtag (``zh-Hans-CN`` -> ``zh``; untagged stays ``""``)."""
    return tag.split("-", 1)[0].split("_", 1)[0].lower()


def fit_adapter(
    left: np.ndarray,
    right: np.ndarray,
    groups: Sequence[int] | None = None,
    *,
    adapter: Adapter | None = None,
    epochs: int = 40,
    batch_size: int = 256,
    temperature: float = 0.05,
    hard_negatives: int = 4,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    info: dict[str, Any] | None = None,
) -> Adapter:
    """Train (or keep training, given ``adapter``) on raw vectors of parallel texts ``left[i] ~ right[i]``.

    ``groups[i]`` is the entity of pair ``i`` (pairs of one entity are never each other's negatives). Each
    batch holds, beside its pairs, the ``hard_negatives`` pivots closest to each left text in the raw space.
    """
    left_t = torch.as_tensor(np.asarray(left, dtype=np.float32))
    right_t = torch.as_tensor(np.asarray(right, dtype=np.float32))
    if left_t.ndim != 2 or left_t.shape != right_t.shape:
        raise InputError(f"parallel vectors must be two (n, dim) arrays; got {left_t.shape}, {right_t.shape}")
    n, dim = left_t.shape
    if n < MIN_PAIRS:
        raise ConfigError(f"only {n} parallel labels: an adapter needs at least {MIN_PAIRS}")
    if not 0 < temperature <= 1 or epochs < 0:
        raise ConfigError(f"temperature {temperature!r} or epochs {epochs!r} out of range")
    group = torch.as_tensor(np.asarray(groups if groups is not None else np.arange(n)), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = adapter if adapter is not None else Adapter(dim, info=info)
    if model.dim != dim:
        raise ConfigError(f"the adapter takes {model.dim} dimensions and the vectors have {dim}")
    hard = mine_hard_negatives(left_t, right_t, group, hard_negatives)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            extra = hard[idx].reshape(-1) if hard.numel() else idx[:0]
            cand = torch.cat([idx, extra])
            loss = info_nce(
                model(left_t[idx]), model(right_t[cand]), group[idx], group[cand], 1 / temperature
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    model.info.update(info or {})
    model.info.update({"pairs": int(n), "epochs": int(model.info.get("epochs", 0)) + epochs})
    model.info.update({"temperature": temperature, "hard_negatives": hard_negatives})
    return model


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    group_a: torch.Tensor,
    group_b: torch.Tensor,
    scale: torch.Tensor | float,
) -> torch.Tensor:
    """Symmetric InfoNCE of ``a[i] ~ b[i]`` (unit rows): ``b`` holds the ``len(a)`` positives first, then extra
    candidates (hard negatives); other texts of the same entity (``group``) are masked, never negatives."""
    n = len(a)
    logits = a @ b.T * scale
    same = group_a.unsqueeze(1) == group_b.unsqueeze(0)
    same[torch.arange(n), torch.arange(n)] = False
    logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(n, device=a.device)
    back = logits[:, :n].T  # pivot -> text direction over the batch's texts
    return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(back, target)) / 2


@torch.no_grad()
def mine_hard_negatives(left: torch.Tensor, right: torch.Tensor, group: torch.Tensor, k: int) -> torch.Tensor:
    """For each left text, the ``k`` pairs whose pivot is closest to it in the raw space (another entity)."""
    if k <= 0:
        return torch.zeros((len(left), 0), dtype=torch.long)
    out = []
    for start in range(0, len(left), 2048):
        sims = left[start : start + 2048] @ right.T
        sims = sims.masked_fill(group[start : start + 2048].unsqueeze(1) == group.unsqueeze(0), float("-inf"))
        out.append(sims.topk(min(k, len(right) - 1), dim=1).indices)
    return torch.cat(out)


def adapter_for_graph(
    kg: KnowledgeGraph, encoder: Any, *, adapter: Adapter | None = None, **options: Any
) -> Adapter | None:
    """Train an adapter on ``kg``'s parallel labels (None when it has fewer than ``MIN_PAIRS``)."""
    from kgemb.features import encode_texts

    pairs = parallel_pairs(kg)
    if len(pairs.left) < MIN_PAIRS:
        return adapter
    left = encode_texts(encoder, pairs.left, "parallel labels")
    right = encode_texts(encoder, pairs.right, "parallel labels")
    langs = sorted({lang for pair in pairs.languages for lang in pair})
    info = {"encoder": getattr(encoder, "fingerprint", None), "languages": langs}
    return fit_adapter(left, right, pairs.entities, adapter=adapter, info=info, **options)
