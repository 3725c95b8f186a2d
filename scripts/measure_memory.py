"""Peak memory of one training step of a config, without running it or needing the device.

    python scripts/measure_memory.py --exp first_stage --config configs/first_stage/moso_ucf101_256.yaml --batch_size 4

The step (the task's real ``training_step``: forward, losses, backward, optimizer update) runs on
*fake* tensors (``torch._subclasses.FakeTensorMode``): shapes and dtypes are tracked, nothing is
computed, so a 256x256 config is estimated in seconds on a laptop. A dispatch mode counts the
bytes of every live tensor storage (weights, optimizer state, activations saved for backward,
temporaries) and their peak. What it does not see, so add it on a GPU: the CUDA context
(~0.5 GB), cuDNN workspaces and the caching allocator's rounding and fragmentation (typically
10-30 %). ``--precision bf16`` mimics the GPU default (autocast to bfloat16). The step measured
is the second (the first creates the optimizer state) and a late one (every warm-up over:
raw-frame encoder inputs, discriminators on). Data-dependent parts of the step (dead-code
restarts of the VQ codebook) are switched off for the estimate; they are small.

The second stage needs a first-stage checkpoint for its geometry; ``--first_stage_config`` lets an
untrained first stage of that config stand in (only its shapes matter), and ``--tokens`` measures
the ``train.py`` step (batches of token indices) instead of clips encoded on the fly:

    python scripts/measure_memory.py --exp ddpm --config configs/ddpm/rsvp_s2_ucf101_64.yaml --batch_size 32 \
        --tokens --first_stage_config configs/first_stage/moso_ucf101_64.yaml

:func:`training_step` (the task built and stepped once on fake tensors) is shared with
scripts/estimate_time.py.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402
from torch.utils.weak import WeakIdKeyDictionary  # noqa: E402
import weakref  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from tools.config import ConfigError  # noqa: E402
from tools.registry import experiment_config, get_experiment  # noqa: E402


class FakeStepContext:
    """The parts of tools.trainer.StepContext a task's ``training_step`` uses, for one local step."""

    def __init__(self, nets: dict, optimizers: dict, precision: str) -> None:
        self.nets = self.raw_nets = nets
        self.optimizers = optimizers
        self.device = torch.device("cpu")
        self.dtype = torch.bfloat16 if precision == "bf16" else None

    def autocast(self, enabled: bool = True):
        if self.dtype is None or not enabled:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: str = "model", *, retain_graph: bool = False) -> None:
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward(retain_graph=retain_graph)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def log(self, name: str, value) -> None:
        pass


class LiveTensorMemory(TorchDispatchMode):
    """Bytes of live tensor storages and their peak, counted as operators create them.

    A storage is counted once, when an operator first returns it (or when :meth:`add` is called
    for tensors that already exist), and uncounted when Python frees it: what a caching GPU
    allocator must hold at least, without its rounding and fragmentation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = self.peak = 0
        self._seen = WeakIdKeyDictionary()

    def _free(self, nbytes: int) -> None:
        self.current -= nbytes

    def add(self, *tensors) -> None:
        for t in tensors:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            if storage in self._seen:
                continue
            nbytes = storage.nbytes()
            self._seen[storage] = weakref.ref(storage, lambda _, n=nbytes: self._free(n))
            self.current += nbytes
            self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.add(*tree_flatten(out)[0])
        return out


def state_tensors(nets: dict, optimizers: dict) -> list[torch.Tensor]:
    """Parameters and buffers of ``nets`` and the state of ``optimizers``: what lives across steps."""
    tensors = [t for net in nets.values() for t in [*net.parameters(), *net.buffers()]]
    for opt in optimizers.values():
        tensors += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return tensors


# The step index used for the estimate: past every warm-up (full encoder inputs, discriminators on).
LATE_STEP = 10**9


@dataclass
class TrainingStep:
    """One stage's task, networks, optimizers and a batch, ready to run ``training_step`` again."""

    cfg: Any
    task: Any
    nets: dict
    helpers: dict  # frozen modules the task holds besides its networks (LPIPS, a frozen first stage)
    optimizers: dict
    batch: dict
    ctx: FakeStepContext

    def run(self) -> None:
        self.task.training_step(self.batch, LATE_STEP, self.ctx)

    def state_tensors(self) -> list[torch.Tensor]:
        return [*state_tensors({**self.nets, **self.helpers}, self.optimizers), *tree_flatten(self.batch)[0]]


def untrained_first_stage(config: str, path: Path, overrides: Sequence[str] = ()) -> Path:
    """An untrained first-stage checkpoint of ``config``: a stand-in for ``--first_model`` when only
    the shapes matter (the second stage's geometry and token grids follow from it)."""
    from tools.checkpoint import FORMAT, atomic_torch_save
    from tools.experiments.first_stage import build_vqvae
    cfg = experiment_config("first_stage", config, overrides)
    if "vqvae" in cfg.model:
        model = build_vqvae(cfg)
    else:  # another method's autoencoder (model.arch): its own training task builds it
        cfg.model.perceptual.random_backbone = True  # no weights file needed; only the shapes matter
        model = get_experiment("first_stage").for_config(cfg).build_task(cfg, torch.device("cpu")).networks()["model"]
    atomic_torch_save({"format": FORMAT, "step": 0, "nets": {"model": model.state_dict()},
                       "config": OmegaConf.to_yaml(cfg)}, path)
    return path


