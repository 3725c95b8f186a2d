"""The PVDM baseline's two stages, run by the shared experiments (docs/PVDM.md).

    python main.py --exp first_stage --config configs/first_stage/pvdm_shapes32.yaml
    python main.py --exp ddpm --config configs/ddpm/pvdm_shapes32.yaml --first_model results/first_stage_.../model_last.pth
    python validate.py --ckpt results/ddpm_.../model_last.pth --out results/validate_pvdm

``--exp first_stage`` runs this module's autoencoder training for configs with ``model.arch:
pvdm`` (:data:`PVDM_FIRST_STAGE`); ``--exp ddpm`` runs its second stage for ``model.net:
pvdm_unet`` (:data:`PVDM_DDPM`): tools/registry.py shares each ``--exp`` name between methods.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from evaluation.frame_metrics import psnr_per_frame, ssim_per_frame
from losses.perceptual import PerceptualConfig, build_perceptual_loss
from losses.reconstruction import reconstruction_loss
from models.diffusion import DiffusionConfig
from models.pvdm_autoencoder import PVDMAutoencoder, PVDMAutoencoderConfig
from models.pvdm_predictor import PlaneLatentSpace, PVDMPredictor
from models.unets.pvdm_unet import PVDMObjectiveConfig, PVDMUNet, PVDMUNetConfig, pvdm_training_loss
from tools.checkpoint import with_trained_weights
from tools.config import ConfigError
from tools.datasets import build_dataset
from tools.experiments.common import held_out_batch, run_training
from tools.experiments.ddpm import (LatentDiffusionTask, denoiser_config, load_latent_diffusion, prepare_config,
                                    run_latent_diffusion, trained_first_stage)
from tools.experiments.decomposition import motion_collapse_warnings, temporal_mean_psnr, temporal_variance_ratio
from tools.registry import Experiment, FirstStageEntry
from tools.trainer import StepContext, TrainTask


# ----------------------------------------------------------------------------- first stage
@dataclass
class AutoencoderLossConfig:
    """The training settings every baseline autoencoder shares (its ``arch`` and sizes aside)."""

    l1_weight: float = 1.0
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    eval_clips: int = 8  # held-out clips reconstructed, scored and shown at every sample step


@dataclass
class PVDMFirstStageConfig(AutoencoderLossConfig):
    arch: str = "pvdm"
    pvdm: PVDMAutoencoderConfig = field(default_factory=PVDMAutoencoderConfig)


def build_section_model(cfg: DictConfig, section: str, config_class: type, model_class: type) -> nn.Module:
    """``model_class(config_class(**model.<section>))``, made for the clips of ``data`` (its frames
    and resolution must match); a bad value is a one-line config error."""
    values = OmegaConf.to_container(cfg.model[section], resolve=True)
    if (values["frames"], values["resolution"]) != (cfg.data.frames, cfg.data.resolution):
        raise ConfigError(f"model.{section}.frames/resolution ({values['frames']}, {values['resolution']}) must match "
                          f"data.frames/resolution ({cfg.data.frames}, {cfg.data.resolution})")
    try:  # models/ raises ValueError; for the user it is a config error (one line, exit 2)
        return model_class(config_class(**values))
    except ValueError as err:
        raise ConfigError(f"model.{section}: {err}") from None


def build_autoencoder(cfg: DictConfig) -> PVDMAutoencoder:
    """The autoencoder of ``model.pvdm``, made for the clips of ``data`` (frames and resolution)."""
    return build_section_model(cfg, "pvdm", PVDMAutoencoderConfig, PVDMAutoencoder)


def autoencoder_from_checkpoint(run_cfg: DictConfig, state: dict) -> PVDMAutoencoder:
    """The trained autoencoder of a checkpoint (EMA weights when present), in eval mode."""
    return with_trained_weights(build_autoencoder(run_cfg), state)


class PVDMAutoencoderTask(TrainTask):
    """L1 + perceptual reconstruction loss (PVDM's autoencoder objective before its GAN fine-tune)."""

    ema_nets = ("model",)
    build = staticmethod(build_autoencoder)  # cfg -> the autoencoder (a subclass trains another one)

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        self.cfg, self.mcfg = cfg, cfg.model
        self.model = self.build(cfg)
        self.perceptual = build_perceptual_loss(PerceptualConfig(**self.mcfg.perceptual), device)

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def reconstruction(self, recon: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the weighted L1 + perceptual loss, its logged terms)."""
        l1 = reconstruction_loss(recon, video, "l1")
        loss = self.mcfg.l1_weight * l1
        logs = {"l1": l1.detach()}
        if self.perceptual is not None:
            p_loss = self.perceptual(recon, video)
            loss = loss + self.mcfg.perceptual.weight * p_loss
            logs[self.perceptual.name] = p_loss.detach()
        return loss, logs

    def training_step(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        video = batch["video"]
        with ctx.autocast():
            loss, logs = self.reconstruction(ctx.nets["model"](video), video)
        ctx.step(loss, "model")
        return {"loss": loss.detach(), **logs}

    @torch.no_grad()
    def sample(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Held-out reconstructions (input | reconstruction), PSNR/SSIM (EMA and raw weights), and
        whether the reconstruction moves: temporal-variance ratio, temporal-mean bound."""
        video = batch["video"]
        results: dict[str, torch.Tensor] = {}
        for label, model in (("", ctx.eval_net("model")), ("raw/", ctx.raw_nets["model"])):
            recon = model(video).clamp(-1, 1)
            results[f"{label}eval/psnr"] = psnr_per_frame(recon, video).mean()
            results[f"{label}eval/ssim"] = ssim_per_frame(recon, video).mean()
            if not label:
                results["recon"] = torch.cat([video, recon], dim=-1)
                results["decomp/temporal_variance_ratio"] = temporal_variance_ratio(recon, video)
                results["decomp/temporal_mean_psnr"] = temporal_mean_psnr(video)
        return results

    def sample_warnings(self, scalars: dict[str, float]) -> list[str]:
        return motion_collapse_warnings(scalars)


def run_first_stage(cfg: DictConfig, run_dir: Path, resume: bool,
                    task_class: type[PVDMAutoencoderTask] = PVDMAutoencoderTask) -> int:
    train = build_dataset(cfg.data, "train", cfg.seed)
    return run_training(lambda device: task_class(cfg, device), cfg, run_dir, resume, train,
                        sample_batch=held_out_batch(cfg))


PVDM_FIRST_STAGE = Experiment(
    name="first_stage", model_schema=PVDMFirstStageConfig, default_config="configs/first_stage/pvdm_shapes32.yaml",
    run=run_first_stage, build_task=lambda cfg, device: PVDMAutoencoderTask(cfg, device),
    first_stage=FirstStageEntry(build=autoencoder_from_checkpoint),
    description="PVDM's projected latent autoencoder (model.arch: pvdm)",
)


# ----------------------------------------------------------------------------- second stage
@dataclass
class PVDMDDPMConfig:
    net: str = "pvdm_unet"
    unet: PVDMUNetConfig = field(default_factory=PVDMUNetConfig)
    pvdm: PVDMObjectiveConfig = field(default_factory=PVDMObjectiveConfig)  # lambda and guidance w
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    cond_frames: int = 4  # K observed frames; the prediction is the next T (the autoencoder's clip length)
    scale_clips: int = 32  # training clips used to measure the latent scale factor
    eval_clips: int = 4  # held-out clips sampled at every sample step


def load_plane_space(cfg: DictConfig, scale: Optional[float] = None) -> PlaneLatentSpace:
    return PlaneLatentSpace(trained_first_stage(cfg, PVDMAutoencoder, "PVDM").model, scale=scale)


def objective(cfg: DictConfig) -> PVDMObjectiveConfig:
    try:
        return PVDMObjectiveConfig(**OmegaConf.to_container(cfg.model.pvdm, resolve=True))
    except ValueError as err:
        raise ConfigError(str(err)) from None


class PVDMTask(LatentDiffusionTask):
    """PVDM's objective on the future clip's latent, conditioned on the observed clip's latent."""

    space: PlaneLatentSpace

    def __init__(self, cfg: DictConfig, space: PlaneLatentSpace) -> None:
        try:
            net = PVDMUNet(denoiser_config(cfg.model), space.first_stage.cfg.embed_dim, space.first_stage.layout)
        except ValueError as err:
            raise ConfigError(f"model.unet: {err}") from None
        super().__init__(cfg, space, net)
        self.objective = objective(cfg)
        if float(cfg.model.diffusion.guidance) != 1.0:
            raise ConfigError("PVDM's guidance is model.pvdm.w (it samples with 1 + w); leave model.diffusion.guidance "
                              "at 1.0")

    def example(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        observed, future = self.split(batch["video"])
        return self.space.condition(observed), self.space.target(future)

    def loss(self, net: nn.Module, x0: torch.Tensor, cond: Any) -> dict[str, torch.Tensor]:
        return pvdm_training_loss(net, self.diffusion, x0, cond, self.objective.lam)

    def predictor(self, net: nn.Module) -> PVDMPredictor:
        return PVDMPredictor(self.space, self.diffusion, net, self.cond_frames, w=self.objective.w)


def run_ddpm(cfg: DictConfig, run_dir: Path, resume: bool) -> int:
    if cfg.model.get("tokens"):
        raise ConfigError("PVDM trains from clips (its latents are encoded on the fly); token folders are RSVP's")
    return run_latent_diffusion(cfg, run_dir, resume, load_plane_space(cfg), PVDMTask)


def load_predictor(checkpoint: str | Path | dict, device: torch.device | str = "cpu",
                   raw_weights: bool = False) -> PVDMPredictor:
    return load_latent_diffusion(checkpoint, device, raw_weights, load_plane_space, PVDMTask)


PVDM_DDPM = Experiment(
    name="ddpm", model_schema=PVDMDDPMConfig, default_config="configs/ddpm/pvdm_shapes32.yaml",
    run=run_ddpm, build_task=lambda cfg, device: PVDMTask(cfg, load_plane_space(cfg, scale=1.0)),
    prepare_config=prepare_config, load_predictor=load_predictor,
    description="PVDM's latent diffusion over its autoencoder's planes (model.net: pvdm_unet)",
)
