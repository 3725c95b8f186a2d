"""The LVDM baseline's two stages, run by the shared experiments (docs/LVDM.md).

    python main.py --exp first_stage --config configs/first_stage/lvdm_shapes32.yaml
    python main.py --exp ddpm --config configs/ddpm/lvdm_shapes32.yaml --first_model results/first_stage_.../model_last.pth
    python validate.py --ckpt results/ddpm_.../model_last.pth --out results/validate_lvdm

``--exp first_stage`` runs this module's autoencoder training for configs with ``model.arch:
lvdm`` (:data:`LVDM_FIRST_STAGE`); ``--exp ddpm`` runs its second stage for ``model.net:
lvdm_unet`` (:data:`LVDM_DDPM`). ``model.lvdm.role`` picks what the second stage learns: the next
latents (``predict``; keyframes with ``key_stride > 1``) or the latents between two keyframes
(``interpolate``). A keyframe model whose ``model.lvdm.interpolator`` names an interpolation
checkpoint predicts through LVDM's hierarchy (models/lvdm_predictor.py).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from models.diffusion import DiffusionConfig
from models.lvdm_autoencoder import LVDMAutoencoder, LVDMAutoencoderConfig
from models.lvdm_predictor import HierarchicalPredictor, LVDMObjectiveConfig, LVDMPredictor, VideoLatentSpace
from models.unets.lvdm_unet import LVDMUNet, LVDMUNetConfig, lvdm_training_loss
from tools.checkpoint import load_checkpoint, with_trained_weights
from tools.config import ConfigError
from tools.experiments.ddpm import (LatentDiffusionTask, denoiser_config, load_latent_diffusion, prepare_config,
                                    run_latent_diffusion, trained_first_stage)
from tools.experiments.pvdm import AutoencoderLossConfig, PVDMAutoencoderTask, build_section_model, run_first_stage
from tools.registry import Experiment, FirstStageEntry


# ----------------------------------------------------------------------------- first stage
@dataclass
class LVDMFirstStageConfig(AutoencoderLossConfig):
    arch: str = "lvdm"
    lvdm: LVDMAutoencoderConfig = field(default_factory=LVDMAutoencoderConfig)


def build_autoencoder(cfg: DictConfig) -> LVDMAutoencoder:
    """The autoencoder of ``model.lvdm``, made for the clips of ``data`` (frames and resolution)."""
    return build_section_model(cfg, "lvdm", LVDMAutoencoderConfig, LVDMAutoencoder)


def autoencoder_from_checkpoint(run_cfg: DictConfig, state: dict) -> LVDMAutoencoder:
    return with_trained_weights(build_autoencoder(run_cfg), state)


class LVDMAutoencoderTask(PVDMAutoencoderTask):
    """L1 + perceptual reconstruction loss (LVDM's objective before its adversarial term, which is not
    wired here); the training and sample steps are the PVDM autoencoder's."""

    build = staticmethod(build_autoencoder)


LVDM_FIRST_STAGE = Experiment(
    name="first_stage", model_schema=LVDMFirstStageConfig, default_config="configs/first_stage/lvdm_shapes32.yaml",
    run=functools.partial(run_first_stage, task_class=LVDMAutoencoderTask),
    build_task=lambda cfg, device: LVDMAutoencoderTask(cfg, device),
    first_stage=FirstStageEntry(build=autoencoder_from_checkpoint),
    description="LVDM's 3D-convolution video autoencoder (model.arch: lvdm)",
)


