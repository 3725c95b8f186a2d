"""The LPIPS perceptual term of the first stage, with its weights policy.

Real-data configs set ``required: true``: missing backbone weights stop training at start-up
with a message naming the file, where it goes, and the override that trains without the term.
The built-in-data configs run offline out of the box: without the weights they say loudly,
once, that the perceptual term is off.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from einops import rearrange
from torch import nn

from evaluation.lpips_metric import backbone_url, build_lpips
from evaluation.weights import MissingWeightsError
from tools.config import ConfigError


@dataclass
class PerceptualConfig:
    weight: float = 1.0  # 0 turns the term off
    net: str = "vgg"  # MOSO trains with LPIPS(VGG); evaluation defaults to AlexNet
    required: bool = False  # true: missing weights are an error rather than a warning
    frames: int = 4  # frames per clip scored (evenly spaced); LPIPS on every frame costs T backbone passes
    random_backbone: bool = False  # tests only: a randomly initialised backbone, not real LPIPS


class PerceptualLoss(nn.Module):
    """Mean LPIPS over ``frames`` evenly spaced frames of ``[B, C, T, H, W]`` clips."""

    def __init__(self, lpips_net: nn.Module, frames: int) -> None:
        super().__init__()
        self.lpips = lpips_net
        self.frames = frames

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = pred.shape[2]
        idx = torch.linspace(0, t - 1, min(self.frames, t), device=pred.device).round().long()
        x = rearrange(pred.index_select(2, idx), "b c t h w -> (b t) c h w")
        y = rearrange(target.index_select(2, idx), "b c t h w -> (b t) c h w")
        return self.lpips(x.float(), y.float()).mean()


def build_perceptual_loss(cfg: PerceptualConfig, device: torch.device | str = "cpu") -> Optional[PerceptualLoss]:
    """The perceptual loss, or None when it is off (weight 0, or weights absent and not required)."""
    if cfg.weight <= 0:
        return None
    if cfg.random_backbone:
        warnings.warn("perceptual loss uses a RANDOMLY INITIALISED LPIPS backbone (test setting): "
                      "it is not LPIPS", stacklevel=2)
        return PerceptualLoss(build_lpips(cfg.net, device, force_random=True), cfg.frames)
    try:
        return PerceptualLoss(build_lpips(cfg.net, device), cfg.frames)
    except MissingWeightsError as err:
        path = err.path
        missing = (f"the LPIPS ({cfg.net}) backbone weights file '{path.name}' is not at {path}. Put it in "
                   f"{path.parent}/ ($TORCH_HOME/hub/checkpoints; it is {backbone_url(cfg.net)}); "
                   f"nothing is downloaded at run time.")
        if cfg.required:
            raise ConfigError(f"This config requires the perceptual loss, but {missing} To train without "
                              f"the perceptual term, add the override model.perceptual.weight=0") from None
        banner = "=" * 78
        warnings.warn(f"\n{banner}\nPERCEPTUAL (LPIPS) LOSS IS OFF: {missing}\nTraining continues with "
                      f"L1 + commitment only; reconstructions will be blurrier.\n{banner}", stacklevel=2)
        return None
