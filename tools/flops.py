"""FLOP counting: ``torch.utils.flop_counter.FlopCounterMode`` plus the formulas it lacks.

torch's counter has formulas for the CUDA attention kernels (flash, memory-efficient, cuDNN) but
none for the kernel ``F.scaled_dot_product_attention`` runs on the CPU,
``aten._scaled_dot_product_flash_attention_for_cpu``, nor for its backward: on the CPU (real or
fake tensors) attention counted as zero FLOPs. The formulas here call torch's own attention
helpers, so the CPU kernel is counted by the same convention as the CUDA ones:

* forward: ``2*b*h*s_q*s_k*d`` for ``Q K^T`` plus ``2*b*h*s_q*s_k*d_v`` for ``P V``
  (``sdpa_flop_count``);
* backward: five such products (scores recomputed, dV, dP, dQ, dK), 2.5x the forward
  (``sdpa_backward_flop_count``).

``aten.mkldnn_convolution`` (oneDNN's convolution, which ``models/fast_conv.py`` calls directly for
fp32 CPU inputs; its backward is ``convolution_backward``, counted by torch) gets torch's
convolution formula.

Like torch's formulas they count the dense products only: no softmax, scaling or masking, and a
causal or masked call counts as unmasked. Every other operator the RSVP stages run that has no
formula does elementwise, normalisation, pooling or optimizer work, which torch's convention
leaves uncounted (tests/test_flops.py lists what was checked).
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """``_scaled_dot_product_flash_attention_for_cpu(query, key, value, ...)``."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                           **kwargs) -> int:
    """``_scaled_dot_product_flash_attention_for_cpu_backward(grad_out, query, key, value, ...)``."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def mkldnn_conv_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """``mkldnn_convolution(input, weight, bias, padding, stride, dilation, groups)``."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


# Operator packet -> formula over argument shapes (FlopCounterMode's ``custom_mapping`` format).
EXTRA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_sdpa_backward_flop,
    aten.mkldnn_convolution: mkldnn_conv_flop,
}


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts the operators of ``EXTRA_FORMULAS``; use it
    wherever FLOPs are counted (``with counter: ...``, then ``counter.get_total_flops()``)."""
    return FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
