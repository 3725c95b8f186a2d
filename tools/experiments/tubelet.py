"""The tubelet baseline (docs/TUBELET.md): an FSQ tubelet autoencoder and a causal ALiBi transformer
over its tokens.

    python main.py --exp first_stage --config configs/first_stage/tubelet_shapes32.yaml
    python main.py --exp transformer --config configs/transformer/tubelet_shapes32.yaml --first_model results/first_stage_.../model_last.pth
    python validate.py --ckpt results/transformer_.../model_last.pth --out results/validate_tubelet

``--exp first_stage`` runs this module's autoencoder training for configs with ``model.arch:
tubelet`` (:data:`TUBELET_FIRST_STAGE`; ``--exp extract`` stores its token grids). The transformer
is not a diffusion model, so it has an experiment of its own, ``--exp transformer``
(:data:`TRANSFORMER`): next-token cross-entropy over the tokens of whole training clips, encoded on
the fly or read from a token folder (``model.tokens``), through the shared Trainer.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from omegaconf import DictConfig, OmegaConf
from torch import nn

from models.tubelet_autoencoder import TubeletAutoencoder, TubeletAutoencoderConfig, TubeletTokens
from models.tubelet_predictor import TubeletPredictor, TubeletSamplingConfig
from models.tubelet_transformer import TubeletTransformer, TubeletTransformerConfig
from tools.checkpoint import load_checkpoint, load_net_state, with_trained_weights
from tools.config import ConfigError
from tools.datasets import build_dataset
from tools.experiments.common import held_out_batch, run_training
from tools.experiments.ddpm import open_token_folder, prediction_report, prepare_config, trained_first_stage
from tools.experiments.first_stage import Adversary, GanConfig, autoencoder_optimizers
from tools.experiments.pvdm import AutoencoderLossConfig, PVDMAutoencoderTask, build_section_model, run_first_stage
from tools.registry import Experiment, FirstStageEntry
from tools.tokens import TokenDataset
from tools.trainer import StepContext, TrainTask


# ----------------------------------------------------------------------------- first stage
@dataclass
class TubeletFirstStageConfig(AutoencoderLossConfig):
    arch: str = "tubelet"
    tubelet: TubeletAutoencoderConfig = field(default_factory=TubeletAutoencoderConfig)
    # Hinge GAN with the repo's discriminators (model.gan: per-frame 2D and clip 3D PatchGANs,
    # adaptive generator weight, start step), added to L1 + perceptual; off by default.
    adversarial: bool = False
    gan: GanConfig = field(default_factory=GanConfig)


def build_autoencoder(cfg: DictConfig) -> TubeletAutoencoder:
    """The autoencoder of ``model.tubelet``, made for the clips of ``data`` (frames and resolution)."""
    return build_section_model(cfg, "tubelet", TubeletAutoencoderConfig, TubeletAutoencoder)


def autoencoder_from_checkpoint(run_cfg: DictConfig, state: dict) -> TubeletAutoencoder:
    return with_trained_weights(build_autoencoder(run_cfg), state)


def tubelet_tokens(first_stage: TubeletAutoencoder, cond_frames: int) -> TubeletTokens:
    try:
        return TubeletTokens(first_stage, cond_frames)
    except ValueError as err:
        raise ConfigError(str(err)) from None


class TubeletAutoencoderTask(PVDMAutoencoderTask):
    """L1 + perceptual reconstruction (the shared baseline-autoencoder objective), optionally + hinge GAN;
    samples also report FSQ codebook usage."""

    build = staticmethod(build_autoencoder)

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.adversary = Adversary(self.mcfg.gan) if self.mcfg.adversarial else None

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model, **(self.adversary.discs if self.adversary else {})}

    def configure_optimizers(self, nets: dict[str, nn.Module], cfg: DictConfig) -> dict:
        return autoencoder_optimizers(nets, cfg, self.adversary)

    def training_step(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        if self.adversary is None:
            return super().training_step(batch, step, ctx)
        video = batch["video"]
        gan_on = step >= self.mcfg.gan.start_step
        with ctx.autocast():
            recon = ctx.nets["model"](video)
            loss, logs = self.reconstruction(recon, video)
            if gan_on:
                g_loss, g_logs = self.adversary.generator_loss(ctx, recon, loss, ctx.raw_nets["model"].decoder[-1].weight)
                loss = loss + g_loss
                logs.update(g_logs)
        ctx.step(loss, "model")
        if gan_on:
            logs["d_loss"] = self.adversary.discriminator_step(ctx, video, recon)
        return {"loss": loss.detach(), **logs}

    @torch.no_grad()
    def sample(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        """The autoencoder's sample report, and how much of the FSQ codebook is in use: codes on the
        held-out clips, and codes unused for the last 100 training steps (``dead_codes``)."""
        results = super().sample(batch, step, ctx)
        model = ctx.eval_net("model")
        stats = model.quantizer.usage.stats(model.encode(batch["video"])["indices"])
        dead = ctx.raw_nets["model"].quantizer.usage.stats(torch.zeros(1, dtype=torch.long))["dead_codes"]
        size = model.codebook_size
        results.update({"codebook/perplexity": torch.tensor(stats["perplexity"]),
                        "codebook/used_codes": torch.tensor(float(stats["used_codes"])),
                        "codebook/dead_codes": torch.tensor(float(dead)),
                        "codebook/usage": torch.tensor(1.0 - dead / size)})
        return results


TUBELET_FIRST_STAGE = Experiment(
    name="first_stage", model_schema=TubeletFirstStageConfig,
    default_config="configs/first_stage/tubelet_shapes32.yaml",
    run=functools.partial(run_first_stage, task_class=TubeletAutoencoderTask),
    build_task=lambda cfg, device: TubeletAutoencoderTask(cfg, device),
    first_stage=FirstStageEntry(build=autoencoder_from_checkpoint, tokens=tubelet_tokens),
    description="the FSQ tubelet autoencoder (model.arch: tubelet)",
)


# ----------------------------------------------------------------------------- transformer
@dataclass
class TransformerConfig:
    transformer: TubeletTransformerConfig = field(default_factory=TubeletTransformerConfig)
    sampling: TubeletSamplingConfig = field(default_factory=TubeletSamplingConfig)  # defaults of predictions
    frames: int = 16  # frames of a training sequence: cond_frames observed + the ones predicted
    cond_frames: int = 4  # K observed frames of a prediction (a multiple of the tubelet length)
    eval_clips: int = 4  # held-out clips predicted at every sample step
    tokens: Optional[str] = None  # token folder from --exp extract; None: clips encoded by the first stage


def sequence_span(cfg: DictConfig, first_stage_cfg: DictConfig) -> int:
    """The frames of a training clip (``model.frames``), checked against the first stage's tubelets."""
    if OmegaConf.select(first_stage_cfg, "model.arch") != "tubelet":
        raise ConfigError(f"--exp transformer needs a tubelet first stage (model.arch: tubelet); the first model is "
                          f"a '{OmegaConf.select(first_stage_cfg, 'model.arch', default='moso')}' one")
    t = int(first_stage_cfg.model.tubelet.tubelet[0])
    frames, k = int(cfg.model.frames), int(cfg.model.cond_frames)
    if frames % t or k % t or not 0 < k < frames:
        raise ConfigError(f"model.frames ({frames}) and model.cond_frames ({k}) must be multiples of the tubelet "
                          f"length {t}, with 0 < cond_frames < frames")
    return frames


