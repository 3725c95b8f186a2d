"""Gaussian diffusion over latents: forward process, training loss and sampling.

Forward process (closed form): ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``, t in
[0, N-1], ``abar_t = prod_{s<=t} (1 - beta_s)``. The denoiser predicts either

- eps: the noise, ``x_t = sqrt(abar) x0 + sqrt(1-abar) eps``, or
- v:   ``v = sqrt(abar) eps - sqrt(1-abar) x0`` (Salimans & Ho 2022; diffusers' "v_prediction"),
  so ``x0 = sqrt(abar) x_t - sqrt(1-abar) v`` and ``eps = sqrt(1-abar) x_t + sqrt(abar) v``.

The denoiser contract is ``model_fn(x_t, t, cond, cond_mask) -> Tensor`` shaped like x_t, with
t int64 ``[B]`` and cond_mask bool ``[B]`` (False: ignore the conditioning of that sample).
``cond`` is passed through untouched; this module never looks inside it (except to stack it
for guidance, see :mod:`models.diffusion.guidance`).

Randomness comes only from the ``generator`` arguments: ``sample`` requires one and never
touches the global RNG, so its seed alone fixes the output.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from models.errors import ConfigError

from .config import SAMPLERS, DiffusionConfig, validate_diffusion_config
from .guidance import GuidedDenoiser, ModelFn, checked_output
from .samplers import build_scheduler, initial_noise, run_sampler, sampling_timesteps
from .schedule import make_betas

TimeArg = int | torch.Tensor


class GaussianDiffusion(nn.Module):
    """Schedules (float32 buffers, computed in float64) plus the training and sampling procedures.

    The buffers are not persistent (the config defines them), so they are absent from state
    dicts but follow ``.to(device)``: ``betas``, ``alphas_cumprod``, ``sqrt_alphas_cumprod``,
    ``sqrt_one_minus_alphas_cumprod``, each ``[N]``.
    """

    def __init__(self, cfg: Optional[DiffusionConfig] = None) -> None:
        super().__init__()
        cfg = dataclasses.replace(cfg) if cfg is not None else DiffusionConfig()
        validate_diffusion_config(cfg)
        self.cfg = cfg
        betas = make_betas(cfg.schedule, cfg.num_timesteps, cfg.beta_start, cfg.beta_end)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self._betas64 = betas  # CPU float64, handed to the diffusers schedulers
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        self.register_buffer("sqrt_alphas_cumprod", alphas_cumprod.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus_alphas_cumprod", (1.0 - alphas_cumprod).sqrt().float(), persistent=False)

    @property
    def num_timesteps(self) -> int:
        return self.cfg.num_timesteps

    @property
    def prediction(self) -> str:
        return self.cfg.prediction

    def extra_repr(self) -> str:
        c = self.cfg
        return f"N={c.num_timesteps}, schedule={c.schedule}, prediction={c.prediction}, sampler={c.sampler}"

    # ----------------------------------------------------------------- coefficients
    def timesteps_for(self, t: TimeArg, x: torch.Tensor) -> torch.Tensor:
        """Validate t (an int, or an integer tensor ``[B]`` in [0, N-1]) and return it as int64 ``[B]``.

        Reads the values back to check the range (a device sync on GPU); the training loss only
        does so for timesteps the caller passes in, never for the ones it draws.
        """
        if isinstance(t, int):
            t = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)
        if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.ndim != 1 or len(t) != len(x):
            raise ValueError(f"t must be an int or an integer tensor [B={x.shape[0]}]; got {t!r:.80}")
        if int(t.min()) < 0 or int(t.max()) >= self.num_timesteps:
            raise ValueError(f"timesteps must be in [0, {self.num_timesteps - 1}]; got {int(t.min())}..{int(t.max())}")
        return t.to(torch.int64)

    def _ab(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(abar_t), sqrt(1 - abar_t)) as ``[B, 1, ..., 1]`` in x's dtype/device (t already valid)."""
        shape = (-1,) + (1,) * (x.ndim - 1)
        t = t.to(self.alphas_cumprod.device)
        return tuple(buf[t].to(device=x.device, dtype=x.dtype).reshape(shape)
                     for buf in (self.sqrt_alphas_cumprod, self.sqrt_one_minus_alphas_cumprod))

    # ----------------------------------------------------------------- forward process / parametrisation
    def _q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a, b = self._ab(t, x0)
        return a * x0 + b * noise

    def _target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction == "eps":
            return noise
        a, b = self._ab(t, x0)
        return a * noise - b * x0

    def q_sample(self, x0: torch.Tensor, t: TimeArg, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
        return self._q_sample(x0, self.timesteps_for(t, x0), noise)

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: TimeArg) -> torch.Tensor:
        """What the denoiser should output at (x_t = q_sample(x0, t, noise), t): noise (eps) or v."""
        return self._target(x0, noise, self.timesteps_for(t, x0))

    def split_prediction(self, x_t: torch.Tensor, t: TimeArg,
                         model_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model output -> (x0 estimate, eps estimate)."""
        a, b = self._ab(self.timesteps_for(t, x_t), x_t)
        if self.prediction == "eps":
            return (x_t - b * model_out) / a, model_out
        return a * x_t - b * model_out, b * x_t + a * model_out

    def predict_x0(self, x_t: torch.Tensor, t: TimeArg, model_out: torch.Tensor) -> torch.Tensor:
        return self.split_prediction(x_t, t, model_out)[0]

    def predict_eps(self, x_t: torch.Tensor, t: TimeArg, model_out: torch.Tensor) -> torch.Tensor:
        return self.split_prediction(x_t, t, model_out)[1]

    # ----------------------------------------------------------------- training
    def training_loss(self, model_fn: ModelFn, x0: torch.Tensor, cond: Any = None, *,
                      generator: Optional[torch.Generator] = None, t: Optional[torch.Tensor] = None,
                      noise: Optional[torch.Tensor] = None,
                      cond_mask: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """MSE between the denoiser's output and its target at a random timestep.

        Draws (in this order, from ``generator`` or the global RNG when it is None) t ~ U{0..N-1}
        ``[B]``, noise ~ N(0, I) like x0, and ``cond_mask = U[0,1) >= cond_drop_prob`` ``[B]``;
        any of them can be given instead. Computed in float32. A generator on x0's device avoids
        drawing the noise on the CPU and copying it over.

        Returns ``loss`` (scalar, with graph), ``loss_per_sample`` ``[B]`` (detached), ``t`` ``[B]``
        and ``cond_mask`` ``[B]``.
        """
        x0 = x0.float()
        batch, device = x0.shape[0], x0.device
        draw = generator.device if generator is not None else device
        drawn_t = torch.randint(0, self.num_timesteps, (batch,), generator=generator, device=draw)
        drawn_noise = torch.randn(x0.shape, generator=generator, device=draw)
        keep = torch.rand(batch, generator=generator, device=draw) >= self.cfg.cond_drop_prob
        t = drawn_t.to(device) if t is None else self.timesteps_for(t, x0).to(device)
        noise = drawn_noise.to(device) if noise is None else noise.to(device, torch.float32)
        cond_mask = keep.to(device) if cond_mask is None else cond_mask.to(device, torch.bool)
        if noise.shape != x0.shape or cond_mask.shape != (batch,):
            raise ValueError(
                f"training_loss: x0 {tuple(x0.shape)} needs noise of its shape and cond_mask of shape [{batch}]")

        x_t = self._q_sample(x0, t, noise)
        target = self._target(x0, noise, t)
        pred = checked_output(model_fn(x_t, t, cond, cond_mask), x_t)
        per_sample = (pred - target).pow(2).flatten(1).mean(1)
        return {"loss": per_sample.mean(), "loss_per_sample": per_sample.detach(), "t": t, "cond_mask": cond_mask}

    # ----------------------------------------------------------------- sampling
    def scheduler(self, sampler: Optional[str] = None):
        """A fresh, explicitly configured diffusers scheduler for ``sampler`` (default: cfg.sampler)."""
        return build_scheduler(sampler or self.cfg.sampler, self._betas64, schedule=self.cfg.schedule,
                               prediction=self.prediction, timestep_spacing=self.cfg.timestep_spacing)

    def sample(self, model_fn: ModelFn, shape: Sequence[int], cond: Any = None, *,
               generator: torch.Generator, sampler: Optional[str] = None, steps: Optional[int] = None,
               guidance: Optional[float] = None, device: Optional[torch.device | str] = None,
               progress: bool = False, noise: Optional[torch.Tensor] = None, batch_cfg: bool = True,
               ddim_eta: Optional[float] = None) -> torch.Tensor:
        """Draw x0 samples of ``shape`` (float32 on ``device``) from pure noise.

        ``sampler``/``steps``/``guidance``/``ddim_eta`` default to the config. ``generator`` (CPU,
        or on ``device``) supplies x_T and DDPM/DDIM-eta noise; the global RNG is never used.
        ``noise`` replaces the drawn x_T. With guidance w != 1 the model output is
        ``uncond + w (cond - uncond)``; ``batch_cfg`` puts both in one 2B call when ``cond`` allows.
        Runs under ``torch.no_grad``; put the model in eval mode first.
        """
        if not isinstance(generator, torch.Generator):
            raise TypeError("sample() needs a torch.Generator (it never falls back to the global RNG)")
        sampler = sampler or self.cfg.sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
        steps = self.cfg.sample_steps if steps is None else int(steps)
        guidance = self.cfg.guidance if guidance is None else float(guidance)
        ddim_eta = self.cfg.ddim_eta if ddim_eta is None else float(ddim_eta)
        device = torch.device(device) if device is not None else self.betas.device
        shape = tuple(int(s) for s in shape)
        timesteps = sampling_timesteps(self.num_timesteps, steps, self.cfg.timestep_spacing)
        denoise = GuidedDenoiser(model_fn, cond, guidance, shape[0], device, batch_cfg)
        with torch.no_grad():
            x = initial_noise(shape, generator, device, noise)
            return run_sampler(self.scheduler(sampler), denoise, x, timesteps, generator=generator,
                               ddim_eta=ddim_eta, progress=progress)


def build_diffusion(cfg: DiffusionConfig | DictConfig | Mapping[str, Any] | None = None) -> GaussianDiffusion:
    """A :class:`GaussianDiffusion` from a config dataclass, its OmegaConf node, or a plain mapping."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        try:
            cfg = DiffusionConfig(**cfg)
        except TypeError as err:
            raise ConfigError(f"bad diffusion config: {err}") from None
    return GaussianDiffusion(cfg)
