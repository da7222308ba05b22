"""Any Hugging Face encoder through ``transformers``: Qwen3-Embedding, BERT-style sentence encoders, e5.

Texts are tokenized once, sorted by token length into batches under a padded-token budget, run through the
model, pooled (mean, CLS or last token), cut to ``dim`` (Matryoshka) and normalised. A text longer than
``max_tokens`` is split into overlapping token windows whose vectors are averaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import Counter
from typing import Any

import numpy as np

from kgemb.encoders.base import Progress, TextEncoder
from kgemb.encoders.batching import plan_batches
from kgemb.encoders.hf_config import (
    choose_pooling,
    choose_preset,
    choose_prompts,
    read_st_config,
    resolve_source,
)
from kgemb.encoders.precision import check_dtype_device, resolve_device, resolve_dtype, torch_dtype
from kgemb.errors import ConfigError, DependencyError

log = logging.getLogger("kgemb.encoders")

LONG_TEXT = ("average", "first")
MIN_DIM = 32
DEFAULT_MAX_TOKENS = 512
CPU_BATCH_TOKENS = 8192  # padded tokens per pass on the CPU; a batch of one length may close at 1/8 of it
GPU_BATCH_TOKENS = 65536
GPU_BATCH_SIZE = 512  # texts per pass on a GPU unless batch_size says otherwise (128 on the CPU)


class HFEncoder(TextEncoder):
    """A ``transformers`` model used as a sentence encoder. Build it with ``kgemb.load_encoder(spec, ...)``.

    Options: ``device`` (default cuda when present), ``dtype`` (fp32; fp16/bf16 on a GPU; int8 on the CPU),
    ``dim`` (keep the first ``dim`` dimensions, 32 to the model's size), ``pooling`` (mean/cls/last),
    ``preset`` (qwen3/e5/none, chosen from the name or config when left out), ``query_prompt`` /
    ``document_prompt`` (text put before each query / document), ``query_task`` (Qwen3's instruction),
    ``max_tokens`` (tokens per pass, default 512 or the model's limit), ``long_text`` ("average" windows or
    "first" window), ``window_overlap`` (tokens shared by neighbouring windows), ``batch_tokens`` (padded
    tokens per pass), ``revision`` / ``local_files_only`` (hub ids), ``trust_remote_code`` (off by default).
    """

    default_batch_size = 128

    def __init__(
        self,
        spec: str,
        *,
        device: str | None = None,
        dtype: str = "fp32",
        dim: int | None = None,
        pooling: str | None = None,
        preset: str | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        query_task: str | None = None,
        max_tokens: int | None = None,
        long_text: str = "average",
        window_overlap: int = 64,
        batch_tokens: int | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device, self.dtype)
        check_dtype_device(self.dtype, self.device)
        if long_text not in LONG_TEXT:
            raise ConfigError(f"long_text={long_text!r} is not known: pass 'average' or 'first'")
        source = resolve_source(
            spec,
            revision=revision,
            local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
            cache=self.cache,
        )
        st = read_st_config(source.folder)
        config = AutoConfig.from_pretrained(source.model_dir, trust_remote_code=trust_remote_code)
        model_type = str(getattr(config, "model_type", ""))
        preset_ = choose_preset(preset, spec, model_type, query_task)
        self.preset = preset_.name
        self.pooling = choose_pooling(pooling, preset_, st, model_type)
        self.query_prompt, self.document_prompt = choose_prompts(
            preset_, st, query_prompt, document_prompt, query_task
        )
        self.roles_differ = self.query_prompt != self.document_prompt
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                source.model_dir, trust_remote_code=trust_remote_code
            )
            model = AutoModel.from_pretrained(
                source.model_dir,
                dtype=torch_dtype(self.dtype),
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
            )
        except (OSError, ValueError) as exc:
            raise DependencyError(
                f"encoder {spec!r} could not be loaded from {source.model_dir} ({exc}): check the folder holds a "
                "complete transformers model and tokenizer, or pass trust_remote_code=True for a custom model "
                "you trust"
            ) from exc
        # kgemb splits long texts itself: lift the tokenizer's limit, and its warning about long inputs
        self.tokenizer.model_max_length = 1 << 30
        model.eval().to(self.device)
        self.model = model
        self.pad_left = self.pooling == "last"
        self.pad_id = _first_id(self.tokenizer, ("pad_token_id", "eos_token_id", "unk_token_id"))
        self.empty_id = _first_id(
            self.tokenizer, ("eos_token_id", "sep_token_id", "unk_token_id", "pad_token_id")
        )
        hidden = int(config.hidden_size)
        self.dim = _check_dim(dim, hidden)
        limit = int(getattr(config, "max_position_embeddings", 0) or 0) or None
        self.max_tokens = _check_max_tokens(max_tokens, st.max_seq_length, limit)
        if not isinstance(window_overlap, int) or not 0 <= window_overlap < self.max_tokens // 2:
            raise ConfigError(
                f"window_overlap={window_overlap!r} must be a whole number from 0 to {self.max_tokens // 2 - 1} "
                f"(under half of max_tokens={self.max_tokens})"
            )
        self.long_text = long_text
        self.window_overlap = window_overlap
        gpu = not self.device.startswith("cpu")
        if gpu and options.get("batch_size") is None:
            self.batch_size = GPU_BATCH_SIZE
        self.batch_tokens = batch_tokens or (GPU_BATCH_TOKENS if gpu else CPU_BATCH_TOKENS)
        if not isinstance(self.batch_tokens, int) or self.batch_tokens < 1:
            raise ConfigError(f"batch_tokens={batch_tokens!r} is not a positive whole number: pass e.g. 8192")
        self.name = spec
        self.source = source
        prompts = hashlib.blake2b(
            f"{self.query_prompt}\x1f{self.document_prompt}".encode(), digest_size=6
        ).hexdigest()
        self.fingerprint = (
            f"hf:{source.ref}|pool={self.pooling}|dim={self.dim}|dtype={self.dtype}|max_tokens={self.max_tokens}"
            f"|long={long_text}:{window_overlap}|prompts={prompts}"
        )
        self._torch = torch
        if self.dtype == "int8":
            from kgemb.encoders.quantize import CALIBRATION_TEXTS, quantize_int8

            self.model = quantize_int8(model, calibrate=lambda: self._calibrate(list(CALIBRATION_TEXTS)))

    def _encode_texts(
        self, texts: list[str], role: str, batch_size: int, progress: Progress
    ) -> tuple[np.ndarray, int]:
        prompt = self.query_prompt if role == "query" else self.document_prompt
        ids = self.tokenizer(
            [prompt + t for t in texts], add_special_tokens=True, return_attention_mask=False
        )["input_ids"]
        units: list[list[int]] = []
        owner: list[int] = []
        long_ones = [i for i, seq in enumerate(ids) if len(seq) > self.max_tokens]
        windows = self._windows(prompt, [texts[i] for i in long_ones]) if long_ones else []
        window_of = dict(zip(long_ones, windows, strict=True))
        for i, seq in enumerate(ids):
            pieces = window_of.get(i, [seq or [self.empty_id]])
            units.extend(pieces)
            owner.extend([i] * len(pieces))
        vectors = np.empty((len(units), self.dim), dtype=np.float32)
        left = Counter(owner)
        threads = self._torch.get_num_threads()
        self._torch.set_num_threads(self.threads)
        try:
            lengths = [len(u) for u in units]
            for batch in plan_batches(lengths, self.batch_tokens, batch_size, self.batch_tokens // 8):
                vectors[batch] = self._forward([units[j] for j in batch])
                done = 0
                for j in batch:
                    left[owner[j]] -= 1
                    done += left[owner[j]] == 0
                progress(done)
        finally:
            self._torch.set_num_threads(threads)
        if not long_ones:
            return vectors, 0
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(out, np.asarray(owner), vectors)  # sum of unit-norm window vectors; the caller renormalises
        return out, len(long_ones)

    def _calibrate(self, texts: list[str]) -> None:
        """Run the (fp32) model over ``texts`` as documents and as queries, for int8 smoothing."""
        for role in ("document", "query") if self.roles_differ else ("document",):
            self._encode_texts(texts, role, self.batch_size, lambda _: None)

    def _windows(self, prompt: str, texts: list[str]) -> list[list[list[int]]]:
        """Overlapping windows of each long text, each re-tokenized with the prompt and special tokens."""
        if not self.tokenizer.is_fast:
            raise ConfigError(
                f"encoder {self.name!r} has no fast tokenizer, so a text over {self.max_tokens} tokens cannot be "
                "split into windows: pass long_text='first', or a larger max_tokens"
            )
        overhead = len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        size = self.max_tokens - overhead - 2  # 2 tokens of slack: a window's edges may tokenize differently
        if size < 8:
            raise ConfigError(
                f"max_tokens={self.max_tokens} leaves {size} tokens per window after the prompt: pass a larger "
                "max_tokens or a shorter prompt"
            )
        step = size - min(self.window_overlap, size // 2)
        spans: list[tuple[int, int, int]] = []  # (text index, first char, end char)
        offsets = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        for k, marks in enumerate(offsets):
            starts = range(0, max(len(marks) - size, 0) + step, step) if self.long_text == "average" else [0]
            for s in starts:
                e = min(s + size, len(marks))
                spans.append((k, marks[s][0], marks[e - 1][1]))
                if e == len(marks):
                    break
        pieces = [prompt + texts[k][a:b] for k, a, b in spans]
        ids = self.tokenizer(
            pieces,
            add_special_tokens=True,
            truncation=True,
            max_length=self.max_tokens,
            return_attention_mask=False,
        )["input_ids"]
        out: list[list[list[int]]] = [[] for _ in texts]
        for (k, _, _), seq in zip(spans, ids, strict=True):
            out[k].append(seq)
        return out

    def _attention_kernels(self) -> contextlib.AbstractContextManager[object]:
        """On a GPU, attention without cuDNN's kernel: it plans anew for each batch shape, and dynamic batching
        makes many shapes (measured on an H100: fp16 MiniLM 4,000 texts/s with it, 17,700 without)."""
        if self.device.startswith("cpu"):
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        """One model pass over token sequences: pad, run, pool, cut to ``dim``, normalise."""
        with self._torch.inference_mode(), self._attention_kernels():
            return self.embed(seqs).cpu().numpy()

    def embed(self, seqs: list[list[int]], model: Any = None) -> Any:
        """Unit vectors of token sequences as a tensor (differentiable outside ``inference_mode``; ``model``: the
        network to run instead of ``self.model``, e.g. one wrapped for fine-tuning)."""
        torch = self._torch
        width = max(len(s) for s in seqs)
        input_ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for row, seq in enumerate(seqs):
            cols = slice(width - len(seq), width) if self.pad_left else slice(0, len(seq))
            input_ids[row, cols] = seq
            mask[row, cols] = 1
        ids_t = torch.from_numpy(input_ids).to(self.device)
        mask_t = torch.from_numpy(mask).to(self.device)
        # a batch of one length needs no mask, and attention runs a little faster without one
        padded = bool(mask.min() == 0)
        net = self.model if model is None else model
        hidden = net(input_ids=ids_t, attention_mask=mask_t if padded else None).last_hidden_state
        pooled = pool(hidden, mask_t, self.pooling)[:, : self.dim].float()
        return torch.nn.functional.normalize(pooled, dim=-1)


def pool(hidden: Any, mask: Any, pooling: str) -> Any:
    """Sentence vectors from token states: mean over real tokens, the first (CLS) or the last (left-padded)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        return hidden[:, -1]  # left padding puts every sequence's last token in the last column
    hidden = hidden.float()  # sum in fp32: fp16 sums over long texts can overflow
    return (hidden * mask.unsqueeze(-1).float()).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(
        min=1
    ).float()


def _first_id(tokenizer: Any, names: tuple[str, ...]) -> int:
    for name in names:
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def _check_dim(dim: int | None, hidden: int) -> int:
    if dim is None:
        return hidden
    if isinstance(dim, bool) or not isinstance(dim, int) or not MIN_DIM <= dim <= hidden:
        raise ConfigError(
            f"dim={dim!r} is out of range for this model: pass a whole number from {MIN_DIM} to {hidden}"
        )
    return dim


def _check_max_tokens(max_tokens: int | None, st_limit: int | None, model_limit: int | None) -> int:
    """Tokens per pass: the option, else min(512, the sentence-transformers limit); never over the model's."""
    if max_tokens is None:
        return min(x for x in (DEFAULT_MAX_TOKENS, st_limit, model_limit) if x)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 16:
        raise ConfigError(f"max_tokens={max_tokens!r} is not a whole number of at least 16: pass e.g. 512")
    if model_limit and max_tokens > model_limit:
        raise ConfigError(
            f"max_tokens={max_tokens} is over this model's limit of {model_limit}: pass at most that"
        )
    return max_tokens
