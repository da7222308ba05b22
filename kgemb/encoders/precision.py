"""Devices and number formats for transformer encoders: fp32, fp16/bf16 on a GPU, int8 on the CPU (quantize.py)."""

from __future__ import annotations

from typing import Any

from kgemb.errors import ConfigError

_ALIASES = {
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "int8": "int8",
    "qint8": "int8",
}
DTYPES = ("fp32", "fp16", "bf16", "int8")


def resolve_device(device: str | None, dtype: str) -> str:
    """The torch device to run on: the one given, else cuda when there is one (int8: always the CPU)."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() and dtype != "int8" else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={device!r} is not a torch device: pass 'cpu', 'cuda' or 'cuda:1'") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} asks for a GPU, but torch sees none here: pass device='cpu'")
    return str(parsed)


def resolve_dtype(dtype: str) -> str:
    """The canonical name of a dtype option (fp32, fp16, bf16, int8)."""
    name = _ALIASES.get(str(dtype).lower())
    if name is None:
        raise ConfigError(f"dtype={dtype!r} is not known: pass one of {', '.join(DTYPES)}")
    return name


def check_dtype_device(dtype: str, device: str) -> None:
    """fp16/bf16 need a GPU and int8 the CPU; anything else is refused with the fix."""
    on_gpu = not device.startswith("cpu")
    if dtype in ("fp16", "bf16") and not on_gpu:
        raise ConfigError(
            f"dtype={dtype!r} is for GPUs and this encoder runs on {device}: "
            "pass dtype='int8' (fast on the CPU) or dtype='fp32'"
        )
    if dtype == "int8" and on_gpu:
        raise ConfigError(
            f"dtype='int8' is dynamic quantization for the CPU and this encoder runs on {device}: "
            "pass dtype='fp16' or 'bf16' on a GPU, or device='cpu'"
        )


def torch_dtype(dtype: str) -> Any:
    """The torch dtype the weights are loaded in (int8 loads fp32, then quantizes)."""
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype, torch.float32)