def load_tubelet(cfg: DictConfig) -> TubeletAutoencoder:
    """The frozen first stage ``cfg`` builds on."""
    return trained_first_stage(cfg, TubeletAutoencoder, "tubelet transformer", span=sequence_span).model


def sampling_config(cfg: DictConfig) -> TubeletSamplingConfig:
    try:
        return TubeletSamplingConfig(**OmegaConf.to_container(cfg.model.sampling, resolve=True))
    except ValueError as err:
        raise ConfigError(f"model.sampling: {err}") from None


class TransformerTask(TrainTask):
    """Next-token cross-entropy over the time-major token sequence of a clip (all its tokens but the
    first are targets); ``loss_future`` is the part over the tokens after the ``K`` observed frames."""

    ema_nets = ("model",)

    def __init__(self, cfg: DictConfig, first_stage: TubeletAutoencoder) -> None:
        self.cfg = cfg
        self.first_stage = first_stage.eval().requires_grad_(False)
        try:
            self.net = TubeletTransformer(OmegaConf.to_container(cfg.model.transformer, resolve=True),
                                          first_stage.codebook_size)
        except ValueError as err:
            raise ConfigError(f"model.transformer: {err}") from None
        self.sampling = sampling_config(cfg)
        self.cond_frames, self.frames = int(cfg.model.cond_frames), int(cfg.model.frames)
        _, h, w = first_stage.token_grid()
        self.observed_tokens = self.cond_frames // first_stage.tubelet[0] * h * w

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.net}

    def setup(self, ctx: StepContext) -> None:
        self.first_stage.to(ctx.device)

    @torch.no_grad()
    def sequence(self, batch: dict) -> torch.Tensor:
        """``[B, L]`` tokens of a batch of clips, or of stored token grids (``model.tokens``)."""
        grid = batch["tokens"] if "tokens" in batch else self.first_stage.encode(batch["video"])["indices"]
        return rearrange(grid, "b t h w -> b (t h w)")

    def training_step(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        seq = self.sequence(batch)
        with ctx.autocast():
            logits = ctx.nets["model"](seq[:, :-1])
        losses = F.cross_entropy(rearrange(logits.float(), "b n v -> b v n"), seq[:, 1:], reduction="none")
        loss = losses.mean()
        ctx.step(loss, "model")
        return {"loss": loss.detach(), "loss_future": losses[:, self.observed_tokens - 1:].mean().detach()}

    def predictor(self, net: nn.Module) -> TubeletPredictor:
        return TubeletPredictor(self.first_stage, net, self.cond_frames, self.frames - self.cond_frames, self.sampling)

    def sample(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        video = batch["video"]
        observed, future = video[:, :, :self.cond_frames], video[:, :, self.cond_frames:self.frames]
        generator = torch.Generator().manual_seed(int(self.cfg.seed) + step)
        return prediction_report(observed, future, self.predictor(ctx.eval_net("model")).predict(observed, generator))


def token_dataset(cfg: DictConfig) -> TokenDataset:
    """The training split of ``model.tokens``: tubelet token grids of clips of ``model.frames`` frames
    extracted with this run's first stage."""
    meta, train = open_token_folder(cfg)
    frames = int(meta.get("frames", 0)) + int(meta.get("cond_frames", 0))
    if meta.get("arrays") != ["tokens"] or frames != int(cfg.model.frames):
        raise ConfigError(f"{cfg.model.tokens} does not hold tubelet tokens of {cfg.model.frames}-frame clips (it "
                          f"holds {meta.get('arrays')} of {frames}-frame clips); extract with model.cond_frames="
                          f"<model.frames - the first stage's frames>")
    return train


def run_transformer(cfg: DictConfig, run_dir: Path, resume: bool) -> int:
    first_stage = load_tubelet(cfg)
    train = token_dataset(cfg) if cfg.model.get("tokens") else build_dataset(cfg.data, "train", cfg.seed)
    return run_training(lambda device: TransformerTask(cfg, first_stage), cfg, run_dir, resume, train,
                        sample_batch=held_out_batch(cfg))


def load_predictor(checkpoint: str | Path | dict, device: torch.device | str = "cpu",
                   raw_weights: bool = False) -> TubeletPredictor:
    """The predictor of a ``--exp transformer`` checkpoint: the transformer's EMA weights (``raw_weights``:
    the raw ones) and the first stage its config names."""
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, exps=("transformer",))
    cfg = OmegaConf.create(state["config"])
    task = TransformerTask(cfg, load_tubelet(cfg))
    task.net.load_state_dict(load_net_state(state, "model", ema=False if raw_weights else None))
    task.first_stage.to(device)
    return task.predictor(task.net.to(device).eval())


TRANSFORMER = Experiment(
    name="transformer", model_schema=TransformerConfig, default_config="configs/transformer/tubelet_shapes32.yaml",
    run=run_transformer, build_task=lambda cfg, device: TransformerTask(cfg, load_tubelet(cfg)),
    prepare_config=functools.partial(prepare_config, span=sequence_span), load_predictor=load_predictor,
    description="causal ALiBi transformer over a tubelet autoencoder's tokens (--first_model; model.tokens)",
)
