"""``--exp ddpm``: the second stage, a latent DDPM over the frozen first stage's motion codes.

    python main.py --exp ddpm --config configs/ddpm/rsvp_s2_shapes64.yaml --first_model results/gan_main_shapes_42/model_last.pth

A training example is a clip of ``K + T`` frames (``K = model.cond_frames`` observed, ``T`` the
first stage's clip length): the denoiser (``model.net``: rsvp_s2 | rsvp_s1 | rsvp_m) learns the
motion codes of the future ``T`` frames, conditioned on the scene/object/motion codes of the
observed frames only (models/latent_space.py). ``train.py`` runs the same task from a token
folder written by ``--exp extract`` with ``model.cond_frames=K`` (no first-stage encoding per step).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import default_collate

from evaluation.frame_metrics import psnr_per_frame
from evaluation.protocol import copy_last_frame_baseline
from evaluation.weights import sha256_file
from models import build_model, get_model_class
from models.diffusion import DiffusionConfig, build_diffusion
from models.interface import Predictor, pseudo_clip
from models.latent_space import ScaledLatentSpace, SemanticLatentSpace
from models.moso import MosoVQVAE
from models.rsvp_predictor import RSVPPredictor
from models.unets.config import RSVPS2Config
from tools.checkpoint import load_checkpoint, load_net_state
from tools.config import ConfigError
from tools.datasets import build_dataset
from tools.experiments.common import held_out_batch, run_training
from tools.pretrained import TrainedFirstStage, find_first_stage, first_stage_config, load_first_stage
from tools.registry import Experiment
from tools.tokens import TokenDataset, read_meta
from tools.trainer import StepContext, TrainTask, build_optimizer


@dataclass
class DDPMConfig:
    net: str = "rsvp_s2"  # rsvp_s2 | rsvp_s1 (2D ablation) | rsvp_m (masked conditional)
    # The denoiser's own config (its class's ``config_class``: models/unets/config.py), chosen by ``net``.
    unet: Any = field(default_factory=RSVPS2Config)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    cond_frames: int = 4  # K observed frames; the prediction is the next T (the first stage's clip length)
    snap_to_codebook: bool = False  # decode sampled motion through its nearest codebook rows
    scale_clips: int = 32  # training clips used to measure the latent scale factor
    # The codes the scale factor is the standard deviation of: all (scene, object and motion) |
    # motion (only the diffused part; docs/FIRST_STAGE.md, latent scale)
    scale_from: str = "all"
    eval_clips: int = 4  # held-out clips sampled at every sample step
    tokens: Optional[str] = None  # token folder (train.py); None: encode clips with the first stage


def denoiser_schema(net: str) -> Any:
    """A fresh config of the denoiser registered as ``net`` (its class's ``config_class``)."""
    try:
        cls = get_model_class(net)
    except KeyError as err:
        raise ConfigError(f"model.net: {err.args[0]}") from None
    if getattr(cls, "config_class", None) is None:
        raise ConfigError(f"model.net: '{net}' is not a second-stage denoiser")
    return cls.config_class()


def select_model_schema(raw: DictConfig) -> DDPMConfig:
    """The ``model`` schema of a config: ``model.unet`` is checked against ``model.net``'s own schema."""
    net = str(OmegaConf.select(raw, "model.net", default=DDPMConfig.net))
    return DDPMConfig(net=net, unet=denoiser_schema(net))


def denoiser_config(model: DictConfig) -> Any:
    """``model.unet`` as the config of ``model.net``'s denoiser. A config saved before each denoiser
    had a schema of its own holds every variant's fields: the ones this denoiser lacks are dropped."""
    schema = denoiser_schema(str(model.net))
    known = {f.name for f in fields(schema)}
    values = OmegaConf.to_container(model.unet, resolve=True)
    return type(schema)(**{k: v for k, v in values.items() if k in known})


def prepare_config(cfg: DictConfig, span: Optional[Callable[[DictConfig, DictConfig], int]] = None) -> None:
    """Clips are cut to what the first stage was built for: K observed + its T frames (or
    ``span(cfg, first_stage_config)`` frames, for a method that trains on longer clips), its resolution."""
    source = first_stage_config(find_first_stage(cfg))  # the weights are read once, by the run
    cfg.data.resolution = source.data.resolution
    cfg.data.frames = (span or clip_span)(cfg, source)


def clip_span(cfg: DictConfig, first_stage_cfg: DictConfig) -> int:
    """The frames of a training clip: ``K = model.cond_frames`` observed + the first stage's ``T``."""
    return int(cfg.model.cond_frames) + int(first_stage_cfg.data.frames)


def trained_first_stage(cfg: DictConfig, kind: type, method: str,
                        span: Optional[Callable[[DictConfig, DictConfig], int]] = None) -> TrainedFirstStage:
    """The first stage ``cfg`` builds on, checked: a ``kind`` model (the one ``method`` diffuses
    the latents of) made for clips of ``data.resolution`` and ``data.frames - model.cond_frames``
    frames (or whose ``span``, see :func:`prepare_config`, is ``data.frames``)."""
    path = find_first_stage(cfg)
    trained = load_first_stage(path)
    if not isinstance(trained.model, kind):
        arch = OmegaConf.select(trained.config, "model.arch", default="moso")
        raise ConfigError(f"model.net {cfg.model.net} ({method}) needs a {kind.__name__} first stage; {path} holds "
                          f"a '{arch}' one (train one with model.arch matching, or pick a model.net for it)")
    first_stage, run_cfg = trained.model, trained.config
    frames = (span or clip_span)(cfg, run_cfg)
    if (run_cfg.data.resolution, frames) != (cfg.data.resolution, cfg.data.frames):
        raise ConfigError(f"data.resolution/data.frames ({cfg.data.resolution}, {cfg.data.frames}) do not fit the "
                          f"first stage {path} ({run_cfg.data.resolution}, {frames} frames for its {first_stage.frames})")
    return trained


def load_latent_space(cfg: DictConfig, scale: Optional[float] = None) -> SemanticLatentSpace:
    if str(cfg.model.get("scale_from", "all")) not in SCALE_FROM:
        raise ConfigError(f"model.scale_from must be one of {', '.join(SCALE_FROM)}; got {cfg.model.scale_from!r}")
    first_stage = trained_first_stage(cfg, MosoVQVAE, "RSVP").model
    return SemanticLatentSpace(first_stage, scale=scale, snap_to_codebook=bool(cfg.model.snap_to_codebook))


def build_denoiser(cfg: DictConfig, space: SemanticLatentSpace) -> nn.Module:
    return build_model(cfg.model.net, cfg=denoiser_config(cfg.model), code_dim=space.first_stage.cfg.code_dim,
                       latent_shapes=space.first_stage.latent_shapes())


class LatentDiffusionTask(TrainTask):
    """A denoiser ``net`` trained by a diffusion on the latents of a frozen first stage (``space``),
    predicting the next ``T`` frames from ``K = model.cond_frames`` observed ones. A method supplies
    the net, ``example`` (condition and x0 of a batch), ``loss`` and ``predictor``; samples show
    observed | truth | prediction with PSNR beside copy-last-frame's."""

    ema_nets = ("model",)

    def __init__(self, cfg: DictConfig, space: ScaledLatentSpace, net: nn.Module) -> None:
        self.cfg, self.space, self.net = cfg, space, net
        self.cond_frames = int(cfg.model.cond_frames)
        self.diffusion = build_diffusion(cfg.model.diffusion)

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.net}

    def configure_optimizers(self, nets: dict[str, nn.Module], cfg: DictConfig) -> dict:
        return {"model": build_optimizer(nets["model"].parameters(), cfg.train.optim, cfg.train.max_steps)}

    def setup(self, ctx: StepContext) -> None:
        self.space.to(ctx.device)
        self.diffusion.to(ctx.device)

    def state_dict(self) -> dict[str, Any]:
        return {"scale": float(self.space.scale)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.space.scale.fill_(float(state["scale"]))

    def split(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Observed ``[B, C, K, H, W]`` and future ``[B, C, T, H, W]`` frames of a ``K + T`` clip."""
        k, t = self.cond_frames, self.space.frames
        if video.shape[2] < k + t:
            raise ValueError(f"clips have {video.shape[2]} frames; the second stage needs {k} observed + {t} future")
        return video[:, :, :k], video[:, :, k:k + t]

    def example(self, batch: dict) -> tuple[Any, torch.Tensor]:
        """(condition, x0) of a batch."""
        raise NotImplementedError

    def loss(self, net: nn.Module, x0: torch.Tensor, cond: Any) -> dict[str, torch.Tensor]:
        """The method's diffusion loss (``loss`` with graph, other entries logged)."""
        raise NotImplementedError

    def predictor(self, net: nn.Module) -> Predictor:
        """This task's method with denoiser ``net`` (e.g. the EMA copy) as a Predictor."""
        raise NotImplementedError

    def training_step(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        cond, x0 = self.example(batch)
        with ctx.autocast():
            out = self.loss(ctx.nets["model"], x0, cond)
        ctx.step(out["loss"], "model")
        return {name: value.detach() for name, value in out.items() if name.startswith("loss") and value.dim() == 0}

    def predict(self, net: nn.Module, observed: torch.Tensor, generator: torch.Generator,
                **sample_options: Any) -> torch.Tensor:
        """Frames ``[B, 3, T, H, W]`` following the observed ones (one clip)."""
        return self.predictor(net).predict(observed, generator, **sample_options)

    def sample(self, batch: dict, step: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        observed, future = self.split(batch["video"])
        generator = torch.Generator().manual_seed(int(self.cfg.seed) + step)
        return prediction_report(observed, future, self.predict(ctx.eval_net("model"), observed, generator))


def prediction_report(observed: torch.Tensor, future: torch.Tensor, pred: torch.Tensor) -> dict[str, torch.Tensor]:
    """A sample step's preview (observed, last frame held | truth | prediction) and PSNR beside copy-last-frame's."""
    copy_last = copy_last_frame_baseline(observed, future.shape[2])
    shown = pseudo_clip(observed, future.shape[2])  # the observed frames, last one held
    return {
        "prediction": torch.cat([shown, future, pred], dim=-1),
        "eval/psnr": psnr_per_frame(pred, future).mean(),
        "eval/psnr_copy_last_frame": psnr_per_frame(copy_last, future).mean(),
    }


class DDPMTask(LatentDiffusionTask):
    """RSVP: diffusion loss on the future motion codes, conditioned on the observed scene/object/motion."""

    space: SemanticLatentSpace

    def __init__(self, cfg: DictConfig, space: SemanticLatentSpace) -> None:
        super().__init__(cfg, space, build_denoiser(cfg, space))

    def example(self, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(condition, x0) of a batch of clips or of stored token pairs."""
        if "video" in batch:
            observed, future = self.split(batch["video"])
            return self.space.condition(observed), self.space.target(future, observed)
        cond = self.space.from_indices({k: batch[f"cond_{k}"] for k in ("scene", "object", "motion")})
        return cond, self.space.from_indices({"motion": batch["future_motion"]})["motion"]

    def loss(self, net: nn.Module, x0: torch.Tensor, cond: Any) -> dict[str, torch.Tensor]:
        return self.diffusion.training_loss(net, x0, cond)

    def predictor(self, net: nn.Module) -> RSVPPredictor:
        return RSVPPredictor(self.space, self.diffusion, net, self.cond_frames)


# model.scale_from -> the code components the latent scale is measured on.
SCALE_FROM = {"all": ("scene", "object", "motion"), "motion": ("motion",)}


def fit_scale(space: ScaledLatentSpace, cfg: DictConfig, train) -> float:
    """The latent scale factor from ``model.scale_clips`` training clips (their future halves)."""
    n = min(len(train), int(cfg.model.scale_clips))
    k = int(cfg.model.cond_frames)
    batch = default_collate([train[i] for i in range(n)])
    if "video" in batch:
        clips = list(batch["video"][:, :, k:k + space.frames].split(8))
        return space.fit_scale(clips, **({"components": SCALE_FROM[str(cfg.model.scale_from)]}
                                         if "scale_from" in cfg.model else {}))
    codes = space.first_stage.codes_from_indices({k: batch[f"cond_{k}"] for k in ("scene", "object", "motion")})
    codes = [v for name, v in codes.items() if name in SCALE_FROM[str(cfg.model.scale_from)]]
    codes.append(space.first_stage.codes_from_indices({"motion": batch["future_motion"]})["motion"])
    return space.fit_scale_to_codes(codes)


def token_dataset(cfg: DictConfig) -> TokenDataset:
    """The training split of ``model.tokens``, checked against this config and first stage."""
    meta, train = open_token_folder(cfg)
    if meta.get("cond_frames", 0) != int(cfg.model.cond_frames):
        raise ConfigError(f"{cfg.model.tokens} holds tokens for cond_frames={meta.get('cond_frames', 0)} (extract "
                          f"with model.cond_frames={cfg.model.cond_frames}, or set model.cond_frames="
                          f"{meta.get('cond_frames')})")
    return train


def open_token_folder(cfg: DictConfig) -> tuple[dict, TokenDataset]:
    """(meta.json, the training split) of ``model.tokens``, refused unless extracted with this run's first stage."""
    folder = Path(cfg.model.tokens)
    try:
        meta = read_meta(folder)
        train = TokenDataset(folder, "train")
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    if meta["identity"]["checkpoint_sha256"] != sha256_file(find_first_stage(cfg)):
        raise ConfigError(f"{folder} was extracted with {meta['checkpoint']}, not with --first_model {cfg.first_model}")
    return meta, train


def run_latent_diffusion(cfg: DictConfig, run_dir: Path, resume: bool, space: ScaledLatentSpace,
                         make_task: Callable[[DictConfig, Any], LatentDiffusionTask]) -> int:
    """Train a latent diffusion task: the latent scale measured on training clips (a fresh run),
    then the shared Trainer. ``model.tokens`` set: train from a token folder (``train.py``)."""
    train = token_dataset(cfg) if cfg.model.get("tokens") else build_dataset(cfg.data, "train", cfg.seed)
    if not resume:
        scale = fit_scale(space, cfg, train)
        print(f"[{cfg.exp}] latent scale factor {scale:.4f} (std of the latent values of "
              f"{min(len(train), cfg.model.scale_clips)} clips)")
    sample = held_out_batch(cfg)
    return run_training(lambda device: make_task(cfg, space), cfg, run_dir, resume, train, sample_batch=sample)


def run_ddpm(cfg: DictConfig, run_dir: Path, resume: bool) -> int:
    """``main.py --exp ddpm`` (clips encoded on the fly) and ``train.py`` (``model.tokens`` set)."""
    return run_latent_diffusion(cfg, run_dir, resume, load_latent_space(cfg), DDPMTask)


def load_latent_diffusion(checkpoint: str | Path | dict, device: torch.device | str, raw_weights: bool,
                          load_space: Callable[..., ScaledLatentSpace],
                          make_task: Callable[[DictConfig, Any], LatentDiffusionTask]) -> Predictor:
    """The predictor of a ``--exp ddpm`` checkpoint (its path or contents) on ``device``: the
    denoiser's EMA weights (``raw_weights``: the raw ones), the stored latent scale, and the
    first stage its config names (``load_space(cfg, scale=)``)."""
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, exps=("ddpm",))
    cfg = OmegaConf.create(state["config"])
    task = make_task(cfg, load_space(cfg, scale=float(state["task"]["scale"])))
    task.net.load_state_dict(load_net_state(state, "model", ema=False if raw_weights else None))
    for module in (task.space, task.diffusion, task.net):
        module.to(device)
    return task.predictor(task.net.eval())


def load_predictor(checkpoint: str | Path | dict, device: torch.device | str = "cpu",
                   raw_weights: bool = False) -> RSVPPredictor:
    """RSVP's predictor of a ``--exp ddpm`` checkpoint (see :func:`load_latent_diffusion`)."""
    return load_latent_diffusion(checkpoint, device, raw_weights, load_latent_space, DDPMTask)


DDPM = Experiment(
    name="ddpm", model_schema=DDPMConfig, default_config="configs/ddpm/rsvp_s2_shapes64.yaml",
    run=run_ddpm,
    build_task=lambda cfg, device: DDPMTask(cfg, load_latent_space(cfg, scale=1.0)),
    prepare_config=prepare_config,
    select_model_schema=select_model_schema,
    load_predictor=load_predictor,
    description="RSVP: latent DDPM over the first stage's motion codes (--first_model; model.net: rsvp_s2 | rsvp_s1 | rsvp_m)",
)
