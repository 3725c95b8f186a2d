"""Memory formats of a network's weights: channels-last for training (``train.channels_last``) and
for every network that only runs inference (first stages, a loaded predictor's denoiser).

Convolutions follow their weights: channels-last weights make oneDNN (CPU) and cuDNN produce
channels-last activations, so the layout only has to be set on the weights. Values and state
dicts are unchanged (a state dict of channels-last weights loads into a plain module and back).
"""
from __future__ import annotations

import torch
from torch import nn

# dim -> format; ``Module.to(memory_format=...)`` takes one format for both ranks and fails on the other.
CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}

# Inference layout. CPU, measured (docs/BENCHMARKS.md, issue 17): the first stage's encode/decode and
# the batch-1 3D denoiser (with models/fast_conv.py) are faster channels-last at equal outputs.
# CUDA: not measured yet (no GPU lent); channels-last is what cuDNN's tensor-core kernels use
# under the default bf16 autocast, so it is the default there too until a GPU run says otherwise.
INFERENCE_LAYOUT = "channels_last"


def to_memory_format(module: nn.Module, layout: str = "channels_last") -> nn.Module:
    """Store ``module``'s 4-D and 5-D parameters/buffers ``channels_last`` (2D: channels_last,
    3D: channels_last_3d) or ``contiguous``, in place; returns ``module``."""
    if layout not in ("channels_last", "contiguous"):
        raise ValueError(f"layout must be channels_last or contiguous, got {layout!r}")
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.dim() in CHANNELS_LAST:
                fmt = CHANNELS_LAST[tensor.dim()] if layout == "channels_last" else torch.contiguous_format
                tensor.data = tensor.data.contiguous(memory_format=fmt)
    return module


def to_channels_last(module: nn.Module) -> nn.Module:
    """``to_memory_format(module, "channels_last")``."""
    return to_memory_format(module, "channels_last")


def for_inference(module: nn.Module) -> nn.Module:
    """``module`` in the layout its inference runs fastest in (``INFERENCE_LAYOUT``), in place; for
    networks that are not trained any further (a first stage, a loaded denoiser)."""
    return to_memory_format(module, INFERENCE_LAYOUT)
