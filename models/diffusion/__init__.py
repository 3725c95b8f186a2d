"""Latent DDPM core of the second stage: schedules, training loss, guided sampling.

Usage::

    diffusion = build_diffusion(cfg.model.diffusion).to(device)
    out = diffusion.training_loss(model_fn, x0, cond, generator=g)       # out["loss"]
    x0 = diffusion.sample(model_fn, x0.shape, cond, generator=g, device=device)

where ``model_fn(x_t, t, cond, cond_mask) -> Tensor`` (see :mod:`models.diffusion.gaussian`).
"""
from .config import DiffusionConfig, validate_diffusion_config
from .gaussian import GaussianDiffusion, build_diffusion
from .guidance import GuidedDenoiser
from .samplers import build_scheduler, sampling_timesteps
from .schedule import make_betas

__all__ = [
    "DiffusionConfig",
    "GaussianDiffusion",
    "GuidedDenoiser",
    "build_diffusion",
    "build_scheduler",
    "make_betas",
    "sampling_timesteps",
    "validate_diffusion_config",
]
