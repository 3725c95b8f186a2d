"""Schema of the diffusion section of a second-stage model config.

Only simple types, so it nests inside the OmegaConf structured config of an experiment.
:func:`validate_diffusion_config` turns a bad value into a :class:`~tools.config.ConfigError`
that names the field and the allowed values.
"""
from __future__ import annotations

from dataclasses import dataclass

from models.errors import ConfigError

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v")
SAMPLERS = ("ddpm", "ddim", "dpm")
TIMESTEP_SPACINGS = ("trailing", "leading", "linspace")


@dataclass
class DiffusionConfig:
    num_timesteps: int = 1000  # N: training timesteps t = 0 .. N-1
    schedule: str = "linear"  # linear (DDPM) | cosine (Nichol & Dhariwal; diffusers' squaredcos_cap_v2)
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02  # linear schedule only
    prediction: str = "eps"  # eps | v  (what the denoiser outputs)
    cond_drop_prob: float = 0.1  # training: share of samples whose conditioning is dropped (for guidance)
    sampler: str = "ddim"  # ddpm (ancestral) | ddim | dpm (DPM-Solver++ 2M)
    sample_steps: int = 50  # denoiser evaluations per sample (x2 model batch when guidance != 1)
    guidance: float = 1.0  # classifier-free guidance weight w: uncond + w * (cond - uncond); 1 = off
    # trailing: the first sampling step is t = N-1, the level training ends at (Lin et al. 2024, Table 2);
    # "leading" starts below it (e.g. t=980 for 50 steps) and never sees the noisiest level.
    timestep_spacing: str = "trailing"  # trailing | leading | linspace
    ddim_eta: float = 0.0  # DDIM stochasticity (0 = deterministic DDIM)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"diffusion.{name} must be one of {', '.join(choices)}; got {value!r}")


def validate_diffusion_config(cfg: DiffusionConfig) -> None:
    """Raise :class:`ConfigError` naming the first field with an invalid value."""
    if cfg.num_timesteps < 2:
        raise ConfigError(f"diffusion.num_timesteps must be >= 2; got {cfg.num_timesteps}")
    _check_choice("schedule", cfg.schedule, SCHEDULES)
    _check_choice("prediction", cfg.prediction, PREDICTIONS)
    _check_choice("sampler", cfg.sampler, SAMPLERS)
    _check_choice("timestep_spacing", cfg.timestep_spacing, TIMESTEP_SPACINGS)
    if cfg.schedule == "linear" and not 0.0 < cfg.beta_start <= cfg.beta_end < 1.0:
        raise ConfigError(
            f"diffusion.beta_start/beta_end need 0 < beta_start <= beta_end < 1; got {cfg.beta_start}, {cfg.beta_end}")
    if not 0.0 <= cfg.cond_drop_prob <= 1.0:
        raise ConfigError(f"diffusion.cond_drop_prob must be in [0, 1]; got {cfg.cond_drop_prob}")
    if not 1 <= cfg.sample_steps <= cfg.num_timesteps:
        raise ConfigError(
            f"diffusion.sample_steps must be in [1, num_timesteps={cfg.num_timesteps}]; got {cfg.sample_steps}")
    if cfg.ddim_eta < 0.0:
        raise ConfigError(f"diffusion.ddim_eta must be >= 0; got {cfg.ddim_eta}")
