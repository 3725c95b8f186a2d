"""3D convolutions that take oneDNN on the CPU at every batch size.

For an fp32 batch of 1 with small inputs (a denoiser's latents while sampling) PyTorch's CPU
heuristic picks its im2col kernel ``slow_conv3d`` instead of oneDNN, which it uses for larger
batches and under bf16 autocast. :class:`Conv3d` calls oneDNN (``aten.mkldnn_convolution``, the
kernel PyTorch itself dispatches to at batch >= 2) for every fp32 CPU input; a non-zero
``padding_mode`` (LVDM's autoencoder pads by replicating the border) pads first, as ``nn.Conv3d``
does, then convolves there unpadded. Same parameters and state dict as ``nn.Conv3d``; outputs equal to float tolerance; CUDA, other dtypes, autocast,
``torch.compile`` and tensor subclasses (fake tensors, which oneDNN cannot run) keep PyTorch's
own path; ``tools/flops.py`` counts the kernel's FLOPs. oneDNN is fastest with channels-last weights
(:mod:`models.memory_format`, applied to networks loaded for sampling). Measured in
docs/BENCHMARKS.md (issue 17).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

_enabled = True


def onednn_enabled() -> bool:
    """Whether :class:`Conv3d` routes fp32 CPU inputs to oneDNN (see :func:`plain_conv3d`)."""
    return _enabled


@contextlib.contextmanager
def plain_conv3d() -> Iterator[None]:
    """PyTorch's own kernel choice inside the block (the baseline ``scripts/bench.py`` times)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def takes_onednn(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a 3D convolution of ``input`` with ``weight`` is routed to oneDNN here."""
    return (_enabled and type(input) in (torch.Tensor, nn.Parameter) and input.device.type == "cpu" and input.dtype == torch.float32
            and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling())


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` whose fp32 CPU forward always runs oneDNN (module docstring)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if isinstance(self.padding, str) or not takes_onednn(input, weight):
            return super()._conv_forward(input, weight, bias)
        padding = self.padding
        if self.padding_mode != "zeros":  # what nn.Conv3d does for these modes
            input, padding = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode), (0, 0, 0)
        return torch.ops.aten.mkldnn_convolution(input, weight, bias, padding, self.stride, self.dilation, self.groups)
