"""The one training loop shared by every stage (first stage, GAN fine-tune, latent DDPM, baselines).

A stage writes a :class:`TrainTask`; the :class:`Trainer` does everything else: devices, DDP,
mixed precision, gradient scaling and clipping, optimizers and LR schedules, EMA, the resumable
data stream, logging, samples, checkpoints, exact resume, signals and non-finite losses.

Task interface
--------------
Subclass :class:`TrainTask` and implement the methods marked *required*::

    class MyTask(TrainTask):
        ema_nets = ("model",)                          # nets that get an EMA copy (optional)

        def networks(self) -> dict[str, nn.Module]:    # required; called once by the Trainer
            return {"model": self.model, "disc": self.disc}

        def configure_optimizers(self, nets, cfg):     # optional; default: one "model" optimizer
            return {"model": build_optimizer(nets["model"].parameters(), cfg.train.optim, cfg.train.max_steps),
                    "disc": build_optimizer(nets["disc"].parameters(), cfg.train.optim, cfg.train.max_steps)}

        def setup(self, ctx: StepContext) -> None:     # optional; e.g. move frozen helpers to ctx.device
            ...

        def training_step(self, batch, step, ctx) -> dict[str, Tensor]:   # required
            with ctx.autocast():
                out = ctx.nets["model"](batch["video"])          # use ctx.nets (DDP-wrapped)
                d_loss = hinge_d(ctx.nets["disc"](batch["video"]), ctx.nets["disc"](out.detach()))
            ctx.step(d_loss, "disc")                             # update 1
            with ctx.autocast():
                g_loss = rec(out, batch["video"]) - 0.1 * ctx.nets["disc"](out).mean()
            ctx.step(g_loss, "model")                            # update 2
            return {"loss": g_loss, "d_loss": d_loss}            # scalars to log (detached by the Trainer)

        def sample(self, batch, step, ctx) -> dict[str, Tensor]:  # optional; rank 0, no_grad, eval mode
            recon = ctx.eval_net("model")(batch["video"])         # [B, C, T, H, W] in [-1, 1]
            return {"recon": recon, "eval/l1": (recon - batch["video"]).abs().mean()}  # videos + 0-dim numbers

        def state_dict(self) -> dict: ...              # optional extra task state (plain containers,
        def load_state_dict(self, state) -> None: ...  # tensors, numbers, strings)

* ``step`` passed to ``training_step``/``sample`` is the number of iterations completed before
  this one (0-based). Logs, metrics and ``model_{step}.pth`` count completed iterations.
* ``ctx.step(loss, name)``: zero that optimizer's grads, (scaled) backward, unscale, clip to
  ``train.grad_clip`` (global norm, logged as ``grad_norm/{name}``), optimizer step (skipped by
  the fp16 GradScaler on overflow), scaler update, zero grads. Usually once per optimizer per
  iteration, in any order: a GAN does two updates per step. Zeroing before the backward means
  gradients that the generator's loss left in the discriminator never leak into its update.
  ``retain_graph=True`` keeps the graph (e.g. after an adaptive-weight ``autograd.grad``).
* ``train.grad_accum = k``: each iteration draws a batch of ``k x train.batch_size`` (the data of
  an unaccumulated run with that batch) and runs ``training_step`` on its ``k`` micro-batches;
  ``ctx.step`` backpropagates ``loss / k`` and updates once, after the last micro-batch, from the
  summed gradients (banked per optimizer, so a GAN's two losses stay apart). Logged scalars are
  micro-batch means. Equal to the big batch for mean losses without batch statistics; in a GAN
  the generator's micro-batches see the discriminator of the iteration's start.
* Extra scalars: return them from ``training_step`` or call ``ctx.log(name, value)``; values
  stay on the device until the next log step. ``ctx.global_step`` is the current ``step``.
* Every LR scheduler steps once per iteration (schedules follow the global step, also for an
  optimizer that is not used in early steps), after ``training_step`` and the EMA update.
* In the forward passes of training use ``ctx.nets[name]`` (wrapped in DDP when distributed;
  gradients only synchronise through the wrapper's ``forward``). ``ctx.raw_nets`` are the plain
  modules, ``ctx.ema[name].module`` the EMA copies, ``ctx.eval_net(name)`` the EMA copy if any.
* ``sample`` runs on rank 0 only, so it must not call ``ctx.nets`` (DDP) — use ``eval_net``/``raw_nets``.
  It runs under ``torch.no_grad``, nets in eval mode, with the RNG seeded by (seed, step) and
  restored afterwards: samples are repeatable and never change the training randomness.
* Data: ``fit(dataset)`` draws batches through ``tools.loader.build_loader`` whose order depends
  only on ``(cfg.seed, step)``; ``dataset[(index, draw)]`` returns a dict with ``"video"``
  ``[C, T, H, W]``. Batches arrive on the device (``non_blocking``, pinned memory on CUDA).

Precision (``train.precision``): ``auto`` = bf16 autocast on CUDA, fp32 on CPU; ``bf16``
(CPU too); ``fp16`` = autocast + one ``GradScaler`` per optimizer; ``fp32``. Autocast is applied
where the task calls ``ctx.autocast()``.

Speed options (measured in docs/BENCHMARKS.md): ``train.compile`` wraps each trained net (after
DDP) in ``torch.compile``; ``ctx.nets`` are the compiled ones, ``ctx.raw_nets``, EMA copies and
checkpoints stay plain. ``train.channels_last`` stores 5-D weights channels_last_3d and 4-D
weights channels_last (convolutions then produce channels-last activations); values, state
dicts and checkpoints are unchanged.

Stopping
--------
* ``max_steps`` reached: a final checkpoint, ``fit`` returns the logged records.
* SIGINT/SIGTERM: the handler only sets a flag; the iteration in progress finishes, a checkpoint is
  written and :class:`TrainingInterrupted` is raised (``exit_code`` = 128 + signal number, what a
  CLI should exit with). A second Ctrl-C aborts at once without saving. Under DDP the flag is
  all-reduced every step (CPU/gloo, no GPU sync) so all ranks stop at the same iteration.
* A non-finite loss term (or grad norm, outside fp16) raises :class:`NonFiniteLossError` naming
  the term and the step. Loss values stay on the device and are checked (one sync) at every log
  and checkpoint step; weights are also checked before every save, so no checkpoint holds NaN and
  the last good one stays intact.

Checkpoints: see :mod:`tools.checkpoint` for the layout; ``Trainer(..., resume=True)`` continues
from ``run_dir/model_last.pth`` with identical results to an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import default_collate
from tqdm import tqdm

from models.ema import EMA
from models.memory_format import to_channels_last
from tools.checkpoint import (FORMAT, CheckpointError, find_resume_checkpoint, has_checkpoint,
                              last_checkpoint_path, load_checkpoint, save_run_checkpoint)
from tools.config import ConfigError, resume_changes, save_config
from tools.distributed import all_gather_objects, get_rank, get_world_size, is_distributed, resolve_device
from tools.loader import build_loader
from tools.seeding import rng_state, seed_everything, set_rng_state
from tools.train_logging import RunLogger, format_scalars

__all__ = ["TrainTask", "StepContext", "Trainer", "build_optimizer", "lr_schedule",
           "resolve_precision", "move_to_device", "to_channels_last", "TrainingInterrupted", "NonFiniteLossError"]


# --------------------------------------------------------------------------------------------
# Errors


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint. Exit with :attr:`exit_code`."""

    def __init__(self, step: int, signum: int, checkpoint: Optional[Path]) -> None:
        self.step, self.signum, self.checkpoint = step, signum, checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"training interrupted by {name} at step {step}; checkpoint saved to {checkpoint}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class NonFiniteLossError(RuntimeError):
    """A loss term (or grad norm, or weight) became NaN/inf; training stopped without saving."""

    def __init__(self, step: int, term: str, value: float, last_checkpoint: Optional[Path]) -> None:
        self.step, self.term, self.value, self.last_checkpoint = step, term, value, last_checkpoint
        where = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint was saved yet"
        super().__init__(f"non-finite value {value} for '{term}' at step {step}; training stopped ({where}). "
                         "Lower the learning rate, enable train.grad_clip or use precision=fp32/bf16.")