def random_batch(cfg, task, batch_size: int, tokens: bool) -> dict:
    """Clips ``[B, 3, T, H, W]``, or (``tokens``, the ``train.py`` path) index grids as a token folder holds."""
    if not tokens:
        frames, res = int(cfg.data.frames), int(cfg.data.resolution)
        return {"video": torch.rand(batch_size, 3, frames, res, res) * 2 - 1}
    space = getattr(task, "space", None)
    if space is None:
        raise ConfigError("--tokens applies to the second stage (--exp ddpm) only")
    from models.latent_space import SemanticTokens

    tokens = SemanticTokens(space.first_stage, int(cfg.model.cond_frames))  # the arrays --exp extract writes
    return {name: torch.randint(0, tokens.codebook_size, (batch_size, *shape)) for name, shape in tokens.shapes.items()}


@contextlib.contextmanager
def training_step(exp: str, config: str, batch_size: int, precision: str, overrides: Sequence[str],
                  fake: bool = True, tokens: bool = False,
                  first_stage_config: Optional[str] = None) -> Iterator[TrainingStep]:
    """Build the stage's real task as ``main.py`` would and run one step (which creates the optimizer
    state); yields it, still inside the fake-tensor mode, ready for a measured second step.

    ``first_stage_config``: for ``--exp ddpm``, an untrained first stage of that config stands in for
    ``--first_model``. ``tokens``: batches of token indices (``train.py``) instead of clips.
    """
    experiment = get_experiment(exp)
    if experiment.build_task is None:
        raise ConfigError(f"experiment '{exp}' does not train a task: nothing to measure")
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*overrides, f"train.batch_size={batch_size}"]
        if first_stage_config:
            overrides.append(f"first_model={untrained_first_stage(first_stage_config, Path(tmp) / 'first.pth')}")
        cfg = experiment_config(exp, config, overrides, prepare=True)
        if "vqvae" in cfg.model:
            # Data-dependent control flow cannot run on fake tensors; restarts are a tiny part of the step.
            cfg.model.vqvae.dead_code_threshold = 0.0
            cfg.model.perceptual.random_backbone = True  # same shapes as the real backbone, no file needed
            cfg.model.gan.start_step = 0
        # ``module.to(device)`` on fake parameters must replace them rather than swap their payloads;
        # the process-wide flag is restored afterwards (a TorchScript module's .to() fails under it).
        overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        try:
            with FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext():
                task = experiment.build_task(cfg, torch.device("cpu"))
                nets = task.networks()
                helpers = {f"helper:{k}": v for k, v in vars(task).items()  # frozen helpers, e.g. LPIPS
                           if isinstance(v, torch.nn.Module) and v not in nets.values()}
                optimizers = {name: item[0] if isinstance(item, tuple) else item
                              for name, item in task.configure_optimizers(nets, cfg).items()}
                step = TrainingStep(cfg, task, nets, helpers, optimizers, random_batch(cfg, task, batch_size, tokens),
                                    FakeStepContext(nets, optimizers, precision))
                # The first step creates the optimizer state, which is live during the measured second one.
                try:
                    step.run()
                except DataDependentOutputException:
                    raise ConfigError(f"the {exp} step reads tensor values (data-dependent control flow), which "
                                      "fake tensors do not hold; for --exp ddpm measure the train.py step with "
                                      "--tokens (encoding clips on the fly loads a quantizer whose state is read)") from None
                yield step
        finally:
            torch.__future__.set_overwrite_module_params_on_conversion(overwrite)


def measure(exp: str, config: str, batch_size: int, precision: str, overrides: list[str],
            fake: bool = True, tokens: bool = False, first_stage_config: Optional[str] = None) -> dict:
    """Peak tensor memory of one training step; ``fake=False`` runs it for real (tests compare both)."""
    with training_step(exp, config, batch_size, precision, overrides, fake, tokens, first_stage_config) as step:
        tracker = LiveTensorMemory()
        with tracker:
            tracker.add(*step.state_tensors())
            persistent = tracker.current
            step.run()
    params = sum(p.numel() for net in step.nets.values() for p in net.parameters())
    return {"exp": exp, "config": config, "batch_size": batch_size, "precision": precision,
            "parameters": params, "weights_and_optimizer_gib": round(persistent / 2**30, 3),
            "peak_gib": round(tracker.peak / 2**30, 3), "peak_bytes": tracker.peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--tokens", action="store_true",
                        help="ddpm: batches of token indices, the train.py path (default: clips encoded per step)")
    parser.add_argument("--first_stage_config",
                        help="ddpm: an untrained first stage of this config stands in for --first_model")
    parser.add_argument("--out", help="also write the figures as JSON")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    try:
        result = measure(args.exp, args.config, args.batch_size, args.precision, args.overrides,
                         tokens=args.tokens, first_stage_config=args.first_stage_config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
