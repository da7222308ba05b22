"""Where a Hugging Face encoder comes from and how to use it: model folder, presets, pooling and prompts.

A spec is a local folder or a hub id. The folder's sentence-transformers files (``modules.json``,
``1_Pooling/config.json``, ``sentence_bert_config.json``, ``config_sentence_transformers.json``) decide pooling,
prompts and the token limit when present, as sentence-transformers would; presets fill in Qwen3-Embedding
(last-token pooling, instruction for queries) and e5 (``query: `` / ``passage: ``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgemb.encoders.cache import EmbeddingCache
from kgemb.errors import ConfigError, DependencyError, InputError
from kgemb.files import file_sha256

log = logging.getLogger("kgemb.encoders")

POOLINGS = ("mean", "cls", "last")
PRESETS = ("qwen3", "e5", "none")
QWEN3_DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"
DECODER_TYPES = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3", "gemma3_text", "phi3"}
_QWEN3_NAME = re.compile(r"qwen3-embedding", re.IGNORECASE)
_E5_NAME = re.compile(r"(^|[/_-])e5([-_]|$)", re.IGNORECASE)
_SKIP_FILES = re.compile(
    r"(^readme|\.md$|^\.git|\.bin$|\.pt$|\.pth$|\.onnx$|\.h5$|\.msgpack$|\.ot$|\.ckpt$)", re.I
)
_ST_POOLING = {
    "pooling_mode_lasttoken": "last",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
}


@dataclass
class ModelSource:
    """A model folder on disk and the stable reference the fingerprint uses (hub id@commit or content hash)."""

    folder: Path  # the folder as given or downloaded (sentence-transformers files live here)
    model_dir: Path  # the folder holding config.json (the Transformer module's path)
    ref: str


@dataclass
class SentenceTransformersConfig:
    """What the sentence-transformers files of a folder say (all optional)."""

    pooling: str | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    max_seq_length: int | None = None
    transformer_path: str = ""


def resolve_source(
    spec: str,
    *,
    revision: str | None,
    local_files_only: bool,
    trust_remote_code: bool,
    cache: EmbeddingCache | None,
) -> ModelSource:
    """Find the model folder for ``spec`` (a local folder, or a hub id downloaded into the HF cache)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        folder, ref = path, None
    elif path.exists():
        raise InputError(f"encoder {spec!r} is a file: pass the model's folder (the one holding config.json)")
    elif spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise InputError(
            f"encoder folder {spec!r} does not exist: pass an existing model folder, a Hugging Face id "
            "such as Qwen/Qwen3-Embedding-0.6B, or 'default'"
        )
    else:
        folder = _download(spec, revision, local_files_only, trust_remote_code)
        ref = f"{spec}@{folder.name}"  # the snapshot folder is named by the commit hash
    st = read_st_config(folder)
    model_dir = folder / st.transformer_path if st.transformer_path else folder
    if not (model_dir / "config.json").exists():
        raise InputError(
            f"encoder folder {model_dir} has no config.json, so it is not a Hugging Face model: "
            "pass a folder saved with save_pretrained() or downloaded from the hub"
        )
    if not any(model_dir.glob("*.safetensors")):
        raise DependencyError(
            f"encoder folder {model_dir} has no .safetensors weights; kgemb does not unpickle weight files: "
            "convert it once with AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)"
        )
    if ref is None:
        ref = f"local:sha256={folder_digest(folder, cache)[:16]}"
    return ModelSource(folder=folder, model_dir=model_dir, ref=ref)


