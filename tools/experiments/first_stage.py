"""``--exp first_stage`` and ``--exp gan``: train the scene/object/motion VQ-VAE, then sharpen it.

Both run through the shared Trainer with the same task; ``gan`` adds a per-frame 2D PatchGAN and
a 3D PatchGAN on clips (hinge loss, fixed or adaptive generator weight, a start step) and starts
from the weights of a finished first-stage run (``--first_stage_folder`` or ``--first_model``).
``first_stage`` given such a run fine-tunes it: the same start, without the discriminators (how
``warp_keys_shapes32_hard.yaml`` turns a trained soft warp into a hard one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from omegaconf import DictConfig, OmegaConf
from torch import nn

from evaluation.frame_metrics import psnr_per_frame, ssim_per_frame
from losses.adversarial import adaptive_generator_weight, hinge_d_loss, hinge_g_loss
from losses.perceptual import PerceptualConfig, build_perceptual_loss
from losses.reconstruction import reconstruction_loss
from models.discriminators import ClipDiscriminator, FrameDiscriminator
from models.latent_space import SemanticTokens
from models.moso import WEIGHT_FREE, MosoConfig, MosoVQVAE
from tools.checkpoint import load_net_state, with_trained_weights
from tools.config import ConfigError, OptimConfig
from tools.datasets import build_dataset
from tools.experiments.common import held_out_batch, run_training
from tools.experiments.decomposition import decomposition_report, motion_collapse_warnings
from tools.pretrained import find_first_stage, load_first_stage
from tools.registry import Experiment, FirstStageEntry
from tools.trainer import StepContext, TrainTask, build_optimizer


@dataclass
class GanConfig:
    start_step: int = 0  # steps of this run before the discriminators join
    weight: float = 0.1  # generator weight; multiplied by the adaptive factor when adaptive
    adaptive: bool = True  # balance GAN and reconstruction gradients at the decoder's last layer
    frame_disc: bool = True  # per-frame 2D PatchGAN
    clip_disc: bool = True  # 3D PatchGAN on clips
    channels: int = 64
    clip_channels: int = 32
    n_layers: int = 3
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, betas=[0.5, 0.9]))


@dataclass
class FirstStageConfig:
    # The autoencoder: moso (this schema) | pvdm | lvdm | tubelet (tools/experiments/<arch>.py); --exp first_stage runs any.
    arch: str = "moso"
    vqvae: MosoConfig = field(default_factory=MosoConfig)
    l1_weight: float = 1.0
    # L1 between the reconstruction's and the input's frame-to-frame differences: a static
    # reconstruction pays for every moving pixel (a departure from MOSO; docs/FIRST_STAGE.md).
    temporal_l1_weight: float = 0.0
    # merge: warp only: L1 between the anchor frame moved by each frame's warp and that frame, at
    # the merge resolution (teaches motion the warp from the first step; docs/FIRST_STAGE.md)
    warp_l1_weight: float = 0.0
    # merge: warp only: cross-entropy between each cell's offset weights and the offset whose anchor
    # content matches the frame best (MosoVQVAE.warp_targets): rewards committing to the right offset
    # rather than a mixture, which the L1 losses reward where the model is unsure (docs/FIRST_STAGE.md)
    warp_ce_weight: float = 0.0
    # merge: warp only: the expected squared error of one copy of the anchor drawn from the warps'
    # weights (MosoVQVAE.copy_error_map; with pixel_warp, of the displacement the two warps compose):
    # the blend's error plus how much the offsets' copies disagree, so a blend pays where the L1 of
    # the mixture lets it hedge. It trains the coarse warp only (docs/FIRST_STAGE.md)
    warp_copy_weight: float = 0.0
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    eval_clips: int = 8  # held-out clips reconstructed, scored and shown at every sample step


def build_vqvae(cfg: DictConfig) -> MosoVQVAE:
    try:  # models/ raises ValueError; for the user it is a config error (one line, exit 2)
        vq_cfg = MosoConfig(**OmegaConf.to_container(cfg.model.vqvae, resolve=True))
        return MosoVQVAE(vq_cfg, frames=cfg.data.frames, resolution=cfg.data.resolution)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def first_stage_data(cfg: DictConfig) -> DictConfig:
    """The data section a first-stage run reads: one frame more than the clip with ``anchor: before``."""
    data = cfg.data.copy()
    if cfg.model.vqvae.anchor == "before":
        data.frames = int(data.frames) + 1
    return data


def split_anchor(cfg: DictConfig, batch: dict) -> tuple[Optional[torch.Tensor], dict]:
    """(anchor frame or None, the batch cut to the clip) for a batch of ``first_stage_data`` clips."""
    if cfg.model.vqvae.anchor != "before":
        return None, batch
    video = batch["video"]
    clip = {**batch, "video": video[:, :, 1:]}
    if "mask" in batch:
        clip["mask"] = batch["mask"][:, 1:]
    return video[:, :, 0], clip


def first_stage_from_checkpoint(run_cfg: DictConfig, state: dict) -> MosoVQVAE:
    """The trained model of a first_stage/gan checkpoint (EMA weights when present), in eval mode."""
    return with_trained_weights(build_vqvae(run_cfg), state)


class FirstStageTask(TrainTask):
    """Reconstruction (L1 + LPIPS) + commitment; with ``adversarial``, hinge GAN on frames and clips."""

    ema_nets = ("model",)

    def __init__(self, cfg: DictConfig, device: torch.device, adversarial: bool,
                 init_weights: Optional[dict] = None, step_offset: int = 0) -> None:
        self.cfg, self.mcfg = cfg, cfg.model
        self.adversarial = adversarial
        self.step_offset = step_offset  # steps the weights were trained for before this run (gan)
        self.model = build_vqvae(cfg)
        if init_weights is not None:
            self.model.load_state_dict(init_weights)
        self.adversary = Adversary(self.mcfg.gan) if adversarial else None
        self.discs = self.adversary.discs if adversarial else {}
        self.perceptual = build_perceptual_loss(PerceptualConfig(**self.mcfg.perceptual), device)

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model, **self.discs}

    def configure_optimizers(self, nets: dict[str, nn.Module], cfg: DictConfig) -> dict:
        return autoencoder_optimizers(nets, cfg, self.adversary)

    def state_dict(self) -> dict[str, Any]:
        return {"step_offset": self.step_offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_offset = int(state.get("step_offset", self.step_offset))

    def training_step(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        anchor, batch = split_anchor(self.cfg, batch)
        video = batch["video"]
        gan_on = self.adversarial and step >= self.mcfg.gan.start_step
        with ctx.autocast():
            out = ctx.nets["model"](video, step=step + self.step_offset, anchor=anchor)
            recon = out["recon"]
            rec = self.mcfg.l1_weight * reconstruction_loss(recon, video, "l1")
            logs = {"l1": rec.detach()}
            if self.mcfg.temporal_l1_weight > 0:
                t_l1 = (recon.diff(dim=2) - video.diff(dim=2)).abs().mean()
                rec = rec + self.mcfg.temporal_l1_weight * t_l1
                logs["temporal_l1"] = t_l1.detach()
            if self.mcfg.warp_l1_weight > 0 and "warped_anchor" in out:
                w_l1 = (out["warped_anchor"] - out["frames_small"]).abs().mean()
                rec = rec + self.mcfg.warp_l1_weight * w_l1
                logs["warp_l1"] = w_l1.detach()
            reference = video[:, :, 0] if anchor is None else anchor  # the frame the warps move
            if self.mcfg.warp_ce_weight > 0 and "warp_weights" in out:
                target = ctx.raw_nets["model"].warp_targets(video, reference)
                log_w = rearrange(out["warp_weights"].float().clamp_min(1e-8).log(), "b t k h w -> (b t) k h w")
                w_ce = F.nll_loss(log_w, rearrange(target, "b t h w -> (b t) h w"))
                rec = rec + self.mcfg.warp_ce_weight * w_ce
                logs["warp_ce"] = w_ce.detach()
            if self.mcfg.warp_copy_weight > 0 and "warp_weights" in out:
                w_copy = ctx.raw_nets["model"].copy_error_map(reference, video, out["warp_weights"],
                                                              out.get("fine_weights")).mean()
                rec = rec + self.mcfg.warp_copy_weight * w_copy
                logs["warp_copy"] = w_copy.detach()
            if self.perceptual is not None:
                p_loss = self.perceptual(recon, video)
                rec = rec + self.mcfg.perceptual.weight * p_loss
                logs[self.perceptual.name] = p_loss.detach()  # lpips or st_lpips: never one labelled as the other
            loss = rec + out["quant_loss"]
            if gan_on:
                g_loss, g_logs = self.adversary.generator_loss(ctx, recon, rec, ctx.raw_nets["model"].decoder.to_rgb.weight)
                loss = loss + g_loss
                logs.update(g_logs)
        ctx.step(loss, "model")
        if gan_on:
            logs["d_loss"] = self.adversary.discriminator_step(ctx, video, recon)
        return {"loss": loss.detach(), "quant_loss": out["quant_loss"].detach(), **logs}

    def sample(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Held-out reconstructions (input | reconstruction), their PSNR/SSIM, codebook usage."""
        anchor, batch = split_anchor(self.cfg, batch)
        video = batch["video"]
        results: dict[str, torch.Tensor] = {}
        for label, model in (("", ctx.eval_net("model")), ("raw/", ctx.raw_nets["model"])):
            out = model(video, anchor=anchor)
            recon = out["recon"].clamp(-1, 1)
            results[f"{label}eval/psnr"] = psnr_per_frame(recon, video).mean()
            results[f"{label}eval/ssim"] = ssim_per_frame(recon, video).mean()
            if not label:  # EMA weights (when there are any): the ones sampling uses
                results["recon"] = torch.cat([video, recon], dim=-1)
                results.update(codebook_report(model, out["indices"]))
                results.update(decomposition_report(model, batch, ctx.device, anchor))
        return results

    def sample_warnings(self, scalars: dict[str, float]) -> list[str]:
        return motion_collapse_warnings(scalars)


