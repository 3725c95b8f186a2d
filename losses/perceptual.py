"""The perceptual term of the first stage (LPIPS, or ST-LPIPS offline), with its weights policy.

``backend`` picks the network: ``lpips`` (the default: LPIPS v0.1, as MOSO; needs the torchvision
ImageNet trunk file in ``$TORCH_HOME/hub/checkpoints``), ``st_lpips`` (the shift-tolerant
ST-LPIPS, whose pretrained weights ship in the pinned ``stlpips-pytorch`` wheel, so it always
works offline; see evaluation/st_lpips.py) or ``auto`` (LPIPS when its file is there, else
ST-LPIPS, said in a warning). ST-LPIPS is a departure from MOSO, so a config opts in; its loss
values are not LPIPS values.

``required: true`` (real-data configs): when no allowed backend has its weights, training stops
at start-up with a message naming the file(s), where they go, and the override that trains
without the term. Otherwise the run goes on and says loudly, once, that the perceptual term is off.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from einops import rearrange
from torch import nn

from evaluation.lpips_metric import backbone_url, build_lpips
from evaluation.st_lpips import build_st_lpips
from evaluation.weights import MissingWeightsError
from models.errors import ConfigError

BACKENDS = ("auto", "lpips", "st_lpips")


@dataclass
class PerceptualConfig:
    weight: float = 1.0  # 0 turns the term off
    net: str = "vgg"  # MOSO trains with LPIPS(VGG); evaluation defaults to AlexNet
    backend: str = "lpips"  # lpips | st_lpips | auto (lpips when its weights file is present, else st_lpips)
    required: bool = False  # true: no usable backend is an error rather than a warning
    frames: int = 4  # frames per clip scored (evenly spaced); LPIPS on every frame costs T backbone passes
    random_backbone: bool = False  # tests only: a randomly initialised LPIPS backbone, not real LPIPS

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"model.perceptual.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")


class PerceptualLoss(nn.Module):
    """Mean perceptual distance over ``frames`` evenly spaced frames of ``[B, C, T, H, W]`` clips.

    ``name`` is ``"lpips"`` or ``"st_lpips"`` (the key to log the term under); ``label`` says
    which network and weights it is.
    """

    def __init__(self, net: nn.Module, frames: int, name: str = "lpips") -> None:
        super().__init__()
        self.net = net
        self.frames = frames
        self.name = name
        self.label = getattr(net, "rsvp_label", name)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = pred.shape[2]
        idx = torch.linspace(0, t - 1, min(self.frames, t), device=pred.device).round().long()
        x = rearrange(pred.index_select(2, idx), "b c t h w -> (b t) c h w")
        y = rearrange(target.index_select(2, idx), "b c t h w -> (b t) c h w")
        return self.net(x.float(), y.float()).mean()


def _lpips_missing(cfg: PerceptualConfig, err: MissingWeightsError) -> str:
    path = err.path
    return (f"the LPIPS ({cfg.net}) backbone weights file '{path.name}' is not at {path}. Put it in "
            f"{path.parent}/ ($TORCH_HOME/hub/checkpoints; it is {backbone_url(cfg.net)}); "
            f"nothing is downloaded at run time.")


def _off(cfg: PerceptualConfig, missing: str) -> None:
    """No backend has weights: a start-up error when required, else a loud warning (None returned)."""
    if cfg.required:
        raise ConfigError(f"This config requires the perceptual loss, but {missing} To train without "
                          f"the perceptual term, add the override model.perceptual.weight=0")
    banner = "=" * 78
    warnings.warn(f"\n{banner}\nPERCEPTUAL LOSS IS OFF: {missing}\nTraining continues with "
                  f"L1 + commitment only; reconstructions will be blurrier.\n{banner}", stacklevel=3)


def build_perceptual_loss(cfg: PerceptualConfig, device: torch.device | str = "cpu") -> Optional[PerceptualLoss]:
    """The perceptual loss, or None when it is off (weight 0, or no weights and not required)."""
    if cfg.weight <= 0:
        return None
    if cfg.random_backbone:
        warnings.warn("perceptual loss uses a RANDOMLY INITIALISED LPIPS backbone (test setting): "
                      "it is not LPIPS", stacklevel=2)
        return PerceptualLoss(build_lpips(cfg.net, device, force_random=True), cfg.frames)
    lpips_missing = ""
    if cfg.backend in ("auto", "lpips"):
        try:
            return PerceptualLoss(build_lpips(cfg.net, device), cfg.frames, "lpips")
        except MissingWeightsError as err:
            lpips_missing = _lpips_missing(cfg, err)
        if cfg.backend == "lpips":
            _off(cfg, f"{lpips_missing} (model.perceptual.backend=st_lpips or auto would use ST-LPIPS, "
                      f"whose weights ship in the stlpips-pytorch wheel.)")
            return None
    try:
        net = build_st_lpips(cfg.net, device)
    except MissingWeightsError as err:
        _off(cfg, f"{lpips_missing} {err}".strip())
        return None
    if lpips_missing:
        warnings.warn(f"perceptual loss: using ST-LPIPS ({cfg.net}), not LPIPS, because {lpips_missing} "
                      f"ST-LPIPS is the shift-tolerant LPIPS variant, from the weights in the stlpips-pytorch "
                      f"wheel; its values are not LPIPS values. model.perceptual.backend=lpips insists on LPIPS.",
                      stacklevel=2)
    return PerceptualLoss(net, cfg.frames, "st_lpips")
