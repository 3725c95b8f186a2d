"""Exponential moving average of a network's weights (and buffers), for sampling and evaluation.

Built on :class:`torch.optim.swa_utils.AveragedModel` with ``use_buffers=True``, so floating
buffers (BatchNorm statistics, EMA-updated VQ codebooks) are averaged like parameters and the
averaged copy is a complete network in :attr:`EMA.module`. One change from
``get_ema_multi_avg_fn``: integer buffers (``num_batches_tracked``, code-usage counters) are
*copied* from the model, because a lerp truncated back to an integer never moves.

The first :meth:`update` copies the model; later ones do ``ema = d * ema + (1 - d) * w`` with
``d = decay``, or with warm-up ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the usual
schedule: without it, at decay 0.999 the step-1 weights still weigh 22 % after 1500 steps).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_decay_at(decay: float, updates: int, warmup: bool) -> float:
    """The decay applied at the update that follows ``updates`` earlier ones."""
    return min(decay, (1 + updates) / (10 + updates)) if warmup else decay


def _ema_multi_avg_fn(decay: float, warmup: bool):
    @torch.no_grad()
    def update(ema_tensors: list[torch.Tensor], model_tensors: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        # AveragedModel groups tensors by (device, dtype), so one list has a single dtype.
        if ema_tensors[0].is_floating_point() or ema_tensors[0].is_complex():
            weight = 1.0 - ema_decay_at(decay, int(n_averaged), warmup)
            torch._foreach_lerp_(ema_tensors, model_tensors, weight)
        else:
            torch._foreach_copy_(ema_tensors, model_tensors)

    return update


class EMA(AveragedModel):
    """``EMA(net, decay)``; call :meth:`update` with the *unwrapped* net after each training step."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        super().__init__(model, multi_avg_fn=_ema_multi_avg_fn(decay, warmup), use_buffers=True)
        self.decay = decay
        self.module.requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        self.update_parameters(model)

    @property
    def num_updates(self) -> int:
        return int(self.n_averaged.item())

    def weights(self) -> dict[str, torch.Tensor]:
        """The averaged network's state dict (same keys as the source network's)."""
        return self.module.state_dict()

    def load_weights(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        self.module.load_state_dict(state)
        self.n_averaged.fill_(num_updates)
