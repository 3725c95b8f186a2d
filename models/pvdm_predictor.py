"""PVDM as a :class:`models.interface.Predictor`: the latent space of its projected autoencoder and
the prediction protocol.

Condition: the latent of the pseudo-clip of the observed frames (as for RSVP: the last observed
frame held to fill a clip), which plays the role of PVDM's previous-clip latent ``z_0^{l-1}``.
Target: the latent of the next ``T`` frames. Both are divided by a scale factor measured on
training latents (unit standard deviation, as for RSVP; PVDM diffuses its tanh-bounded latents
unscaled). A prediction samples the future latent with the condition and decodes it.

Rollout beyond one clip (:func:`models.interface.rollout`): each next clip is conditioned on the
pseudo-clip of the latest ``K`` frames, observed or predicted, as the model was trained. PVDM's
Algorithm 1 conditions clip ``l`` on the full sampled latent of clip ``l - 1``; that needs a model
trained on pairs of whole clips, which the ``K``-observed protocol shared by every method here
does not give (docs/PVDM.md).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from models.diffusion import GaussianDiffusion
from models.interface import pseudo_clip
from models.latent_space import ScaledLatentSpace
from models.pvdm_autoencoder import PVDMAutoencoder


class PlaneLatentSpace(ScaledLatentSpace):
    """Frozen PVDM autoencoder + scale: observed frames -> condition, future frames -> target, both ``[B, E, N]``."""

    first_stage: PVDMAutoencoder

    @torch.no_grad()
    def latent(self, clip: torch.Tensor) -> torch.Tensor:
        """Unscaled latent of a ``T``-frame clip."""
        return self.first_stage.encode_latent(clip)

    @torch.no_grad()
    def fit_scale(self, clips: list[torch.Tensor]) -> float:
        """Set the scale to the standard deviation of the latents of ``clips``; returns it."""
        return self.fit_scale_to_codes([self.latent(clip) for clip in clips])

    @torch.no_grad()
    def condition(self, observed: torch.Tensor) -> torch.Tensor:
        """Scaled latent of the pseudo-clip of the observed frames ``[B, C, K, H, W]`` (nothing else is read)."""
        return self.latent(pseudo_clip(observed, self.frames)) / self._require_scale()

    @torch.no_grad()
    def target(self, future: torch.Tensor) -> torch.Tensor:
        """Scaled latent of the future clip ``[B, C, T, H, W]`` (the diffusion's x0)."""
        if future.shape[2] != self.frames:
            raise ValueError(f"the future clip has {future.shape[2]} frames; the first stage encodes {self.frames}")
        return self.latent(future) / self._require_scale()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, 3, T, H, W]`` of a scaled latent."""
        return self.first_stage.decode(latent * self._require_scale()).clamp(-1, 1)


class PVDMPredictor:
    """A plane latent space, a diffusion and the plane U-Net (``net``, eval mode for sampling).

    ``w``: PVDM's guidance weight, ``eps = (1 + w) eps(z, cond) - w eps(z, 0)``; the sampling
    option ``guidance`` (``validate.py --guidance``) is ``1 + w`` and overrides it."""

    def __init__(self, space: PlaneLatentSpace, diffusion: GaussianDiffusion, net: nn.Module,
                 cond_frames: int, w: float = 0.0) -> None:
        self.space, self.diffusion, self.net = space, diffusion, net
        self.frames, self.cond_frames = space.frames, int(cond_frames)
        self.resolution = space.first_stage.resolution
        self.w = float(w)

    def _options(self, sample_options: dict[str, Any]) -> dict[str, Any]:
        if sample_options.get("snap"):
            raise ValueError("snapping to a codebook does not apply to PVDM's continuous latents")
        options = {k: v for k, v in sample_options.items() if k != "snap"}
        options.setdefault("guidance", 1.0 + self.w)
        return options

    @torch.no_grad()
    def predict(self, observed: torch.Tensor, generator: Optional[torch.Generator] = None,
                **sample_options: Any) -> torch.Tensor:
        """Frames ``[B, 3, T, H, W]`` following the observed ones (one clip); ``sample_options``:
        the diffusion's ``sampler``, ``steps``, ``guidance``."""
        cond = self.space.condition(observed)
        latent = self.diffusion.sample(self.net, tuple(cond.shape), cond, generator=generator,
                                       device=observed.device, **self._options(sample_options))
        return self.space.decode(latent)

    @torch.no_grad()
    def reconstruct(self, observed: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """The true future clip through the autoencoder (it does not depend on the observed frames)."""
        return self.space.decode(self.space.target(future))

    def settings(self, **sample_options: Any) -> dict[str, Any]:
        return {"pvdm_w": self.w, **self._options(sample_options)}