# --------------------------------------------------------------------------------------------
# Optimizers, schedules, precision


def lr_schedule(warmup_steps: int, schedule: str, max_steps: int, min_lr_ratio: float):
    """LR multiplier ``f(step)``: linear warm-up to 1 over ``warmup_steps``, then constant or cosine
    decay reaching ``min_lr_ratio`` at ``max_steps``."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown LR schedule '{schedule}': expected constant or cosine")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_optimizer(params: Iterable[nn.Parameter] | Iterable[dict], optim_cfg: Any,
                    max_steps: int) -> tuple[Optimizer, LambdaLR]:
    """Adam/AdamW and its LR schedule from an :class:`tools.config.OptimConfig`.

    With ``weight_decay > 0`` and plain parameters, tensors with fewer than 2 dimensions (biases,
    norm scales) are put in a group without weight decay. The fused kernel is used on CUDA and CPU
    unless ``optim.fused`` is false.
    """
    params = list(params)
    if params and isinstance(params[0], dict):
        groups = params
    else:
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ValueError("build_optimizer got no trainable parameters")
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        if optim_cfg.weight_decay > 0 and no_decay:
            groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        else:
            groups = [{"params": params}]
    first = next(iter(groups[0]["params"]), None)
    # Fused kernel on CUDA and CPU: 4.1x faster update, 1.05x DDPM step on CPU (docs/BENCHMARKS.md).
    fused = bool(optim_cfg.fused) and first is not None and first.device.type in ("cuda", "cpu")
    name = str(optim_cfg.name).lower()
    kwargs = dict(lr=float(optim_cfg.lr), betas=tuple(float(b) for b in optim_cfg.betas),
                  weight_decay=float(optim_cfg.weight_decay), fused=fused or None)
    if name == "adamw":
        optimizer: Optimizer = torch.optim.AdamW(groups, **kwargs)
    elif name == "adam":
        optimizer = torch.optim.Adam(groups, **kwargs)
    else:
        raise ValueError(f"unknown optimizer '{optim_cfg.name}': expected adam or adamw")
    factor = lr_schedule(int(optim_cfg.warmup_steps), str(optim_cfg.schedule), int(max_steps),
                         float(optim_cfg.min_lr_ratio))
    return optimizer, LambdaLR(optimizer, factor)


def resolve_precision(precision: str, device: torch.device) -> tuple[Optional[torch.dtype], bool]:
    """``(autocast dtype or None, use GradScaler)`` for ``auto | fp32 | bf16 | fp16``."""
    precision = str(precision).lower()
    if precision == "auto":
        if device.type != "cuda":
            return None, False
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if precision == "fp16":
        return torch.float16, True
    raise ValueError(f"unknown precision '{precision}': expected auto, fp32, bf16 or fp16")


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors inside dicts/lists/tuples moved to ``device`` (``non_blocking``); other values kept."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


# --------------------------------------------------------------------------------------------
# Task interface


class TrainTask:
    """What a stage supplies to the :class:`Trainer` (see the module docstring)."""

    #: Names (keys of :meth:`networks`) of the nets that get an EMA copy (``train.ema_decay > 0``).
    ema_nets: tuple[str, ...] = ()

    def networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def configure_optimizers(self, nets: dict[str, nn.Module], cfg: DictConfig
                             ) -> dict[str, Optimizer | tuple[Optimizer, Optional[LRScheduler]]]:
        """Default: one optimizer ``"model"`` over every trainable parameter, from ``cfg.train.optim``."""
        params = [p for net in nets.values() for p in net.parameters() if p.requires_grad]
        return {"model": build_optimizer(params, cfg.train.optim, cfg.train.max_steps)}

    def setup(self, ctx: "StepContext") -> None:
        """Called once when nets, optimizers and EMA are ready (before any checkpoint is loaded)."""

    def training_step(self, batch: Any, step: int, ctx: "StepContext") -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ``sample(self, batch, step, ctx) -> dict[str, Tensor]`` is optional: define it to get samples.
    sample = None

    def sample_warnings(self, scalars: dict[str, float]) -> list[str]:
        """Warnings the log should carry about a sample step's numbers (e.g. a collapsing model)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class StepContext:
    """What ``training_step``/``sample`` get from the Trainer: nets, autocast and ``step(loss, name)``."""

    def __init__(self, trainer: "Trainer") -> None:
        self._trainer = trainer
        self.cfg: DictConfig = trainer.cfg
        self.device: torch.device = trainer.device
        self.rank: int = trainer.rank
        self.world_size: int = trainer.world_size
        self.nets: dict[str, nn.Module] = trainer.train_nets
        self.raw_nets: dict[str, nn.Module] = trainer.nets
        self.ema: dict[str, EMA] = trainer.emas
        self.optimizers: dict[str, Optimizer] = trainer.optimizers
        self.global_step: int = 0
        self._records: dict[str, torch.Tensor] = {}

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self, enabled: bool = True) -> contextlib.AbstractContextManager:
        """Mixed-precision region per ``train.precision`` (a no-op for fp32)."""
        dtype = self._trainer.autocast_dtype
        if dtype is None or not enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def eval_net(self, name: str) -> nn.Module:
        """The EMA copy of net ``name`` if it has one, else the raw net (for sampling/evaluation)."""
        return self.ema[name].module if name in self.ema else self.raw_nets[name]

    def log(self, name: str, value: torch.Tensor | float) -> None:
        """Log an extra scalar for this iteration (same as returning it from ``training_step``)."""
        self._records[name] = _as_scalar(name, value, self.device)

    def step(self, loss: torch.Tensor, optimizer: str = "model", *, retain_graph: bool = False) -> None:
        """Backward ``loss`` and update optimizer ``optimizer`` (see the module docstring)."""
        t = self._trainer
        if optimizer not in t.optimizers:
            raise KeyError(f"no optimizer '{optimizer}' (the task configured: {', '.join(t.optimizers)})")
        if loss.dim() != 0:
            raise ValueError(f"ctx.step needs a scalar loss, got shape {tuple(loss.shape)}")
        opt, scaler, params = t.optimizers[optimizer], t.scalers[optimizer], t.optimizer_params[optimizer]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss / t.accum_steps).backward(retain_graph=retain_graph)
        if t.accum_steps > 1 and not t._bank_gradients(optimizer, params):
            return  # more micro-batches to come
        scaler.unscale_(opt)
        if t.grad_clip > 0:
            norm = nn.utils.clip_grad_norm_(params, t.grad_clip)
        else:
            norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        self._records[f"grad_norm/{optimizer}"] = norm.detach().float()