class Adversary:
    """The GAN of a first-stage task (``model.gan``): a per-frame 2D and a clip 3D PatchGAN, hinge
    losses, a fixed or adaptive generator weight. The task lists :attr:`discs` among its networks."""

    def __init__(self, gan: DictConfig) -> None:
        self.cfg = gan
        self.discs: dict[str, nn.Module] = {}
        if gan.frame_disc:
            self.discs["disc_frame"] = FrameDiscriminator(gan.channels, gan.n_layers)
        if gan.clip_disc:
            self.discs["disc_clip"] = ClipDiscriminator(gan.clip_channels, gan.n_layers)
        if not self.discs:
            raise ConfigError("model.gan: enable at least one of frame_disc and clip_disc")

    def generator_loss(self, ctx: StepContext, recon: torch.Tensor, rec_loss: torch.Tensor,
                       last_layer: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the weighted generator loss to add, its logged terms); call inside ``ctx.autocast()``."""
        # Raw (not DDP-wrapped) discriminators: this pass only feeds the generator's gradient.
        g_loss = sum(hinge_g_loss(ctx.raw_nets[name](recon)) for name in self.discs)
        weight = torch.tensor(self.cfg.weight, device=recon.device)
        if self.cfg.adaptive:
            weight = weight * adaptive_generator_weight(rec_loss, g_loss, last_layer)
        return weight * g_loss, {"g_loss": g_loss.detach(), "g_weight": weight}

    def discriminator_step(self, ctx: StepContext, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One update of the discriminators; returns their (detached) hinge loss."""
        with ctx.autocast():
            # Real and fake through each discriminator in one pass: one DDP forward per backward.
            both = torch.cat([real, fake.detach()])
            d_loss = sum(hinge_d_loss(*ctx.nets[name](both).chunk(2)) for name in self.discs)
        ctx.step(d_loss, "disc")
        return d_loss.detach()


