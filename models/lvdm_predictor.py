"""LVDM as a :class:`models.interface.Predictor`: its 3D latent space, conditioning, and long rollouts.

Latents. The observed frames and the future clip are encoded separately (the autoencoder is fully
convolutional in time), so the condition is computed from the observed frames alone: ``K``
observed frames give ``c = K / ft`` latent frames, the ``T`` future frames ``n = T / ft``. Both are
divided by the standard deviation of training latents (LVDM: a fixed scale and shift).

Window. The denoiser sees ``c + n`` latent frames: the first ``c`` known (the condition, perturbed
to level ``s``: :func:`~models.unets.lvdm_unet.perturb`), the rest generated. One model is
conditional and unconditional (:func:`~models.unets.lvdm_unet.lvdm_training_loss`), so the
sampling option ``guidance`` is classifier-free guidance, ``uncond + g (cond - uncond)``, and
``perturb`` the level ``s`` the condition is noised to at sampling (LVDM's fixed small level).

Long rollouts. Key stride 1: :func:`models.interface.rollout` clip by clip, each clip conditioned
on the latest ``K`` frames, as every method here. Key stride ``r > 1`` (a keyframe model) with an
interpolation model: :class:`HierarchicalPredictor`, LVDM's hierarchy in latent space
(:mod:`models.lvdm_hierarchy`), decoded once at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from models.diffusion import GaussianDiffusion
from models.lvdm_autoencoder import LVDMAutoencoder
from models.lvdm_hierarchy import hierarchical_fill
from models.pvdm_predictor import PlaneLatentSpace
from models.unets.lvdm_unet import perturb

ROLES = ("predict", "interpolate")


@dataclass
class LVDMObjectiveConfig:
    """``model.lvdm`` of a second-stage config: what the model learns and how it samples."""

    # predict: the c observed latents -> the next latents; interpolate: the latents between two.
    role: str = "predict"
    # predict: 1 = the next n latent frames; r > 1 = n keyframes r latent frames apart (the hierarchy's
    # first level). interpolate: fills the r - 1 latents between two keyframes.
    key_stride: int = 1
    cond_prob: float = 0.5  # share of conditional training samples (LVDM: p_pred 0.5, p_interp 0.9)
    max_perturb: int = 250  # training perturbation levels s ~ U{0..max_perturb}, 0 = clean (LVDM: 250 of 1000)
    sample_perturb: int = 100  # the level at sampling (LVDM's long-video script: 100); 0 = clean condition
    # A keyframe model's interpolation checkpoint (--exp ddpm, role interpolate, same key_stride):
    # with it, predictions and rollouts use the hierarchy.
    interpolator: Optional[str] = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"model.lvdm.role must be one of {', '.join(ROLES)}; got {self.role!r}")
        if self.key_stride < 1 or (self.role == "interpolate" and self.key_stride < 2):
            raise ValueError(f"model.lvdm.key_stride must be >= 1 (>= 2 to interpolate); got {self.key_stride}")
        if not 0.0 <= self.cond_prob <= 1.0:
            raise ValueError(f"model.lvdm.cond_prob must be in [0, 1]; got {self.cond_prob}")
        if not 0 <= self.sample_perturb <= self.max_perturb:
            raise ValueError(f"model.lvdm.sample_perturb must be in [0, max_perturb={self.max_perturb}]; "
                             f"got {self.sample_perturb}")


class VideoLatentSpace(PlaneLatentSpace):
    """Frozen LVDM autoencoder + scale: frames of any length ``ft`` divides <-> ``[B, E, T/ft, h, w]``."""

    first_stage: LVDMAutoencoder

    @property
    def time_factor(self) -> int:
        return self.first_stage.factors[0]

    @torch.no_grad()
    def condition(self, observed: torch.Tensor) -> torch.Tensor:
        """Scaled latents of the observed frames ``[B, 3, K, H, W]`` alone."""
        return self.target(observed)

    @torch.no_grad()
    def target(self, frames: torch.Tensor) -> torch.Tensor:
        """Scaled latents of consecutive frames ``[B, 3, T, H, W]`` (``ft`` divides ``T``)."""
        if frames.shape[2] % self.time_factor:
            raise ValueError(f"{frames.shape[2]} frames cannot be encoded: the autoencoder takes multiples of "
                             f"{self.time_factor} frames")
        return self.latent(frames) / self._require_scale()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Frames of scaled latents, decoded in chunks of the autoencoder's clip length (as trained)."""
        chunk = self.frames // self.time_factor
        scale = self._require_scale()
        return torch.cat([self.first_stage.decode(part * scale) for part in latent.split(chunk, dim=2)],
                         dim=2).clamp(-1, 1)


