"""Pixel reconstruction losses on videos ``[B, C, T, H, W]``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

RECONSTRUCTION_KINDS = ("l1", "mse", "l1+mse")


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean per-element ``l1``, ``mse`` or their sum ``l1+mse``, computed in float32."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    pred, target = pred.float(), target.float()
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "l1+mse":
        return F.l1_loss(pred, target) + F.mse_loss(pred, target)
    raise ValueError(f"unknown reconstruction loss '{kind}': expected one of {', '.join(RECONSTRUCTION_KINDS)}")