def autoencoder_optimizers(nets: dict[str, nn.Module], cfg: DictConfig, adversary: Optional[Adversary]) -> dict:
    """The autoencoder's optimizer ``model`` and, with an adversary, its discriminators' ``disc``."""
    opts = {"model": build_optimizer(nets["model"].parameters(), cfg.train.optim, cfg.train.max_steps)}
    if adversary is not None:
        params = [p for name in adversary.discs for p in nets[name].parameters()]
        opts["disc"] = build_optimizer(params, adversary.cfg.optim, cfg.train.max_steps)
    return opts


def codebook_report(model: MosoVQVAE, indices: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Codebook use over all components and per component (a collapsed stream uses few codes)."""
    usage = model.quantizer.usage
    out: dict[str, torch.Tensor] = {}
    for name, ids in {"": torch.cat([i.flatten() for i in indices.values()]), **indices}.items():
        stats = usage.stats(ids)
        prefix = f"codebook/{name}_" if name else "codebook/"
        out[f"{prefix}perplexity"] = torch.tensor(stats["perplexity"])
        out[f"{prefix}used_codes"] = torch.tensor(float(stats["used_codes"]))
    out["codebook/dead_codes"] = torch.tensor(float(usage.stats(indices["motion"])["dead_codes"]))
    return out


def _initial_weights(cfg: DictConfig) -> tuple[dict, int]:
    """The first-stage weights a GAN or fine-tune run starts from, and how many steps they were
    trained for."""
    path = find_first_stage(cfg)
    source = load_first_stage(path)
    # Settings that shape no weight (e.g. chunk_frames, absent from older checkpoints) may differ.
    mine = {k: v for k, v in OmegaConf.to_container(cfg.model.vqvae, resolve=True).items() if k not in WEIGHT_FREE}
    theirs = {k: v for k, v in OmegaConf.to_container(source.config.model.vqvae, resolve=True).items()
              if k not in WEIGHT_FREE}
    data = source.config.data
    if mine != theirs or data.frames != cfg.data.frames or data.resolution != cfg.data.resolution:
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        raise ConfigError(f"the {cfg.exp} config's model.vqvae/data do not match the first-stage run {path} "
                          f"(checkpoint vs config: {diff}); use the same architecture settings")
    return load_net_state(source.state, "model"), int(source.state["step"])


def _run(cfg: DictConfig, run_dir: Path, resume: bool, adversarial: bool) -> int:
    if cfg.model.arch != "moso":
        raise ConfigError(f"--exp {cfg.exp} trains MOSO first stages (model.arch: moso); got model.arch: {cfg.model.arch}")
    if cfg.model.warp_ce_weight > 0 and cfg.model.vqvae.warp_choice == "hard":
        raise ConfigError("model.warp_ce_weight needs model.vqvae.warp_choice: soft: a hard warp's offset weights "
                          "are one-hot, so their cross-entropy has no gradient where the choice is wrong")
    data = first_stage_data(cfg)
    train = build_dataset(data, "train", cfg.seed)
    eval_batch = held_out_batch(cfg, data)
    # gan always starts from a trained first stage; first_stage does when given one (a fine-tune)
    starts_from_weights = adversarial or bool(cfg.get("first_model") or cfg.get("first_stage_folder"))
    init, offset = _initial_weights(cfg) if starts_from_weights and not resume else (None, 0)

    def make_task(device: torch.device) -> FirstStageTask:
        return FirstStageTask(cfg, device, adversarial, init_weights=init, step_offset=offset)

    return run_training(make_task, cfg, run_dir, resume, train, sample_batch=eval_batch)


# Checkpoints of both hold a first stage; --exp extract stores its token grids.
FIRST_STAGE_ENTRY = FirstStageEntry(build=first_stage_from_checkpoint, tokens=SemanticTokens)

FIRST_STAGE = Experiment(
    name="first_stage", model_schema=FirstStageConfig, default_config="configs/first_stage/moso_shapes64.yaml",
    run=lambda cfg, run_dir, resume: _run(cfg, run_dir, resume, adversarial=False),
    build_task=lambda cfg, device: FirstStageTask(cfg, device, adversarial=False),
    first_stage=FIRST_STAGE_ENTRY,
    description=("train the scene/object/motion VQ-VAE (model.arch: moso, the default), "
                 "or fine-tune a trained one (--first_stage_folder)"),
)
GAN = Experiment(
    name="gan", model_schema=FirstStageConfig, default_config="configs/first_stage/moso_shapes64_gan.yaml",
    run=lambda cfg, run_dir, resume: _run(cfg, run_dir, resume, adversarial=True),
    build_task=lambda cfg, device: FirstStageTask(cfg, device, adversarial=True),
    first_stage=FIRST_STAGE_ENTRY,
    description="GAN fine-tune of a first-stage run (--first_stage_folder)",
)
