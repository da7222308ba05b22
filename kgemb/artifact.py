"""Save and load a trained model directory: JSON, safetensors and the graph's own files; never pickle.

Layout::

    DIR/config.json              mode, interaction, dims, encoder (spec, fingerprint), versions, training settings,
                                 metrics, and the SHA-256 of every other file
    DIR/weights.safetensors      the PyKEEN model's state dict
    DIR/text_features.safetensors  the frozen text features (so loading needs no encoder)
    DIR/adapter.safetensors, adapter.json  the cross-lingual adapter the text features went through, if any
    DIR/encoder.safetensors, encoder.json  the fine-tuned default encoder the model was trained with, if any
    DIR/graph/                   the KnowledgeGraph (graph.json + triples_*.npy)

Every file is written under a temporary name and renamed, ``config.json`` last, so a reader never sees a half-written
model; loading checks each hash and fails with a :class:`~kgemb.errors.KgembError` on a missing or altered file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kgemb.errors import ConfigError, InputError, KgembError
from kgemb.features import TextFeatures
from kgemb.files import file_sha256, write_atomic
from kgemb.model import SIMILARITY_KEY, TrainedModel, check_encoder

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
FEATURES = "text_features.safetensors"
GRAPH = "graph"
FORMAT = "kgemb-model"
FINETUNED = "encoder.safetensors"  # kgemb.encoders.finetune.ENCODER_WEIGHTS (+ encoder.json)
ADAPTER = (
    "adapter.safetensors"  # kgemb.encoders.align.ADAPTER_WEIGHTS (+ adapter.json), when the features have one
)
FORMAT_VERSION = 1  # the newest model-folder layout this kgemb reads


def save(trained: TrainedModel, directory: str | os.PathLike) -> None:
    """Write ``trained`` to ``directory`` (created if needed; an existing model there is replaced)."""
    from safetensors.torch import save as to_bytes

    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / CONFIG
    config_path.unlink(missing_ok=True)  # the folder holds no valid model until the new config lands
    state = {k: v.detach().contiguous() for k, v in trained.pykeen_model.state_dict().items()}
    write_atomic(out / WEIGHTS, to_bytes(state))
    files = [WEIGHTS]
    if trained.features is not None:
        write_atomic(out / FEATURES, to_bytes(trained.features.tensors()))
        files.append(FEATURES)
    else:
        (out / FEATURES).unlink(missing_ok=True)
    from kgemb.channels import VOTES_ARRAYS
    from kgemb.rules import RULES_ARRAYS, RULES_JSON

    channel = trained.pykeen_model.rule_channel
    if channel is not None:
        channel.rules.save(out)
        files += [RULES_JSON, RULES_ARRAYS]
    if channel is not None and channel.votes is not None:
        channel.votes.save(out / VOTES_ARRAYS)
        files.append(VOTES_ARRAYS)
    # an earlier model's rules or vote must not be read as this one's
    for name in {RULES_JSON, RULES_ARRAYS, VOTES_ARRAYS} - set(files):
        (out / name).unlink(missing_ok=True)
    files += _save_adapter(trained, out)
    files += _save_finetuned_encoder(trained, out)
    trained.kg.save(out / GRAPH)
    files += sorted(
        f"{GRAPH}/{p.name}" for p in (out / GRAPH).iterdir() if p.is_file() and not p.name.startswith(".")
    )
    config = dict(trained.config)
    config["files"] = {name: file_sha256(out / name) for name in files}
    write_atomic(config_path, json.dumps(config, indent=2, ensure_ascii=False, default=str).encode("utf-8"))


#: config keys that record when and how long, not what: left out of the fingerprint
_VOLATILE = re.compile(r"(^|_)(seconds|time|timestamp|date|duration)($|_)|^(versions|metrics|files)$")


def fingerprint(trained: TrainedModel) -> str:
    """A short hash of what a model predicts from: its weights, text features, graph and settings, never its
    timings, so two identical trainings (same data, settings and seed) have the same fingerprint."""
    from safetensors.torch import save as to_bytes

    h = hashlib.sha256()
    h.update(json.dumps(_settings(trained.config), sort_keys=True, default=str).encode())
    state = {k: v.detach().cpu().contiguous() for k, v in trained.pykeen_model.state_dict().items()}
    h.update(to_bytes(state))
    if trained.features is not None:
        h.update(to_bytes({k: v.contiguous() for k, v in trained.features.tensors().items()}))
    kg = trained.kg
    h.update("\n".join(e.key for e in kg.entities).encode())
    h.update("\n".join(kg.relations).encode())
    for split in sorted(kg.splits):
        h.update(split.encode() + kg.triples(split).astype("<i8").tobytes())
    return h.hexdigest()[:16]


def _settings(value: Any) -> Any:
    """``value`` (a config or part of it) without the keys :data:`_VOLATILE` matches."""
    if isinstance(value, dict):
        return {k: _settings(v) for k, v in value.items() if not _VOLATILE.search(str(k))}
    if isinstance(value, list):
        return [_settings(v) for v in value]
    return value


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The model's config.json, checked to be a kgemb model."""
    src = Path(directory)
    path = src / CONFIG
    if not path.is_file():
        what = "does not exist" if not src.exists() else f"holds no kgemb model ({CONFIG} is missing)"
        raise InputError(f"{src} {what}; train one with `kgemb train SOURCE --out {src}`")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); save or train the model again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"{path} is not a kgemb model config; save or train the model again")
    _check_version(path, config)
    return config


