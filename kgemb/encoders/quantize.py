"""Dynamic int8 quantization of a transformer's Linear layers for fast CPU inference.

Weights are int8 with one scale per output channel; activations are quantized per batch at run time over the
full 8-bit range. Before quantizing, each layer's input channels are smoothed (SmoothQuant, Xiao et al. 2023):
a few calibration texts measure each input channel's largest activation, and part of that range moves from the
activations into the weights, so the outlier channels of transformer hidden states no longer swamp the 8-bit
activation grid. On all-MiniLM-L6-v2, ``torch.ao.quantization.quantize_dynamic``'s default (per-tensor weights,
7-bit activations) keeps a mean cosine of about 0.95 to fp32; this keeps about 0.995 at the same speed.
The full 8-bit range is only safe where the kernel accumulates in int32 (oneDNN, QNNPACK); on FBGEMM alone,
activations keep 7 bits.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

SMOOTHING = 0.7  # share of an input channel's range moved into the weights (SmoothQuant's alpha)

# Calibration texts: labels and sentences of several lengths, domains and languages. Only each channel's largest
# activation is kept, which is a property of the model far more than of the texts.
CALIBRATION_TEXTS = (
    "fever",
    "New York City",
    "acute myocardial infarction",
    "a persistent dry cough lasting more than three weeks",
    "The patient presented with fever, chills and a productive cough after returning from a trip abroad.",
    "Type 2 diabetes is a chronic condition that affects the way the body processes blood sugar.",
    "The heart pumps blood through the arteries, veins and capillaries of the circulatory system.",
    "apple, the round fruit of a tree of the rose family, which typically has thin red or green skin",
    "The stock market fell sharply on Monday as investors worried about rising interest rates.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "a small domesticated carnivorous mammal with soft fur, a short snout and retractable claws",
    "To install the package, run the command below and restart the server.",
    "The 1998 FIFA World Cup final was played at the Stade de France.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "entity 4711: see also related concepts, synonyms and broader terms",
    "Q: Which drug is used to treat hypertension? A: Lisinopril, among others.",
    "发烧和咳嗽是流感的常见症状。",
    "苹果是一种常见的水果。",
    "Kopfschmerzen und Übelkeit sind häufige Nebenwirkungen dieses Medikaments.",
    "La fièvre est une élévation de la température du corps au-dessus de la normale.",
    "El hígado es el órgano más grande del cuerpo humano.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "Mutations in the BRCA1 gene increase the risk of breast and ovarian cancer; genetic testing is advised "
    "for women with a strong family history, and preventive options include surveillance and surgery.",
    "In mathematics, a group is a set with an operation that combines any two elements to form a third element "
    "while being associative and having an identity element and inverse elements.",
)


class Int8DynamicLinear(torch.nn.Module):
    """A Linear layer with int8 weights (one scale per output channel) and per-batch int8 activations.

    ``input_absmax`` (the largest activation seen on each input channel) turns on smoothing: inputs are divided
    by a per-channel factor at run time and the weights multiplied by it, which leaves the product unchanged.
    """

    def __init__(
        self, linear: torch.nn.Linear, full_range: bool, input_absmax: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        inv_smooth = None
        if input_absmax is not None:
            smooth = input_absmax.float().clamp(min=1e-5) ** SMOOTHING
            smooth = (smooth / weight.abs().amax(dim=0).clamp(min=1e-5) ** (1 - SMOOTHING)).clamp(min=1e-5)
            weight = weight * smooth
            inv_smooth = 1.0 / smooth
        self.register_buffer("inv_smooth", inv_smooth)
        scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-8).double()
        zero = torch.zeros(scale.shape, dtype=torch.long)
        qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
        bias = linear.bias.detach().float() if linear.bias is not None else None
        self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_bytes = weight.numel() + scale.numel() * 4  # int8 values and a float32 scale per row
        self.full_range = full_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inv_smooth is not None:
            x = x * self.inv_smooth
        return torch.ops.quantized.linear_dynamic(x, self._packed, not self.full_range)

    def extra_repr(self) -> str:
        smoothed = ", smoothed" if self.inv_smooth is not None else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, int8{smoothed}"


def quantize_int8(model: torch.nn.Module, calibrate: Callable[[], object] | None = None) -> torch.nn.Module:
    """Replace every Linear layer of ``model`` (in place) by an ``Int8DynamicLinear``; return the model.

    ``calibrate`` runs the fp32 model over some texts (``CALIBRATION_TEXTS``) so each layer's input range can be
    measured for smoothing; without it, layers are quantized unsmoothed.
    """
    absmax = _input_absmax(model, calibrate) if calibrate is not None else {}
    engines = torch.backends.quantized.supported_engines
    engine = next((e for e in ("onednn", "qnnpack") if e in engines), None)
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks its quantized tensors deprecated in favour of torchao
        try:
            if engine is not None:
                torch.backends.quantized.engine = engine  # weights are packed for this backend's kernels
            _swap_linears(model, engine is not None, absmax)
        finally:
            torch.backends.quantized.engine = previous
    return model


def _input_absmax(model: torch.nn.Module, calibrate: Callable[[], object]) -> dict[int, torch.Tensor]:
    """The largest absolute input per channel of each Linear layer fed straight by a normalisation layer
    (LayerNorm, RMSNorm), while ``calibrate`` runs, by module id.

    Those are the layers SmoothQuant smooths (attention's query/key/value, the first feed-forward layer): a norm's
    per-channel gains make the outlier channels. Smoothing the others as well costs a multiplication per call
    and, measured on all-MiniLM-L6-v2, gains no accuracy (mean cosine 0.995 against 0.996 without).
    """
    seen: dict[int, torch.Tensor] = {}
    recent: list[torch.Tensor] = []  # the last norm outputs, held so their identity cannot be reused

    def norm_output(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
        if isinstance(output, torch.Tensor):
            recent.append(output)
            del recent[:-2]

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _: object) -> None:
        x = inputs[0]
        if not any(x is out for out in recent):
            return
        top = x.detach().abs().reshape(-1, x.shape[-1]).amax(dim=0).float().cpu()
        key = id(module)
        seen[key] = torch.maximum(seen[key], top) if key in seen else top

    hooks = [
        m.register_forward_hook(norm_output) for m in model.modules() if "norm" in type(m).__name__.lower()
    ]
    hooks += [m.register_forward_hook(record) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        calibrate()
    finally:
        for hook in hooks:
            hook.remove()
        recent.clear()
    return seen


def _swap_linears(module: torch.nn.Module, full_range: bool, absmax: dict[int, torch.Tensor]) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, Int8DynamicLinear(child, full_range, absmax.get(id(child))))
        else:
            _swap_linears(child, full_range, absmax)


def linear_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes held by the weights of the model's Linear layers, float or int8."""
    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
        elif isinstance(module, Int8DynamicLinear):
            total += module.weight_bytes
    return total