def _as_scalar(name: str, value: Any, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"logged value '{name}' must be a scalar, got shape {tuple(value.shape)}")
        return value.detach().reshape(()).float()
    if isinstance(value, (int, float)):
        return torch.tensor(float(value), device=device)
    raise TypeError(f"logged value '{name}' must be a tensor or a number, got {type(value).__name__}")


def split_batch(batch: Any, parts: int) -> list[Any]:
    """``batch`` cut into ``parts`` micro-batches along the first dimension (tensors, dicts, per-sample lists)."""
    if parts == 1:
        return [batch]
    if isinstance(batch, torch.Tensor):
        return list(batch.tensor_split(parts))
    if isinstance(batch, Mapping):
        split = {k: split_batch(v, parts) for k, v in batch.items()}
        return [{k: v[i] for k, v in split.items()} for i in range(parts)]
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(v, torch.Tensor) for v in batch):
        split = [split_batch(v, parts) for v in batch]
        return [type(batch)(v[i] for v in split) for i in range(parts)]
    if isinstance(batch, (list, tuple)):
        size = -(-len(batch) // parts)
        return [batch[i * size:(i + 1) * size] for i in range(parts)]
    return [batch] * parts


def _mean_records(records: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each logged scalar averaged over the micro-batches that logged it."""
    keys = dict.fromkeys(k for r in records for k in r)
    return {k: torch.stack([r[k] for r in records if k in r]).mean() for k in keys}


# --------------------------------------------------------------------------------------------
# Trainer


class Trainer:
    """Runs a :class:`TrainTask` for ``cfg.train.max_steps`` iterations (see the module docstring).

    ``cfg`` is a resolved :class:`tools.config.RunConfig` DictConfig (``cfg.train.*``, ``cfg.seed``,
    ``cfg.data.num_workers``). ``resume=True`` continues from ``run_dir/model_last.pth``, or, when
    that file is damaged, from the newest intact ``model_{step}.pth`` (logged); with no checkpoint
    at all it starts fresh. ``resume=<path>`` continues from that file. On resume the config may
    change only :data:`tools.config.RESUMABLE_KEYS` (else ConfigError before anything is loaded or
    written), and its optimizer and schedule settings take effect. Starting fresh in a ``run_dir``
    that already holds ``model_last.pth`` is refused, so a run is never overwritten by accident.
    Call :func:`tools.distributed.init_distributed` before building the Trainer under torchrun.
    """

    def __init__(self, task: TrainTask, cfg: DictConfig, run_dir: str | Path, device: str | torch.device = "auto",
                 *, resume: bool | str | Path = False, progress: bool = True, console: bool = True) -> None:
        self.task, self.cfg, self.tcfg = task, cfg, cfg.train
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.rank, self.world_size = get_rank(), get_world_size()
        self.is_main = self.rank == 0
        self.progress, self.console = progress, console
        self.autocast_dtype, use_scaler = resolve_precision(self.tcfg.precision, self.device)
        self.grad_clip = float(self.tcfg.grad_clip)
        self.accum_steps = int(self.tcfg.grad_accum)
        self._micro_index = 0  # micro-batch of the current iteration (0 .. accum_steps - 1)
        self._grad_bank: dict[str, dict[nn.Parameter, torch.Tensor]] = {}  # accumulated grads, by optimizer
        self.step = 0
        self._notes: list[str] = []  # messages for log.txt once the logger exists
        self._pending_rng: Optional[dict] = None
        self._resumed_step: Optional[int] = None
        self._last_checkpoint: Optional[Path] = None
        self._stop_signal: Optional[int] = None
        self._buffer: list[dict[str, torch.Tensor]] = []
        self._cpu_group = None
        if is_distributed():
            # Stop flags and small objects go through a CPU (gloo) group: no GPU sync per step.
            self._cpu_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD

        nets = task.networks()
        if not isinstance(nets, dict) or not nets or not all(isinstance(n, nn.Module) for n in nets.values()):
            raise TypeError("TrainTask.networks() must return a non-empty dict of name -> nn.Module")
        self.nets: dict[str, nn.Module] = {name: net.to(self.device) for name, net in nets.items()}
        if self.tcfg.channels_last:
            for net in self.nets.values():
                to_channels_last(net)
        self.train_nets: dict[str, nn.Module] = {name: self._wrap(net) for name, net in self.nets.items()}

        unknown = [n for n in task.ema_nets if n not in self.nets]
        if unknown:
            raise KeyError(f"ema_nets names unknown nets {unknown}; nets are {list(self.nets)}")
        decay = float(self.tcfg.ema_decay)
        warmup = bool(self.tcfg.ema_warmup)
        self.emas: dict[str, EMA] = {n: EMA(self.nets[n], decay, warmup) for n in task.ema_nets} if decay > 0 else {}

        self.optimizers: dict[str, Optimizer] = {}
        self.schedulers: dict[str, LRScheduler] = {}
        for name, item in task.configure_optimizers(self.nets, cfg).items():
            opt, sched = item if isinstance(item, tuple) else (item, None)
            self.optimizers[name] = opt
            if sched is not None:
                self.schedulers[name] = sched
        if not self.optimizers:
            raise ValueError("TrainTask.configure_optimizers() returned no optimizer")
        self.optimizer_params = {name: [p for g in opt.param_groups for p in g["params"]]
                                 for name, opt in self.optimizers.items()}
        self.scalers = {name: torch.amp.GradScaler(self.device.type, enabled=use_scaler) for name in self.optimizers}
        self._checked_grad_norms = set() if use_scaler else {f"grad_norm/{n}" for n in self.optimizers}

        self.ctx = StepContext(self)
        task.setup(self.ctx)

        last = last_checkpoint_path(self.run_dir)
        if resume is True and has_checkpoint(self.run_dir):
            path, state, notes = find_resume_checkpoint(self.run_dir)  # passes over damaged files
            self._notes.extend(notes)
            self.load_checkpoint(path, state)
        elif resume is True:
            self._notes.append(f"resume: no checkpoint in {self.run_dir}, starting from scratch")
        elif resume:
            if not Path(resume).is_file():
                raise CheckpointError(f"resume checkpoint not found: {resume}")
            self.load_checkpoint(resume)
        elif last.is_file():
            raise FileExistsError(f"{self.run_dir} already holds a run ({last.name}); resume it (resume=True / "
                                  "--resume) or choose another run id / results_dir")

    # ---------------------------------------------------------------- setup helpers

    def _wrap(self, net: nn.Module) -> nn.Module:
        if not any(p.requires_grad for p in net.parameters()):
            return net
        if is_distributed():
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=device_ids,
                                          find_unused_parameters=bool(self.tcfg.find_unused_parameters))
        if self.tcfg.compile:
            net = torch.compile(net)  # compiled after DDP: its bucketing splits the graphs
        return net

    # ---------------------------------------------------------------- checkpoints

    def state_dict(self, rng_states: Optional[list] = None) -> dict[str, Any]:
        """The complete checkpoint dict (layout in :mod:`tools.checkpoint`)."""
        return {
            "format": FORMAT,
            "step": self.step,
            "nets": {n: net.state_dict() for n, net in self.nets.items()},
            "ema": {n: ema.weights() for n, ema in self.emas.items()},
            "ema_updates": {n: ema.num_updates for n, ema in self.emas.items()},
            "optimizers": {n: opt.state_dict() for n, opt in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
            "rng": rng_states if rng_states is not None else [rng_state()],
            "world_size": self.world_size,
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
            "task": self.task.state_dict(),
            "torch_version": str(torch.__version__),
        }

    def save_checkpoint(self) -> Optional[Path]:
        """Write ``model_{step}.pth`` + ``model_last.pth`` (rank 0). Every rank must call it."""
        self._check_finite_weights()
        rngs = all_gather_objects(rng_state(), group=self._cpu_group)
        path = None
        if self.is_main:
            path = save_run_checkpoint(self.run_dir, self.step, self.state_dict(rngs), int(self.tcfg.keep_last))
        self._last_checkpoint = path or last_checkpoint_path(self.run_dir)
        return path

    def load_checkpoint(self, path: str | Path, state: Optional[dict[str, Any]] = None) -> None:
        """Restore everything from a checkpoint; RNG states are applied when :meth:`fit` starts.

        The config may change only keys of :data:`tools.config.RESUMABLE_KEYS` (else ConfigError,
        before anything is loaded); optimizer and LR-schedule settings of this config take effect.
        """
        path = Path(path)
        state = load_checkpoint(path, map_location="cpu") if state is None else state
        changes = self._check_resume_config(state, path)
        for name, net in self.nets.items():
            if name not in state["nets"]:
                raise CheckpointError(f"{path} has no weights for net '{name}' (has {list(state['nets'])})")
            try:
                net.load_state_dict(state["nets"][name])
            except RuntimeError as err:
                raise CheckpointError(f"the weights of net '{name}' in {path} do not fit this model: "
                                      f"{str(err).splitlines()[-1].strip()}") from None
        for name, ema in self.emas.items():
            if name in state["ema"]:
                ema.load_weights(state["ema"][name], int(state["ema_updates"][name]))
            else:
                self._notes.append(f"resume: {path.name} has no EMA for '{name}'; EMA restarts from the weights")
                ema.load_weights(self.nets[name].state_dict(), 1)
        self._load_training_state(state, path)
        self.task.load_state_dict(state.get("task", {}))
        self.step = int(state["step"])
        self._resumed_step = self.step
        self._last_checkpoint = path
        if int(state["world_size"]) == self.world_size:
            self._pending_rng = state["rng"][self.rank]
        else:
            self._notes.append(f"resume: checkpoint from {state['world_size']} processes, now {self.world_size}: "
                               "RNG streams are reseeded (data order is unaffected)")
            self._pending_rng = None
            seed_everything(int(self.cfg.seed) + 1000003 * self.step + self.rank)
        if changes:
            listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
            self._notes.append(f"resume: config changes applied: {listed}")
        self._notes.append(f"resumed from {path} at step {self.step}")

    def _check_resume_config(self, state: dict[str, Any], path: Path) -> dict[str, tuple[Any, Any]]:
        """The config keys this run changes against the checkpoint's; ConfigError for fixed ones."""
        try:
            saved = OmegaConf.create(state["config"])
        except Exception:  # an old config that no longer parses: not a reason to refuse a resume
            return {}
        return resume_changes(saved, self.cfg, source=f"the checkpoint {path.name}")

    def _load_training_state(self, state: dict[str, Any], path: Path) -> None:
        """Optimizer moments, schedule positions and grad scalers, under this config's settings."""
        for group in ("optimizers", "schedulers", "scalers"):
            for name in getattr(self, group):
                if name not in state[group]:
                    raise CheckpointError(f"{path} has no state for {group[:-1]} '{name}'")
        for name, opt in self.optimizers.items():
            _load_optimizer_state(opt, state["optimizers"][name], name)
        for name, sched in self.schedulers.items():
            _load_scheduler_state(sched, state["schedulers"][name])
        for name, scaler in self.scalers.items():
            saved = state["scalers"][name]
            if scaler.is_enabled() and not saved:  # precision changed to fp16: a fresh scale
                self._notes.append(f"resume: no fp16 grad scale saved for '{name}'; starting a new one")
                continue
            scaler.load_state_dict(saved)  # a no-op when this run does not use fp16

    def _check_finite_weights(self) -> None:
        """Refuse to save NaN/inf weights (one device sync per network)."""
        modules = {**self.nets, **{f"{n} (EMA)": e.module for n, e in self.emas.items()}}
        for name, module in modules.items():
            tensors = {k: t for k, t in module.state_dict().items() if t.is_floating_point()}
            if tensors and not bool(torch.stack([t.isfinite().all() for t in tensors.values()]).all()):
                bad = next(k for k, t in tensors.items() if not bool(t.isfinite().all()))
                raise NonFiniteLossError(self.step, f"weight {bad} of net {name}", float("nan"), self._last_checkpoint)

    # ---------------------------------------------------------------- training

    def fit(self, train_data: Dataset | DataLoader | Iterable, sample_batch: Any = None) -> list[dict[str, float]]:
        """Train until ``cfg.train.max_steps``; returns the logged records (as in ``metrics.jsonl``).

        ``train_data``: a map-style dataset (preferred: the Trainer builds the resumable loader) or
        a ready loader/iterable of batches (then resuming at the right position is the caller's job).
        ``sample_batch``: the batch shown by ``task.sample``; default: the dataset's first items.
        """
        tcfg = self.tcfg
        max_steps = int(tcfg.max_steps)
        logger = RunLogger(self.run_dir, enabled=self.is_main, resume_step=self._resumed_step, console=self.console)
        history: list[dict[str, float]] = []
        iterator = None
        agreed_exit = False  # True when every rank leaves fit() the same way (so a barrier cannot hang)
        old_handlers = self._install_signal_handlers()
        pbar = tqdm(total=max_steps, initial=self.step, disable=not (self.is_main and self.progress),
                    dynamic_ncols=True, desc=str(OmegaConf.select(self.cfg, "exp", default="train")),
                    mininterval=1.0)
        try:
            if self.is_main:
                save_config(self.cfg, self.run_dir / "config.yaml")
            for note in self._notes:
                logger.info(note)
            self._notes.clear()
            if self.step >= max_steps:
                logger.info(f"already at step {self.step} >= max_steps {max_steps}: nothing to do")
                return history
            if self._pending_rng is not None:
                set_rng_state(self._pending_rng)
                self._pending_rng = None
            elif self._resumed_step is None and self.step == 0:
                seed_everything(int(self.cfg.seed) + self.rank)

            loader = self._train_loader(train_data, logger)
            has_sample = callable(getattr(self.task, "sample", None)) and int(tcfg.sample_every) > 0
            if has_sample and self.is_main and sample_batch is None:
                sample_batch = self._default_sample_batch(train_data)
            n_params = sum(p.numel() for net in self.nets.values() for p in net.parameters())
            logger.info(f"training {', '.join(self.nets)} ({n_params:,} parameters) on {self.device} "
                        f"x{self.world_size}, precision {tcfg.precision}, batch {tcfg.batch_size}/process"
                        f"{f' x {self.accum_steps} accumulated' if self.accum_steps > 1 else ''}, "
                        f"steps {self.step} -> {max_steps}, run dir {self.run_dir}")

            for net in self.train_nets.values():
                net.train()
            iterator = iter(loader)
            interval_start, data_time = time.perf_counter(), 0.0
            while self.step < max_steps:
                t0 = time.perf_counter()
                batch = move_to_device(next(iterator), self.device)
                data_time += time.perf_counter() - t0
                if has_sample and self.is_main and sample_batch is None:
                    sample_batch = batch  # a ready loader without a dataset: show its first batch
                record = self._train_one(batch)
                self._buffer.append(record)
                lrs = {f"lr/{n}": float(opt.param_groups[0]["lr"]) for n, opt in self.optimizers.items()}
                self._step_schedulers()
                self.step += 1
                pbar.update(1)

                stop = self._stop_requested()
                done = self.step >= max_steps
                do_log = self.step % max(1, int(tcfg.log_every)) == 0 or done or stop is not None
                do_ckpt = (int(tcfg.ckpt_every) > 0 and self.step % int(tcfg.ckpt_every) == 0) or done or stop is not None
                if do_log or do_ckpt:
                    values = self._log_interval(lrs, time.perf_counter() - interval_start, data_time, logger)
                    history.append({"step": self.step, **values})
                    pbar.set_postfix({k: f"{v:.4g}" for k, v in list(values.items())[:3]}, refresh=False)
                    interval_start, data_time = time.perf_counter(), 0.0
                if has_sample and self.step % int(tcfg.sample_every) == 0:
                    self._sample(sample_batch, logger)
                if do_ckpt:
                    path = self.save_checkpoint()
                    logger.info(f"saved checkpoint {path}")
                if stop is not None:
                    raise TrainingInterrupted(self.step, stop, self._last_checkpoint)
            logger.info(f"finished at step {self.step}")
            agreed_exit = True
            return history
        except (NonFiniteLossError, TrainingInterrupted) as err:
            agreed_exit = True  # raised on every rank at the same iteration
            logger.info(str(err))
            raise
        finally:
            pbar.close()
            self._restore_signal_handlers(old_handlers)
            del iterator  # shuts loader workers down
            if is_distributed() and agreed_exit:
                dist.barrier(group=self._cpu_group)  # rank 0's files are complete when fit returns
            logger.close()

    def _train_one(self, batch: Any) -> dict[str, torch.Tensor]:
        """One optimizer iteration: ``train.grad_accum`` micro-batches through ``training_step``."""
        ctx = self.ctx
        ctx.global_step = self.step
        records = []
        for self._micro_index, micro in enumerate(split_batch(batch, self.accum_steps)):
            ctx._records = {}
            out = self.task.training_step(micro, self.step, ctx)
            if not isinstance(out, Mapping):
                raise TypeError(f"training_step must return a dict of scalar tensors, got {type(out).__name__}")
            record = {name: _as_scalar(name, value, self.device) for name, value in out.items()}
            record.update(ctx._records)
            records.append(record)
        for name, ema in self.emas.items():
            ema.update(self.nets[name])
        return records[0] if len(records) == 1 else _mean_records(records)

    def _bank_gradients(self, optimizer: str, params: list[nn.Parameter]) -> bool:
        """Move this micro-batch's gradients of ``optimizer``'s parameters into its bank; at the last
        micro-batch put the sums back and return True (time to step).

        Banking per optimizer keeps gradients another optimizer's loss leaves in these parameters
        (a generator's loss in the discriminator) out of the sum, as zeroing does without accumulation.
        """
        bank = self._grad_bank.setdefault(optimizer, {})
        for p in params:
            if p.grad is not None:
                bank[p] = p.grad if p not in bank else bank[p] + p.grad
                p.grad = None
        if self._micro_index < self.accum_steps - 1:
            return False
        for p in params:
            p.grad = bank.pop(p, None)
        return True

    def _step_schedulers(self) -> None:
        with warnings.catch_warnings():
            # Schedules follow the global step, also while an optimizer is not yet used (GAN warm-up).
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            for sched in self.schedulers.values():
                sched.step()

    def _train_loader(self, train_data: Any, logger: RunLogger) -> Iterable:
        if isinstance(train_data, Dataset) and hasattr(train_data, "__len__") and not isinstance(train_data, DataLoader):
            batch = int(self.tcfg.batch_size) * self.accum_steps  # split into micro-batches by _train_one
            return build_loader(train_data, batch, train=True, seed=int(self.cfg.seed),
                                start_step=self.step,
                                num_workers=int(OmegaConf.select(self.cfg, "data.num_workers", default=0)),
                                rank=self.rank, world_size=self.world_size, pin_memory=self.device.type == "cuda")
        if self.step > 0:
            logger.info("note: fit() got a ready loader; resuming at the right data position is up to its maker")
        return train_data

    def _default_sample_batch(self, train_data: Any) -> Any:
        dataset = train_data.dataset if isinstance(train_data, DataLoader) else train_data
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            return None  # take the first training batch instead
        n = min(len(dataset), int(self.tcfg.batch_size), 8)
        return default_collate([dataset[i] for i in range(n)])

    def _sample(self, batch: Any, logger: RunLogger) -> None:
        if not self.is_main or batch is None:
            return
        modules = list(self.nets.values()) + [e.module for e in self.emas.values()]
        modes = [m.training for m in modules]
        saved_rng = rng_state()
        seed_everything(int(self.cfg.seed) + self.step)
        try:
            for m in modules:
                m.eval()
            with torch.no_grad():
                videos = self.task.sample(move_to_device(batch, self.device), self.step, self.ctx)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
            set_rng_state(saved_rng)
        if not videos:
            return
        # 0-dim tensors are evaluation numbers (e.g. held-out PSNR); the rest are videos.
        scalars = {k: float(v) for k, v in videos.items() if v.dim() == 0}
        videos = {k: v for k, v in videos.items() if v.dim() != 0}
        if scalars:
            logger.scalars(self.step, scalars)
            logger.info(f"sample step {self.step} | {format_scalars(scalars)}")
            for warning in self.task.sample_warnings(scalars):
                logger.info(f"WARNING: {warning}")
        if videos:
            logger.videos(self.step, videos)

    def _log_interval(self, lrs: dict[str, float], elapsed: float, data_time: float, logger: RunLogger) -> dict[str, float]:
        """Reduce and check the buffered losses, add LR/scale/timing, write them out; returns the values."""
        n = len(self._buffer)
        values = self._flush_metrics()
        values.update(lrs)
        values.update({f"scale/{k}": float(s.get_scale()) for k, s in self.scalers.items() if s.is_enabled()})
        values["time/step"] = elapsed / n
        values["time/data"] = data_time / n
        if self.device.type == "cuda":
            values["mem/peak_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        logger.scalars(self.step, values)
        logger.info(f"step {self.step}/{self.tcfg.max_steps} | {format_scalars(values)}")
        return values

    def _flush_metrics(self) -> dict[str, float]:
        """Reduce the buffered per-iteration scalars (one device sync); raise on a non-finite term.

        Returns the mean of each term over the buffered iterations and over ranks.
        """
        buffer, self._buffer = self._buffer, []
        first_step = self.step - len(buffer)  # completed iterations before buffer[0]
        keys = set().union(*buffer)
        if is_distributed():
            keys = set().union(*all_gather_objects(sorted(keys), group=self._cpu_group))
        keys = sorted(keys, key=lambda k: (k.startswith("grad_norm/"), k))  # the task's terms first
        if not keys:
            return {}
        zero = torch.zeros((), device=self.device)
        vals = torch.stack([torch.stack([r.get(k, zero) for k in keys]) for r in buffer])  # [S, K]
        present = torch.tensor([[k in r for k in keys] for r in buffer], device=self.device, dtype=torch.float32)
        finite = torch.isfinite(vals).float() * present
        packed = torch.stack([torch.where(finite > 0, vals, zero), finite, present - finite])  # [3, S, K]
        if is_distributed():
            dist.all_reduce(packed)
        sums, counts, bad = packed.cpu().unbind(0)
        checked = [i for i, k in enumerate(keys) if not k.startswith("grad_norm/") or k in self._checked_grad_norms]
        for s in range(len(buffer)):
            for i in checked:
                if bad[s, i] > 0:
                    local = buffer[s][keys[i]].item() if keys[i] in buffer[s] else float("nan")
                    value = local if not math.isfinite(local) else float("nan")  # else: on another rank
                    raise NonFiniteLossError(first_step + s + 1, keys[i], value, self._last_checkpoint)
        out = {}
        for i, key in enumerate(keys):
            step_means = [sums[s, i] / counts[s, i] for s in range(len(buffer)) if counts[s, i] > 0]
            out[key] = float(sum(step_means) / len(step_means)) if step_means else float("nan")
        return out

    # ---------------------------------------------------------------- signals

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        self._stop_signal = None
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _restore_signal_handlers(self, old: dict) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt("second interrupt: stopping without a checkpoint")
        self._stop_signal = signum
        if self.is_main:
            tqdm.write(f"received {signal.Signals(signum).name}: saving a checkpoint after this step "
                       "(Ctrl-C again to abort without saving)")

    def _stop_requested(self) -> Optional[int]:
        if not is_distributed():
            return self._stop_signal
        flag = torch.tensor([self._stop_signal or 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._cpu_group)
        return int(flag.item()) or None


def _load_optimizer_state(optimizer: Optimizer, state: dict[str, Any], name: str) -> None:
    """The saved moments and step counts; hyper-parameters (lr, betas, weight decay, kernels) stay
    this config's, so that an override on resume takes effect."""
    mine = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except ValueError as err:  # e.g. weight_decay switched on/off: different parameter groups
        raise ConfigError(f"the saved state of optimizer '{name}' does not fit this config's ({err}); "
                          "settings that regroup parameters (weight_decay 0 <-> >0) cannot change on resume") from None
    for group, keep in zip(optimizer.param_groups, mine):
        group.update(keep)


def _load_scheduler_state(scheduler: LRScheduler, state: dict[str, Any]) -> None:
    """The saved position of an LR schedule, with this config's base LRs and schedule shape."""
    base_lrs = list(scheduler.base_lrs)
    scheduler.load_state_dict(state)
    scheduler.base_lrs = base_lrs
    if isinstance(scheduler, LambdaLR):  # the lambdas are this config's: set the LR they give now
        lrs = [base * fn(scheduler.last_epoch) for fn, base in zip(scheduler.lr_lambdas, base_lrs)]
        for group, lr in zip(scheduler.optimizer.param_groups, lrs):
            group["lr"] = lr
        scheduler._last_lr = lrs
