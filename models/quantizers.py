"""Quantizers for the first stage: EMA vector quantization and finite scalar quantization (FSQ).

Both wrap ``vector-quantize-pytorch`` (pinned in requirements.txt) with every behaviour-changing
option set explicitly, since the library's defaults are not MOSO's (its EMA decay defaults to
0.8 and it uses the rotation trick instead of the straight-through estimator). Every quantizer
takes tokens ``[B, N, D]`` and returns ``(quantized, indices, loss)``, and maps indices back to
code vectors with :meth:`codes_from_indices`.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch._subclasses.fake_tensor import unset_fake_temporarily
from vector_quantize_pytorch import FSQ, VectorQuantize


class UsageTracker(nn.Module):
    """Codebook usage statistics: batch perplexity and codes unused for ``window`` updates."""

    def __init__(self, codebook_size: int, window: int = 100) -> None:
        super().__init__()
        self.window = window
        self.register_buffer("steps_since_used", torch.zeros(codebook_size, dtype=torch.long), persistent=False)

    def _counts(self, indices: torch.Tensor) -> torch.Tensor:
        # index_add_ rather than bincount: a fixed output shape (fine for torch.compile and fake tensors).
        flat = indices.flatten().long()
        counts = torch.zeros(self.steps_since_used.numel(), device=flat.device)
        return counts.index_add_(0, flat, torch.ones_like(flat, dtype=counts.dtype))

    @torch.no_grad()
    def update(self, indices: torch.Tensor) -> None:
        self.steps_since_used.add_(1).masked_fill_(self._counts(indices) > 0, 0)

    @torch.no_grad()
    def stats(self, indices: torch.Tensor) -> dict[str, float]:
        counts = self._counts(indices)
        probs = counts / counts.sum().clamp(min=1)
        entropy = -(probs * torch.log(probs.clamp(min=1e-10))).sum()
        return {
            "perplexity": float(entropy.exp()),
            "used_codes": int((counts > 0).sum()),
            "dead_codes": int((self.steps_since_used >= self.window).sum()),
        }


class EMAVectorQuantizer(nn.Module):
    """VQ with an EMA-updated codebook, commitment loss and dead-code restarts.

    A code whose EMA cluster size falls below ``dead_code_threshold`` is replaced by a random
    encoder output of the current batch (done by the library during training forward passes).
    """

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, commitment: float = 0.25,
                 dead_code_threshold: float = 1.0, kmeans_init: bool = False) -> None:
        super().__init__()
        self.dim, self.codebook_size = dim, codebook_size
        self.vq = VectorQuantize(
            dim=dim, codebook_size=codebook_size, decay=decay, commitment_weight=commitment,
            threshold_ema_dead_code=dead_code_threshold, kmeans_init=kmeans_init,
            rotation_trick=False, straight_through=False, use_cosine_sim=False,
            learnable_codebook=False, ema_update=True, stochastic_sample_codes=False,
        )
        self.usage = UsageTracker(codebook_size)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # The codebook statistics are kept in float32 whatever the autocast context.
        with torch.autocast(tokens.device.type, enabled=False):
            quantized, indices, loss = self.vq(tokens.float())
        if self.training:
            self.usage.update(indices)
        return quantized, indices, loss

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.vq.get_output_from_indices(indices.long())

    @property
    def codebook(self) -> torch.Tensor:
        return self.vq.codebook


class FSQuantizer(nn.Module):
    """Finite scalar quantization (Mentzer et al. 2023): no codebook to collapse, no auxiliary loss.

    ``levels`` fixes the implicit codebook (its size is their product); tokens of width ``dim``
    are projected to ``len(levels)`` channels, rounded per channel, and projected back.
    """

    def __init__(self, dim: int, levels: list[int]) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_size = math.prod(levels)
        # FSQ builds its implicit codebook from a tensor's value (.item()), which the fake tensors of
        # scripts/measure_memory.py do not hold: its few small buffers are made as real tensors.
        with unset_fake_temporarily():
            self.fsq = FSQ(levels=list(levels), dim=dim)
        self.usage = UsageTracker(self.codebook_size)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.autocast(tokens.device.type, enabled=False):
            quantized, indices = self.fsq(tokens.float())
        if self.training:
            self.usage.update(indices)
        return quantized, indices.long(), tokens.new_zeros(())

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.fsq.indices_to_codes(indices.int())


def build_quantizer(kind: str, dim: int, codebook_size: int, **options) -> nn.Module:
    if kind == "vq":
        return EMAVectorQuantizer(dim, codebook_size, **{k: options[k] for k in
                                                          ("decay", "commitment", "dead_code_threshold", "kmeans_init")
                                                          if k in options})
    if kind == "fsq":
        return FSQuantizer(dim, options["fsq_levels"])
    raise ValueError(f"unknown quantizer '{kind}' (choose vq or fsq)")
