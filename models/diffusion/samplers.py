"""Reverse-process samplers: diffusers' DDPM, DDIM and DPM-Solver++ schedulers, configured explicitly.

Every setting that changes the result is spelled out rather than left to a diffusers default:

- the betas are ours (``trained_betas``), so the schedulers' ``alphas_cumprod`` are the training
  ones up to float32 rounding (diffusers multiplies in float32, we in float64);
- no clipping or thresholding of the x0 prediction: latents are not bounded to [-1, 1];
- ``prediction_type`` follows the model ("epsilon" or "v_prediction");
- DDPM: ``variance_type="fixed_small"`` (the posterior variance beta-tilde of Ho et al.);
- DDIM: ``set_alpha_to_one=True``: the step out of the last timestep lands on the clean sample
  (alpha_bar = 1) rather than on timestep 0's alpha_bar, so nothing of the noise is left;
- DPM-Solver++: multistep, second order (2M), ``final_sigmas_type="zero"`` (the last step returns
  the x0 prediction), first-order final step, no Karras sigmas, no lambda clipping.

The sampling timesteps are computed here, once for all samplers, and handed to the schedulers:
diffusers' own ``trailing`` spacing uses a floating-point ``arange`` that, for some step counts
(62 of the 1000 possible ones with N=1000: 61, 103, 121, ...), yields one extra timestep -1, which
Python indexing turns into the *noisiest* level. ``trailing`` (the default) starts at t = N-1, the noisiest level the model was
trained on and the one closest to the pure noise sampling starts from; ``leading`` starts lower
(t = 980 for 50 of 1000 steps) and feeds pure noise to the model as if it were x_980, a
train/sample mismatch (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
flawed", Table 2).

DDIM in diffusers steps from t to ``t - N // steps`` whatever the next listed timestep is; when
``steps`` does not divide N the two differ by at most one training timestep, and the final step
may end at timestep 0 instead of the clean sample. The loop therefore returns the last step's x0
prediction for DDPM and DDIM (for DPM-Solver++ with a zero final sigma the last step already is).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from tqdm.auto import tqdm

from .config import SAMPLERS, TIMESTEP_SPACINGS
from .schedule import diffusers_beta_schedule

PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction"}


def sampling_timesteps(num_timesteps: int, steps: int, spacing: str = "trailing") -> list[int]:
    """The ``steps`` training timesteps a sampler visits, in decreasing order.

    trailing: ``round(N - k N / steps) - 1`` (starts at N-1); leading: ``k * (N // steps)``
    (ends at 0); linspace: ``round(linspace(0, N-1, steps))`` (both ends).
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"sampling steps must be in [1, {num_timesteps}]; got {steps}")
    k = np.arange(steps, dtype=np.float64)
    if spacing == "trailing":
        ts = np.round(num_timesteps - k * (num_timesteps / steps)) - 1
    elif spacing == "leading":
        ts = (k * (num_timesteps // steps))[::-1]
    elif spacing == "linspace":
        ts = np.round(np.linspace(0, num_timesteps - 1, steps))[::-1]
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; expected one of {', '.join(TIMESTEP_SPACINGS)}")
    out = [int(t) for t in ts]
    if len(out) != steps or out[-1] < 0 or out[0] > num_timesteps - 1 or any(a <= b for a, b in zip(out, out[1:])):
        raise AssertionError(f"bad sampling timesteps for N={num_timesteps}, steps={steps}, {spacing}: {out}")
    return out


def build_scheduler(sampler: str, betas: torch.Tensor, *, schedule: str, prediction: str,
                    timestep_spacing: str) -> SchedulerMixin:
    """A fresh diffusers scheduler (they hold per-run state) for ``sampler`` in {ddpm, ddim, dpm}."""
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction {prediction!r}; expected eps or v")
    common = dict(
        num_train_timesteps=len(betas),
        trained_betas=betas.double().cpu().tolist(),  # ours; beta_schedule below only records the name
        beta_schedule=diffusers_beta_schedule(schedule),
        prediction_type=PREDICTION_TYPES[prediction],
        thresholding=False,
        timestep_spacing=timestep_spacing,  # recorded; the timesteps themselves come from sampling_timesteps
        steps_offset=0,
        rescale_betas_zero_snr=False,
    )
    if sampler == "ddpm":
        return DDPMScheduler(**common, variance_type="fixed_small", clip_sample=False)
    if sampler == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
    if sampler == "dpm":
        return DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
            lower_order_final=True, euler_at_final=False, final_sigmas_type="zero",
            use_karras_sigmas=False, lambda_min_clipped=-float("inf"))
    raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")


def set_timesteps(scheduler: SchedulerMixin, timesteps: list[int]) -> None:
    if isinstance(scheduler, DDIMScheduler):
        # DDIM takes no custom list; its step size N // steps only needs the count.
        scheduler.set_timesteps(len(timesteps))
        scheduler.timesteps = torch.tensor(timesteps, dtype=torch.int64)
    else:
        scheduler.set_timesteps(timesteps=timesteps)


def run_sampler(scheduler: SchedulerMixin, denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                x: torch.Tensor, timesteps: list[int], *, generator: torch.Generator,
                ddim_eta: float = 0.0, progress: bool = False) -> torch.Tensor:
    """Integrate from ``x`` (noise at ``timesteps[0]``) to a clean sample.

    ``denoise(x_t, t)`` returns the (guided) model output for x_t at the int64 timesteps ``t`` [B].
    """
    set_timesteps(scheduler, timesteps)
    batch = x.shape[0]
    for i, t in enumerate(tqdm(timesteps, desc="sampling", disable=not progress, leave=False)):
        t_batch = torch.full((batch,), t, dtype=torch.int64, device=x.device)
        out = denoise(x, t_batch)
        if isinstance(scheduler, DDIMScheduler):
            step = scheduler.step(out, t, x, eta=ddim_eta, generator=generator if ddim_eta > 0 else None)
        elif isinstance(scheduler, DDPMScheduler):
            step = scheduler.step(out, t, x, generator=generator)
        else:
            step = scheduler.step(out, t, x)
        last = i == len(timesteps) - 1
        x = step.pred_original_sample if last and hasattr(step, "pred_original_sample") else step.prev_sample
    return x


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
                  noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x_T ~ N(0, I) drawn from ``generator`` (on its own device, then moved), or the given ``noise``."""
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)}; expected {tuple(shape)}")
        return noise.to(device=device, dtype=torch.float32)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(device)