def _download(spec: str, revision: str | None, local_files_only: bool, trust_remote_code: bool) -> Path:
    """Fetch (or find in the local HF cache) the files of hub model ``spec``; safetensors weights only."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*_Pooling/*"]
    if trust_remote_code:
        patterns.append("*.py")
    try:
        return Path(
            snapshot_download(
                spec, revision=revision, local_files_only=local_files_only, allow_patterns=patterns
            )
        )
    except Exception as exc:  # network, auth, unknown repo: all mean "this model is not available here"
        raise DependencyError(
            f"encoder {spec!r} could not be fetched from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}): download it where the hub is "
            "reachable (hf download <id> --local-dir DIR) and pass DIR, or use encoder='default'"
        ) from exc


def read_st_config(folder: Path) -> SentenceTransformersConfig:
    """Pooling, prompts, token limit and Transformer path from a folder's sentence-transformers files."""
    out = SentenceTransformersConfig()
    modules = _read_json(folder / "modules.json") or []
    pooling_dir = None
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith(".Transformer"):
            out.transformer_path = str(module.get("path", ""))
        elif kind.endswith(".Pooling"):
            pooling_dir = folder / str(module.get("path", "1_Pooling"))
        elif not kind.endswith(".Normalize"):
            log.warning(
                "kgemb: module %s of %s is not applied (kgemb runs Transformer, Pooling, Normalize)",
                kind,
                folder,
            )
    pooling_config = _read_json(pooling_dir / "config.json") if pooling_dir else None
    if pooling_config:
        modes = [mode for key, mode in _ST_POOLING.items() if pooling_config.get(key)]
        others = [
            k
            for k, v in pooling_config.items()
            if k.startswith("pooling_mode") and v and k not in _ST_POOLING
        ]
        if others or len(modes) > 1:
            raise ConfigError(
                f"{pooling_dir} asks for pooling {others + modes}, which kgemb does not reproduce: "
                "pass pooling='mean', 'cls' or 'last' to choose one"
            )
        out.pooling = modes[0] if modes else None
    st_config = _read_json(folder / "config_sentence_transformers.json") or {}
    out.prompts = {k: v for k, v in (st_config.get("prompts") or {}).items() if isinstance(v, str)}
    bert_config = _read_json(folder / "sentence_bert_config.json") or {}
    if isinstance(bert_config.get("max_seq_length"), int):
        out.max_seq_length = bert_config["max_seq_length"]
    return out


@dataclass
class Preset:
    """Defaults for a model family: pooling and the prompts put before queries and documents."""

    name: str
    pooling: str | None = None
    query_prompt: str = ""
    document_prompt: str = ""


def choose_preset(preset: str | None, spec: str, model_type: str, query_task: str | None) -> Preset:
    """The preset named, or the one ``spec`` / the model's type calls for (Qwen3 config -> qwen3)."""
    if preset is None:
        if _QWEN3_NAME.search(spec) or model_type == "qwen3":
            preset = "qwen3"
        elif _E5_NAME.search(Path(spec).name if Path(spec).exists() else spec):
            preset = "e5"
        else:
            preset = "none"
    if preset not in PRESETS:
        raise ConfigError(
            f"preset={preset!r} is not known: pass one of {', '.join(PRESETS)}, or leave it out"
        )
    if query_task is not None and preset != "qwen3":
        raise ConfigError(
            f"query_task applies to the Qwen3-Embedding preset, and this encoder uses preset {preset!r}: "
            "pass query_prompt='...' to set the text put before queries"
        )
    if preset == "qwen3":
        return Preset("qwen3", "last", f"Instruct: {query_task or QWEN3_DEFAULT_TASK}\nQuery:", "")
    if preset == "e5":
        return Preset("e5", "mean", "query: ", "passage: ")
    return Preset("none")


def choose_prompts(
    preset: Preset,
    st: SentenceTransformersConfig,
    query_prompt: str | None,
    document_prompt: str | None,
    query_task: str | None,
) -> tuple[str, str]:
    """Prompts by precedence: given options, then Qwen3's query_task, then the folder's prompts, then preset."""
    query = st.prompts.get("query", preset.query_prompt)
    document = st.prompts.get("document", st.prompts.get("passage", preset.document_prompt))
    if query_task is not None:
        query = preset.query_prompt
    return (
        query if query_prompt is None else query_prompt,
        document if document_prompt is None else document_prompt,
    )


def choose_pooling(
    pooling: str | None, preset: Preset, st: SentenceTransformersConfig, model_type: str
) -> str:
    """The option given, else the folder's sentence-transformers pooling, else the preset's, else by model kind."""
    chosen = pooling or st.pooling or preset.pooling or ("last" if model_type in DECODER_TYPES else "mean")
    if chosen not in POOLINGS:
        raise ConfigError(f"pooling={chosen!r} is not known: pass one of {', '.join(POOLINGS)}")
    return chosen


def folder_digest(folder: Path, cache: EmbeddingCache | None) -> str:
    """SHA-256 over the names and contents of a model folder's files (weights, configs, tokenizer)."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not _SKIP_FILES.search(p.name) and ".git" not in p.parts
    )
    outer = hashlib.sha256()
    for path in files:
        digest = cache.file_sha256(path) if cache is not None else file_sha256(path)
        outer.update(f"{path.relative_to(folder).as_posix()}\0{digest}\n".encode())
    return outer.hexdigest()


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}): fix or remove that file") from exc