# ----------------------------------------------------------------------------- second stage
@dataclass
class LVDMDDPMConfig:
    net: str = "lvdm_unet"
    unet: LVDMUNetConfig = field(default_factory=LVDMUNetConfig)
    lvdm: LVDMObjectiveConfig = field(default_factory=LVDMObjectiveConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    cond_frames: int = 4  # K observed frames; a clip is the next T (the autoencoder's clip length)
    scale_clips: int = 32  # training clips used to measure the latent scale factor
    eval_clips: int = 4  # held-out clips sampled at every sample step


def objective(cfg: DictConfig) -> LVDMObjectiveConfig:
    try:
        return LVDMObjectiveConfig(**OmegaConf.to_container(cfg.model.lvdm, resolve=True))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def clip_span(cfg: DictConfig, first_stage_cfg: DictConfig) -> int:
    """Frames of a training clip for the first stage of ``first_stage_cfg`` (its saved config)."""
    return window_span(cfg, int(first_stage_cfg.data.frames), int(first_stage_cfg.model.lvdm.downsample[0]))


def window_span(cfg: DictConfig, frames: int, time_factor: int) -> int:
    """``K`` observed frames, then ``T r`` future frames (keyframes ``r`` latent frames apart are taken
    from their latents) to predict, or ``(r + 1) ft`` to interpolate (``T`` = ``frames``, ``ft`` =
    ``time_factor``: the autoencoder's clip length and time downsampling)."""
    goal = objective(cfg)
    if goal.role == "interpolate":
        return int(cfg.model.cond_frames) + (goal.key_stride + 1) * time_factor
    return int(cfg.model.cond_frames) + frames * goal.key_stride


def load_video_space(cfg: DictConfig, scale: Optional[float] = None) -> VideoLatentSpace:
    return VideoLatentSpace(trained_first_stage(cfg, LVDMAutoencoder, "LVDM", span=clip_span).model, scale=scale)


class LVDMTask(LatentDiffusionTask):
    """LVDM's loss on windows of latent frames, the known ones (the condition) perturbed to a random level."""

    space: VideoLatentSpace

    def __init__(self, cfg: DictConfig, space: VideoLatentSpace) -> None:
        self.objective = objective(cfg)
        ft = space.time_factor
        k = int(cfg.model.cond_frames)
        if k % ft or space.frames % ft:
            raise ConfigError(f"model.cond_frames ({k}) must be a multiple of the autoencoder's time factor {ft}")
        self.context, self.generated = k // ft, space.frames // ft
        r = self.objective.key_stride
        length = r + 1 if self.objective.role == "interpolate" else self.context + self.generated
        known = torch.zeros(length, dtype=torch.bool)
        known[[0, length - 1] if self.objective.role == "interpolate" else list(range(self.context))] = True
        _, _, h, w = space.first_stage.latent_shape()
        try:
            net = LVDMUNet(denoiser_config(cfg.model), space.first_stage.cfg.embed_dim, (length, h, w),
                           self.objective.max_perturb)
        except ValueError as err:
            raise ConfigError(f"model.unet: {err}") from None
        super().__init__(cfg, space, net)
        self.known = known
        if self.objective.max_perturb >= self.diffusion.num_timesteps:
            raise ConfigError(f"model.lvdm.max_perturb must be below diffusion.num_timesteps "
                              f"({self.diffusion.num_timesteps}); got {self.objective.max_perturb}")

    def clips(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(observed ``K`` frames, the frames after them that a training window is made of)."""
        k = self.cond_frames
        span = window_span(self.cfg, self.space.frames, self.space.time_factor)
        if video.shape[2] < span:
            raise ValueError(f"clips have {video.shape[2]} frames; LVDM's {self.objective.role} window needs {span}")
        return video[:, :, :k], video[:, :, k:span]

    def key_frames(self, after: torch.Tensor) -> torch.Tensor:
        """The frames of the keyframe latents ``r - 1, 2r - 1, ...`` (each ``ft`` frames)."""
        ft, r = self.space.time_factor, self.objective.key_stride
        blocks = [after[:, :, (j * r + r - 1) * ft:(j * r + r) * ft] for j in range(self.generated)]
        return torch.cat(blocks, dim=2)

    def split(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what a prediction is given, the frames it should produce), for the sample step."""
        observed, after = self.clips(video)
        if self.objective.role == "interpolate":
            ft = self.space.time_factor
            return after, after[:, :, ft:-ft]
        return observed, self.key_frames(after)

    def example(self, batch: dict) -> tuple[None, torch.Tensor]:
        """(no condition: the window's known frames are it, a window of clean latents)."""
        observed, after = self.clips(batch["video"])
        if self.objective.role == "interpolate":
            return None, self.space.target(after)
        r = self.objective.key_stride
        future = self.space.target(after)[:, :, r - 1::r]  # keyframes from the dense latents
        return None, torch.cat([self.space.condition(observed), future], dim=2)

    def loss(self, net: nn.Module, x0: torch.Tensor, cond: Any) -> dict[str, torch.Tensor]:
        return lvdm_training_loss(net, self.diffusion, x0, self.known, self.objective.cond_prob,
                                  self.objective.max_perturb)

    def predictor(self, net: nn.Module) -> LVDMPredictor:
        return LVDMPredictor(self.space, self.diffusion, net, self.cond_frames, self.objective)

    def predict(self, net: nn.Module, observed: torch.Tensor, generator: torch.Generator,
                **sample_options: Any) -> torch.Tensor:
        """The sample step's prediction: the next clip, the keyframes, or the frames between the
        first and last latent frame of ``observed`` (an interpolation window)."""
        predictor = self.predictor(net)
        if self.objective.role == "interpolate":
            window = self.space.target(observed)
            latents = predictor.interpolate(window[:, :, :1], window[:, :, -1:], generator, **sample_options)
        else:
            latents = predictor.predict_latents(self.space.condition(observed), generator, **sample_options)
        return self.space.decode(latents)


def run_ddpm(cfg: DictConfig, run_dir: Path, resume: bool) -> int:
    return run_latent_diffusion(cfg, run_dir, resume, load_video_space(cfg), LVDMTask)


def load_predictor(checkpoint: str | Path | dict, device: torch.device | str = "cpu",
                   raw_weights: bool = False) -> LVDMPredictor | HierarchicalPredictor:
    """The predictor of a checkpoint; a keyframe model with ``model.lvdm.interpolator`` comes with
    its interpolation model as a :class:`HierarchicalPredictor`."""
    predictor = load_latent_diffusion(checkpoint, device, raw_weights, load_video_space, LVDMTask)
    goal = predictor.objective
    if goal.role != "predict" or goal.key_stride == 1:
        return predictor
    if goal.interpolator is None:
        raise ConfigError(f"this keyframe model (model.lvdm.key_stride {goal.key_stride}) predicts through an "
                          f"interpolation model: set model.lvdm.interpolator to its checkpoint")
    state = load_checkpoint(goal.interpolator, exps=("ddpm",))
    if OmegaConf.select(OmegaConf.create(state["config"]), "model.net") != "lvdm_unet":
        raise ConfigError(f"model.lvdm.interpolator {goal.interpolator} is not an LVDM checkpoint")
    interpolator = load_latent_diffusion(state, device, raw_weights, load_video_space, LVDMTask)
    try:
        return HierarchicalPredictor(predictor, interpolator)
    except ValueError as err:
        raise ConfigError(f"model.lvdm.interpolator {goal.interpolator}: {err}") from None


LVDM_DDPM = Experiment(
    name="ddpm", model_schema=LVDMDDPMConfig, default_config="configs/ddpm/lvdm_shapes32.yaml",
    run=run_ddpm, build_task=lambda cfg, device: LVDMTask(cfg, load_video_space(cfg, scale=1.0)),
    prepare_config=functools.partial(prepare_config, span=clip_span), load_predictor=load_predictor,
    description="LVDM's latent video diffusion over its 3D autoencoder's latents (model.net: lvdm_unet)",
)
