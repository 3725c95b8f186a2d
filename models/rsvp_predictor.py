"""RSVP-S2/S1/M as a :class:`models.interface.Predictor`.

Observed frames -> the scene/object/motion codes of their pseudo-clip (the condition) -> the
denoiser samples the future motion codes -> decoded with the observed scene and object.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from models.diffusion import GaussianDiffusion
from models.latent_space import SemanticLatentSpace


class RSVPPredictor:
    """A latent space, a diffusion and its denoiser (``net``, in eval mode for sampling)."""

    def __init__(self, space: SemanticLatentSpace, diffusion: GaussianDiffusion, net: nn.Module,
                 cond_frames: int) -> None:
        self.space, self.diffusion, self.net = space, diffusion, net
        self.frames, self.cond_frames = space.frames, int(cond_frames)
        self.resolution = space.first_stage.resolution

    @torch.no_grad()
    def predict(self, observed: torch.Tensor, generator: Optional[torch.Generator] = None, *,
                snap: Optional[bool] = None, **sample_options: Any) -> torch.Tensor:
        """Frames ``[B, 3, T, H, W]`` following the observed ones (one clip). ``sample_options``:
        the diffusion's ``sampler``, ``steps``, ``guidance``; ``snap``: decode the sampled motion
        through its nearest codebook rows (default: the latent space's setting)."""
        cond = self.space.condition(observed)
        shape = (observed.shape[0], *cond["motion"].shape[1:])
        motion = self.diffusion.sample(self.net, shape, cond, generator=generator, device=observed.device,
                                       **sample_options)
        return self.space.decode(cond, motion, snap=snap)

    @torch.no_grad()
    def reconstruct(self, observed: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """The observed scene/object decoded with the true future motion."""
        return self.space.decode(self.space.condition(observed), self.space.target(future, observed))

    def settings(self, *, snap: Optional[bool] = None, **sample_options: Any) -> dict[str, Any]:
        return {"snap_to_codebook": self.space.snap_to_codebook if snap is None else bool(snap), **sample_options}
