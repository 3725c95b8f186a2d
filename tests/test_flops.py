"""tools/flops.py: FLOP counts on the CPU equal analytic counts, attention included."""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from tools.flops import flop_counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

aten = torch.ops.aten
CPU_SDPA = aten._scaled_dot_product_flash_attention_for_cpu
CPU_SDPA_BACKWARD = aten._scaled_dot_product_flash_attention_for_cpu_backward


def attention_inputs(b=2, h=3, s_q=5, s_k=7, d=4, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(b, h, s, d, generator=g, requires_grad=requires_grad) for s in (s_q, s_k, s_k)]


def test_cpu_sdpa_forward_counts_both_products():
    b, h, s_q, s_k, d = 2, 3, 5, 7, 4
    with flop_counter() as counter:
        F.scaled_dot_product_attention(*attention_inputs(b, h, s_q, s_k, d))
    # Q K^T (2 b h s_q s_k d) + P V (2 b h s_q s_k d), torch's convention for the CUDA kernels
    assert counter.get_total_flops() == 4 * b * h * s_q * s_k * d
    assert counter.get_flop_counts()["Global"] == {CPU_SDPA: 4 * b * h * s_q * s_k * d}


def test_cpu_sdpa_backward_is_two_and_a_half_forwards():
    b, h, s_q, s_k, d = 2, 3, 5, 7, 4
    q, k, v = attention_inputs(b, h, s_q, s_k, d, requires_grad=True)
    with flop_counter() as counter:
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    forward = 4 * b * h * s_q * s_k * d
    assert counter.get_flop_counts()["Global"] == {CPU_SDPA: forward, CPU_SDPA_BACKWARD: 5 * forward // 2}


def test_cpu_sdpa_is_counted_on_fake_tensors():
    """scripts/estimate_time.py counts on fake tensors: the same kernel, the same count."""
    with FakeTensorMode(), flop_counter() as counter:
        q, k, v = (torch.empty(2, 3, s, 4) for s in (5, 7, 7))
        F.scaled_dot_product_attention(q, k, v)
    assert counter.get_flop_counts()["Global"] == {CPU_SDPA: 4 * 2 * 3 * 5 * 7 * 4}


class ConvAttention(nn.Module):
    """conv 3x3 -> tokens -> qkv linear -> multi-head attention -> output linear."""

    def __init__(self, c_in=3, c=8, heads=2):
        super().__init__()
        self.heads = heads
        self.conv = nn.Conv2d(c_in, c, 3, padding=1)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x):
        tokens = self.conv(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        b, n, c = tokens.shape
        q, k, v = (z.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
                   for z in self.qkv(tokens).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, C / heads]
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def test_small_model_forward_backward_equals_the_analytic_count():
    B, c_in, c, heads, H, W = 2, 3, 8, 2, 6, 5
    n, d = H * W, c // heads
    model = ConvAttention(c_in, c, heads)
    x = torch.randn(B, c_in, H, W, requires_grad=True)
    with flop_counter() as counter:
        model(x).sum().backward()
    conv = 2 * c_in * c * 3 * 3 * H * W * B  # 2 Cin Cout k k H W B (same padding: output H x W)
    qkv = 2 * (B * n) * c * (3 * c)  # 2 m k n
    proj = 2 * (B * n) * c * c
    attention = 2 * B * heads * n * n * d + 2 * B * heads * n * n * d  # Q K^T, P V
    forward = conv + qkv + proj + attention
    # backward: conv and linears grad-input + grad-weight (2x forward each), attention 2.5x
    backward = 2 * (conv + qkv + proj) + 5 * attention // 2
    assert counter.get_total_flops() == forward + backward
    counts = counter.get_flop_counts()["Global"]
    assert counts[CPU_SDPA] == attention and counts[CPU_SDPA_BACKWARD] == 5 * attention // 2
    assert counts[aten.convolution] + counts[aten.convolution_backward] == 3 * conv


def test_estimate_time_meter_counts_cpu_attention():
    from estimate_time import CostMeter

    with CostMeter() as meter:
        F.scaled_dot_product_attention(*attention_inputs(1, 2, 3, 3, 4))
    assert meter.cost().flops == 4 * 1 * 2 * 3 * 3 * 4


@pytest.mark.parametrize("is_causal", [False, True])
def test_masked_attention_counts_as_dense(is_causal):
    """Like torch's formulas, a causal call counts the dense products (an upper bound)."""
    with flop_counter() as counter:
        F.scaled_dot_product_attention(*attention_inputs(1, 2, 4, 4, 8), is_causal=is_causal)
    assert counter.get_total_flops() == 4 * 1 * 2 * 4 * 4 * 8
