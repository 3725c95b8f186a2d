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
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402
from torch.utils.weak import WeakIdKeyDictionary  # noqa: E402
import weakref  # noqa: E402

from tools.config import ConfigError, RunConfig, build_config  # noqa: E402
from tools.registry import get_experiment  # noqa: E402


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


def _state_tensors(nets: dict, optimizers: dict) -> list[torch.Tensor]:
    tensors = [t for net in nets.values() for t in [*net.parameters(), *net.buffers()]]
    for opt in optimizers.values():
        tensors += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return tensors


def measure(exp: str, config: str, batch_size: int, precision: str, overrides: list[str],
            fake: bool = True) -> dict:
    """Peak tensor memory of one training step; ``fake=False`` runs it for real (tests compare both)."""
    experiment = get_experiment(exp)
    if experiment.build_task is None:
        raise ConfigError(f"experiment '{exp}' does not train a task: nothing to measure")
    cfg = build_config(RunConfig(exp=exp, model=experiment.model_schema()), config,
                       [*overrides, f"train.batch_size={batch_size}"])
    if experiment.prepare_config is not None:
        experiment.prepare_config(cfg)
    if "vqvae" in cfg.model:
        # Data-dependent control flow cannot run on fake tensors; restarts are a tiny part of the step.
        cfg.model.vqvae.dead_code_threshold = 0.0
        cfg.model.perceptual.random_backbone = True  # same shapes as the real backbone, no file needed
        cfg.model.gan.start_step = 0
    # ``module.to(device)`` on fake parameters must replace them rather than swap their payloads.
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    with FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext():
        task = experiment.build_task(cfg, torch.device("cpu"))
        nets = task.networks()
        helpers = {f"helper:{k}": v for k, v in vars(task).items()  # frozen helpers, e.g. LPIPS
                   if isinstance(v, torch.nn.Module) and v not in nets.values()}
        optimizers = {name: item[0] if isinstance(item, tuple) else item
                      for name, item in task.configure_optimizers(nets, cfg).items()}
        frames, res = int(cfg.data.frames), int(cfg.data.resolution)
        batch = {"video": torch.rand(batch_size, 3, frames, res, res) * 2 - 1}
        ctx = FakeStepContext(nets, optimizers, precision)
        # A step past every warm-up (full encoder inputs, discriminators on) is the largest one.
        # The first step creates the optimizer state, which is live during the measured second one.
        task.training_step(batch, 10**9, ctx)
        tracker = LiveTensorMemory()
        with tracker:
            tracker.add(*_state_tensors({**nets, **helpers}, optimizers), batch["video"])
            persistent = tracker.current
            task.training_step(batch, 10**9, ctx)
    params = sum(p.numel() for net in nets.values() for p in net.parameters())
    return {"exp": exp, "config": config, "batch_size": batch_size, "precision": precision,
            "parameters": params, "weights_and_optimizer_gib": round(persistent / 2**30, 3),
            "peak_gib": round(tracker.peak / 2**30, 3), "peak_bytes": tracker.peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--out", help="also write the figures as JSON")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    try:
        result = measure(args.exp, args.config, args.batch_size, args.precision, args.overrides)
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