class LVDMPredictor:
    """A video latent space, a diffusion and the LVDM U-Net (``net``, eval mode for sampling)."""

    def __init__(self, space: VideoLatentSpace, diffusion: GaussianDiffusion, net: nn.Module, cond_frames: int,
                 objective: LVDMObjectiveConfig) -> None:
        self.space, self.diffusion, self.net, self.objective = space, diffusion, net, objective
        self.frames, self.cond_frames = space.frames, int(cond_frames)
        self.resolution = space.first_stage.resolution
        ft = space.time_factor
        if self.cond_frames % ft or self.frames % ft:
            raise ValueError(f"cond_frames ({self.cond_frames}) and the clip length ({self.frames}) must be "
                             f"multiples of the autoencoder's time factor {ft}")
        self.context, self.generated = self.cond_frames // ft, self.frames // ft  # c, n latent frames

    def _options(self, sample_options: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(the perturbation level, the diffusion's sampling options)."""
        if sample_options.get("snap"):
            raise ValueError("snapping to a codebook does not apply to LVDM's continuous latents")
        options = {k: v for k, v in sample_options.items() if k not in ("snap", "perturb")}
        level = int(sample_options.get("perturb", self.objective.sample_perturb))
        if not 0 <= level <= self.objective.max_perturb:
            raise ValueError(f"perturb must be in [0, {self.objective.max_perturb}] (the levels it was trained on); "
                             f"got {level}")
        return level, options

    @torch.no_grad()
    def sample_window(self, given: torch.Tensor, positions: list[int], length: int, generator: torch.Generator,
                      **sample_options: Any) -> torch.Tensor:
        """A window of ``length`` latent frames whose frames at ``positions`` are ``given`` (clean,
        ``[B, E, len(positions), h, w]``; perturbed here: its noise is drawn first from ``generator``)."""
        level, options = self._options(sample_options)
        b, device = given.shape[0], given.device
        noise = torch.randn(given.shape, generator=generator, device=generator.device).to(device)
        levels = torch.full((b,), level, dtype=torch.long, device=device)
        shape = (b, given.shape[1], length, *given.shape[3:])
        latent = torch.zeros(shape, device=device)
        latent[:, :, positions] = perturb(self.diffusion, given.float(), levels, noise)
        known = torch.zeros(b, length, dtype=torch.bool, device=device)
        known[:, positions] = True
        cond = {"latent": latent, "known": known, "level": levels}
        return self.diffusion.sample(self.net, shape, cond, generator=generator, device=device, **options)

    @torch.no_grad()
    def predict_latents(self, context: torch.Tensor, generator: torch.Generator, **sample_options: Any) -> torch.Tensor:
        """``[B, E, c, h, w]`` condition latents -> the ``n`` latents that follow (keyframes for ``key_stride > 1``)."""
        if self.objective.role != "predict":
            raise ValueError("an interpolation model fills between keyframes; predict with the keyframe model "
                             "whose model.lvdm.interpolator names it")
        window = self.sample_window(context, list(range(self.context)), self.context + self.generated, generator,
                                    **sample_options)
        return window[:, :, self.context:]

    @torch.no_grad()
    def interpolate(self, left: torch.Tensor, right: torch.Tensor, generator: torch.Generator,
                    **sample_options: Any) -> torch.Tensor:
        """The ``key_stride - 1`` latents between ``left`` and ``right`` (``[B, E, 1, h, w]`` each)."""
        if self.objective.role != "interpolate":
            raise ValueError("interpolate() needs a model trained with model.lvdm.role: interpolate")
        length = self.objective.key_stride + 1
        window = self.sample_window(torch.cat([left, right], dim=2), [0, length - 1], length, generator,
                                    **sample_options)
        return window[:, :, 1:-1]

    @torch.no_grad()
    def predict(self, observed: torch.Tensor, generator: Optional[torch.Generator] = None,
                **sample_options: Any) -> torch.Tensor:
        """Frames ``[B, 3, T, H, W]`` following the observed ones; ``sample_options``: the diffusion's
        ``sampler``, ``steps``, ``guidance``, and ``perturb`` (the condition's level)."""
        if self.objective.key_stride > 1:
            raise ValueError("a keyframe model (key_stride > 1) predicts through its interpolator: set "
                             "model.lvdm.interpolator")
        return self.space.decode(self.predict_latents(self.space.condition(observed), generator, **sample_options))

    @torch.no_grad()
    def reconstruct(self, observed: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """The true future clip through the autoencoder (it does not depend on the observed frames)."""
        return self.space.decode(self.space.target(future))

    def settings(self, **sample_options: Any) -> dict[str, Any]:
        level, options = self._options(sample_options)
        return {"lvdm_role": self.objective.role, "lvdm_key_stride": self.objective.key_stride,
                "lvdm_perturb": level, "hierarchy": False, **options}


class HierarchicalPredictor:
    """LVDM's hierarchy: a keyframe model (``key_stride`` r) and an interpolation model with the
    same first stage and stride. ``rollout`` fills any horizon (:func:`hierarchical_fill`) in latent
    space; ``predict`` is its first clip. :func:`models.interface.rollout` delegates to ``rollout``."""

    def __init__(self, keys: LVDMPredictor, interpolator: LVDMPredictor) -> None:
        if keys.objective.role != "predict" or interpolator.objective.role != "interpolate":
            raise ValueError("the hierarchy needs a role: predict keyframe model and a role: interpolate model")
        if keys.objective.key_stride != interpolator.objective.key_stride:
            raise ValueError(f"key_stride differs: keyframes {keys.objective.key_stride}, interpolator "
                             f"{interpolator.objective.key_stride}")
        if keys.space.first_stage.cfg != interpolator.space.first_stage.cfg:
            raise ValueError("the keyframe and interpolation models were trained on different first stages")
        self.keys, self.interpolator = keys, interpolator
        self.stride = keys.objective.key_stride
        self.frames, self.cond_frames, self.resolution = keys.frames, keys.cond_frames, keys.resolution

    @torch.no_grad()
    def rollout(self, observed: torch.Tensor, pred_frames: int, generator: torch.Generator,
                **sample_options: Any) -> torch.Tensor:
        """``pred_frames`` frames after the last ``K`` observed ones, through the hierarchy."""
        ft = self.keys.space.time_factor
        # Each model's latents are divided by its own scale; convert keyframes into the interpolator's.
        ratio = self.keys.space.scale / self.interpolator.space.scale
        latents = hierarchical_fill(
            self.keys.space.condition(observed[:, :, -self.cond_frames:]), -(-pred_frames // ft), self.stride,
            self.keys.generated,
            lambda context: self.keys.predict_latents(context, generator, **sample_options),
            lambda left, right: self.interpolator.interpolate(left * ratio, right * ratio, generator,
                                                              **sample_options) / ratio)
        return self.keys.space.decode(latents)[:, :, :pred_frames]

    @torch.no_grad()
    def predict(self, observed: torch.Tensor, generator: Optional[torch.Generator] = None,
                **sample_options: Any) -> torch.Tensor:
        return self.rollout(observed, self.frames, generator, **sample_options)

    @torch.no_grad()
    def reconstruct(self, observed: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        return self.keys.reconstruct(observed, future)

    def settings(self, **sample_options: Any) -> dict[str, Any]:
        return {**self.keys.settings(**sample_options), "hierarchy": True,
                "interpolator": self.keys.objective.interpolator}