def _check_version(path: Path, config: dict[str, Any]) -> None:
    """Refuse a model folder written in a newer layout, or by a newer kgemb (major.minor), than this one."""
    from kgemb._version import __version__

    version = config.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(
            f"{path}: format_version {version!r} is not a kgemb model format; train the model again"
        )
    writer = str((config.get("versions") or {}).get("kgemb") or "0")
    if version > FORMAT_VERSION or _release(writer) > _release(__version__):
        raise InputError(
            f"{path} was written by kgemb {writer} (model format {version}); this is kgemb {__version__}, which "
            f"reads format {FORMAT_VERSION}: upgrade kgemb (pip install -U kgemb) to load it"
        )


def _release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string; (0, 0) when it has none."""
    match = re.match(r"(\d+)(?:\.(\d+))?", version)
    return (int(match.group(1)), int(match.group(2) or 0)) if match else (0, 0)


def verify_files(directory: Path, config: dict[str, Any]) -> None:
    """Every file config.json lists must exist and have the recorded SHA-256."""
    files = config.get("files")
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise InputError(f"{directory / CONFIG} lists no model files; save the model again")
    for name, digest in files.items():
        path = directory / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise InputError(f"{directory / CONFIG} names a file outside the model folder ({name!r})")
        if not path.is_file():
            raise InputError(
                f"the model in {directory} is incomplete: {name} is missing; save the model again"
            )
        if file_sha256(path) != digest:
            raise InputError(
                f"{path} does not match the checksum in {CONFIG}: the file was changed or damaged; "
                "save or train the model again"
            )


def load(directory: str | os.PathLike, *, encoder: Any = None) -> TrainedModel:
    """Load a model saved by :meth:`TrainedModel.save`. ``encoder`` (a spec or TextEncoder) is checked against the
    training encoder's fingerprint; without it the encoder is re-created from its saved spec when first needed."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from kgemb.graph import KnowledgeGraph

    src = Path(directory)
    config = read_config(src)
    verify_files(src, config)
    kg = KnowledgeGraph.load(src / GRAPH)
    try:
        features = None
        if FEATURES in config["files"]:
            features = TextFeatures.from_tensors(load_file(src / FEATURES), src / FEATURES)
        state = load_file(src / WEIGHTS)
    except (SafetensorError, OSError) as exc:
        raise InputError(f"the model files in {src} cannot be read ({exc}); save the model again") from None
    if features is not None and ADAPTER in config["files"]:
        from kgemb.encoders.align import load_adapter

        features.adapter = load_adapter(src)
    enc = None
    if encoder is not None:
        from kgemb.encoders import load_encoder

        enc = load_encoder(encoder)
        check_encoder(enc, (config.get("encoder") or {}).get("fingerprint"))
    elif FINETUNED in config["files"]:  # the fine-tuned encoder lives in the model folder, not at a spec
        from kgemb.encoders.finetune import load_finetuned

        enc = load_finetuned(src, **((config.get("encoder") or {}).get("options") or {}))
        check_encoder(enc, (config.get("encoder") or {}).get("fingerprint"))
    from kgemb.training import TrainingConfig, model_for  # training writes through this module

    try:
        cfg = TrainingConfig.from_saved(config["training"])
        with _global_rng_kept():  # building the model seeds the global generators; loading must not
            folded = bool((config.get("text_channel") or {}).get("used"))
            seen = state.get("entity_representations.0.seen")
            similarity = SIMILARITY_KEY in state  # a late model's text part's similarity channel
            model = model_for(kg, cfg, features, seen=seen, text_channel=folded, similarity=similarity)
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, ConfigError) as exc:
        raise KgembError(
            f"the weights in {src / WEIGHTS} do not fit the model its config describes ({exc}); "
            "save or train the model again"
        ) from None
    model.eval()
    rules = config.get("rules") or {}
    if rules.get("used"):
        from kgemb.channels import VOTES_ARRAYS, RuleChannel, TextVotes
        from kgemb.rules import RuleSet

        votes = rules.get("votes") or {}
        try:
            model.rule_channel = RuleChannel(
                RuleSet.load(src),
                rules["weights"],
                TextVotes.load(src / VOTES_ARRAYS, kg.num_entities) if votes.get("used") else None,
                votes.get("weights"),
            )
        except (KeyError, ValueError, OSError) as exc:
            raise InputError(
                f"the rules in {src} do not fit the model ({exc}); save the model again"
            ) from None
    return TrainedModel(kg, model, config, features, enc)


def _save_finetuned_encoder(trained: TrainedModel, out: Path) -> list[str]:
    """Write the fine-tuned default encoder the model was trained with (safetensors + JSON), else remove any."""
    from kgemb.encoders.finetune import ENCODER_CONFIG, ENCODER_WEIGHTS, FineTunedEncoder

    encoder = trained._encoder  # the encoder object given to training or loading (never re-created here)
    if isinstance(encoder, FineTunedEncoder):
        return encoder.save(out)
    for name in (ENCODER_WEIGHTS, ENCODER_CONFIG):
        (out / name).unlink(missing_ok=True)
    return []


def _save_adapter(trained: TrainedModel, out: Path) -> list[str]:
    """Write the text features' cross-lingual adapter (safetensors + JSON) when there is one, else remove any."""
    from kgemb.encoders.align import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    adapter = getattr(trained.features, "adapter", None)
    if adapter is not None:
        return adapter.save(out)
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        (out / name).unlink(missing_ok=True)
    return []


@contextlib.contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global random state (CPU and CUDA) on exit."""
    import random

    import numpy as np
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
