"""Noise schedules (betas), computed in float64.

The formulas are the ones diffusers uses for ``beta_schedule="linear"`` and
``"squaredcos_cap_v2"``, and the samplers are handed these very betas (``trained_betas``), so the
training forward process and the diffusers schedulers share one schedule.
"""
from __future__ import annotations

import math

import torch

# Nichol & Dhariwal (2021): small offset so beta_0 is not vanishingly small; betas are capped below 1
# because alpha_bar(1) = 0 would make the last beta exactly 1.
COSINE_OFFSET = 0.008
COSINE_MAX_BETA = 0.999


def linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Ho et al. (2020): betas evenly spaced from ``beta_start`` to ``beta_end`` (float64)."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_alpha_bar(s: torch.Tensor) -> torch.Tensor:
    """Continuous-time cumulative signal level for ``s`` in [0, 1] (not normalised by its value at 0)."""
    return torch.cos((s + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2


def cosine_betas(num_timesteps: int, max_beta: float = COSINE_MAX_BETA) -> torch.Tensor:
    """Betas with ``prod(1 - beta) ~ cos^2`` schedule: ``beta_i = 1 - abar((i+1)/N) / abar(i/N)``, capped."""
    s = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    abar = cosine_alpha_bar(s)
    return (1.0 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def make_betas(schedule: str, num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """float64 betas ``[num_timesteps]`` for ``schedule`` in {linear, cosine}."""
    if schedule == "linear":
        return linear_betas(num_timesteps, beta_start, beta_end)
    if schedule == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"unknown noise schedule {schedule!r}; expected linear or cosine")


def diffusers_beta_schedule(schedule: str) -> str:
    """The name diffusers gives our schedule (for the scheduler config; the betas themselves are passed)."""
    return {"linear": "linear", "cosine": "squaredcos_cap_v2"}[schedule]
