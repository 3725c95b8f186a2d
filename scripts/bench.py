"""Performance benchmark: training-step FLOP/s against dense matmul, sampling latency, data loading.

    python scripts/bench.py [--quick] [--device cpu|cuda] [--out bench.json] [--sections train,sample,data,ar]
                            [--methods rsvp,pvdm,lvdm]

Everything runs in one process, so the ratios are comparable even on a shared machine:

* **training steps** (first stage and latent DDPM): the experiment's own task, built from its YAML
  config the way ``main.py`` builds it, run by the real :class:`tools.trainer.Trainer` (forward,
  losses, backward, gradient clipping, optimizer, EMA). Per step: model FLOPs
  (``torch.utils.flop_counter`` with ``tools/flops.py``'s CPU attention formulas: matmuls,
  convolutions, attention, forward + backward), wall time
  (median of the timed steps, after warm-up), achieved FLOP/s, and the FLOP/s of a dense square
  matmul timed in the same process in the step's compute dtype (fp32, or bf16 under autocast)
  just before; their ratio is the figure to compare. Peak memory of the step: on CUDA
  ``torch.cuda.max_memory_allocated``; on the CPU the peak of live tensor storages counted on the
  real step by a dispatch mode (``scripts/measure_memory.LiveTensorMemory``: weights, optimizer
  and EMA state, activations, temporaries; no allocator overhead).
* **speed options** (``--variants``): the same step again with config overrides such as
  ``train.precision=bf16``, ``train.compile=true`` or ``model.unet.checkpointing=true``; the FLOP
  count is the base step's (the model's work does not change), so the ratios compare directly.
* **sampling**: ``DDPMTask.predict`` for one clip (encode the observed frames with the first
  stage, run the sampler, decode 16 frames) per resolution, sampler and step count: latency
  and peak memory (CUDA: ``max_memory_allocated``; CPU: live tensor storages, counted on a
  separate, untimed run at the smallest step count of each sampler, because counting slows the
  run down; the sampler's memory does not grow with its step count).
* **sampling code paths** (``--sample_variant baseline``): the code path before issue 17
  (contiguous weights, PyTorch's own 3D-convolution kernel choice, no first-stage frame chunks)
  on copies of the same weights, timed round-robin with the default path (the one validate.py
  samples with); ``--doc docs/BENCHMARKS.md`` writes the comparison with issue 17's targets
  (speed-up, peak memory, DDPM step ratio) into the document's ``bench-targets`` block.
  ``--sample_variant bf16`` also times the default path under bf16 autocast (``validate.py
  --precision bf16``), with the largest difference of its frames from the fp32 default's.
  ``--threads`` sets torch's thread count (on a machine whose cores other jobs share, one thread
  per process avoids the oversubscription that makes two-thread timings swing tenfold).
* **the baselines side by side** (``--methods rsvp,pvdm,lvdm``; default ``rsvp``, the rows above
  alone): PVDM's and LVDM's 256x256 UCF-101 configs (``--quick``: their shapes64 ones), untrained
  first stage and denoiser built as RSVP's are. Per method: the DDPM training step from clips (the
  baselines train so: each step encodes its clips with the frozen first stage; batch
  ``--baseline_batch``, default 2, since their configs' 64 / 32 do not fit a CPU; compare per clip)
  through the same ``bench_train``, and the prediction of one clip (the method's own ``K`` observed
  frames, 16 predicted at 256x256) timed round-robin with RSVP's paths in the same
  ``bench_sampling`` loop: latency, encode / decode split, FLOPs, peak memory. Their rows carry
  ``method``; the summary and ``--doc`` add the RSVP / PVDM and RSVP / LVDM latency and per-clip
  training-step ratios. ``--skip pvdm@256`` leaves out a training step, ``pvdm_sample@256`` a
  prediction; ``--method_override`` / ``--method_fs_override METHOD:key=value`` change a baseline's
  configs.
* **autoregressive sampling** (``--sections ar``, not in the default sections): the tubelet
  baseline's prediction (encode the observed frames, sample the future tokens, decode;
  docs/TUBELET.md) of ``--ar_frames`` frames after 4 observed ones with its KV cache and with the
  whole sequence recomputed for every token, on the same random weights and generator seed:
  latency of each, the speed-up, and whether both sampled the same frames. The cache makes a
  prediction's cost grow linearly with its length, recomputation quadratically.
* **data loading**: ``scripts/bench_data.py`` (seek-based clip decoding against a full-decode
  baseline), run in this process.

Weights are random (a first-stage checkpoint is written to a temporary folder for the DDPM task
to load): speed does not depend on them. Batches are random tensors of the config's shape.
``--quick`` uses the ``shapes`` configs, made smaller, and finishes within 2 minutes on 2 CPU
cores; its last line is the DDPM training-step ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure_memory import LiveTensorMemory, random_batch, state_tensors, untrained_first_stage  # noqa: E402
from models.diffusion.guidance import GuidedDenoiser  # noqa: E402
from models.fast_conv import plain_conv3d  # noqa: E402
from models.memory_format import to_memory_format  # noqa: E402
from models.rsvp_predictor import RSVPPredictor  # noqa: E402
from tools.distributed import resolve_device  # noqa: E402
from tools.flops import flop_counter  # noqa: E402
from tools.hardware import cpu_model  # noqa: E402
from tools.pretrained import inference_autocast, inference_layout  # noqa: E402
from tools.registry import experiment_config, get_experiment  # noqa: E402
from tools.trainer import Trainer, move_to_device  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Offline and fixed-shape settings every benchmarked config gets: a random LPIPS backbone has the
# real one's shapes and FLOPs but needs no weight file.
COMMON_OVERRIDES = {"first_stage": ["model.perceptual.random_backbone=true", "data.num_workers=0"],
                    "ddpm": ["data.num_workers=0"]}

# Full run: the shipped UCF-101 configs at their own batch sizes (``--batch_size`` lowers them).
FULL_SETUPS = {
    "64": {"first_stage": "configs/first_stage/moso_ucf101_64.yaml", "ddpm": "configs/ddpm/rsvp_s2_ucf101_64.yaml"},
    "256": {"first_stage": "configs/first_stage/moso_ucf101_256.yaml", "ddpm": "configs/ddpm/rsvp_s2_ucf101_256.yaml"},
}
# Quick run: the shapes configs, made smaller so that everything fits 2 minutes on 2 CPU cores.
QUICK_SETUPS = {"64": {"first_stage": "configs/first_stage/moso_shapes64.yaml", "ddpm": "configs/ddpm/rsvp_s2_shapes64.yaml"}}
# Autoregressive sampling (--sections ar): the tubelet baseline's shapes configs (docs/TUBELET.md).
AR_SETUP = {"first_stage": "configs/first_stage/tubelet_shapes32.yaml",
            "transformer": "configs/transformer/tubelet_shapes32.yaml"}
# The baselines (--methods): their own first stage and denoiser at a setup's resolution (untrained,
# as RSVP's); a setup without one (UCF-101 at 64x64) is left out with a note.
METHOD_SETUPS = {
    "pvdm": {"256": {"first_stage": "configs/first_stage/pvdm_ucf101_256.yaml", "ddpm": "configs/ddpm/pvdm_ucf101_256.yaml"}},
    "lvdm": {"256": {"first_stage": "configs/first_stage/lvdm_ucf101_256.yaml", "ddpm": "configs/ddpm/lvdm_ucf101_256.yaml"}},
}
QUICK_METHOD_SETUPS = {
    "pvdm": {"64": {"first_stage": "configs/first_stage/pvdm_shapes64.yaml", "ddpm": "configs/ddpm/pvdm_shapes64.yaml"}},
    "lvdm": {"64": {"first_stage": "configs/first_stage/lvdm_shapes64.yaml", "ddpm": "configs/ddpm/lvdm_shapes64.yaml"}},
}
METHODS = ("rsvp", *METHOD_SETUPS)
QUICK_OVERRIDES = {
    "first_stage": ["train.batch_size=2", "model.perceptual.frames=1"],
    "ddpm": ["train.batch_size=4"],
}


# --------------------------------------------------------------------------------------------
# Timing helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of ``fn()``, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, size: int, min_seconds: float = 0.5) -> float:
    """FLOP/s of ``[size, size] @ [size, size]`` in ``dtype`` (2 size^3 FLOPs each), repeated for
    at least ``min_seconds`` after one warm-up product."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    torch.mm(a, b, out=out)
    count, elapsed = 0, 0.0
    synchronize(device)
    start = time.perf_counter()
    while elapsed < min_seconds or count < 3:
        torch.mm(a, b, out=out)
        count += 1
        if count % 4 == 0 or device.type != "cuda":
            synchronize(device)
            elapsed = time.perf_counter() - start
    synchronize(device)
    elapsed = time.perf_counter() - start
    return 2.0 * size ** 3 * count / elapsed


# --------------------------------------------------------------------------------------------
# Building the real tasks


def run_config(exp: str, config: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved run config of ``main.py --exp EXP --config CONFIG key=value ...``."""
    return experiment_config(exp, config if Path(config).is_absolute() else ROOT / config, overrides, prepare=True)


def build_trainer(cfg: DictConfig, device: torch.device, run_dir: Path) -> Trainer:
    """The Trainer of the experiment's task, exactly as the experiment would run it."""
    task = get_experiment(str(cfg.exp)).build_task(cfg, device)
    if hasattr(task, "space"):  # the DDPM task fits its latent scale on data first; any value will do here
        task.space.scale.fill_(1.0)
    return Trainer(task, cfg, run_dir, device, progress=False, console=False)


def late_step(cfg: DictConfig) -> int:
    """An iteration past every warm-up of the task (full encoder inputs, discriminators on)."""
    step = int(cfg.train.max_steps) // 2
    for key in ("model.vqvae.full_input_step", "model.gan.start_step"):
        value = OmegaConf.select(cfg, key)
        if value is not None:
            step = max(step, int(value))
    return step


@contextlib.contextmanager
def peak_memory(device: torch.device, resident: Sequence[torch.Tensor]) -> Iterator[dict[str, Any]]:
    """Peak bytes of what runs inside the block plus ``resident`` (tensors alive throughout), in
    ``out["bytes"]`` after it: CUDA ``max_memory_allocated``; CPU live tensor storages."""
    out: dict[str, Any] = {}
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        reset_peak(device)
        yield out
        synchronize(device)
        out["bytes"] = storage_bytes(resident) + torch.cuda.max_memory_allocated(device) - before
    else:
        tracker = LiveTensorMemory()
        with tracker:
            tracker.add(*resident)
            yield out
        out["bytes"] = tracker.peak


def storage_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


# --------------------------------------------------------------------------------------------
# Training steps


class StepRunner:
    """One configuration's Trainer with a fixed random batch; ``step()`` is one training iteration
    exactly as ``Trainer.fit`` runs it (task step with its updates, EMA, LR schedulers)."""

    def __init__(self, name: str, cfg: DictConfig, device: torch.device, run_dir: Path, use_tokens: bool) -> None:
        self.name, self.cfg, self.device, self.use_tokens = name, cfg, device, use_tokens
        self.trainer = build_trainer(cfg, device, run_dir)
        self.trainer.step = late_step(cfg)
        self.batch = move_to_device(random_batch(cfg, self.trainer.task, int(cfg.train.batch_size), use_tokens), device)
        self.times: list[float] = []
        self.warmup_s: list[float] = []
        self.peak: Optional[int] = None

    @property
    def dtype(self) -> torch.dtype:
        return self.trainer.autocast_dtype or torch.float32

    @property
    def compiled(self) -> bool:
        return bool(self.cfg.train.compile)

    def step(self) -> None:
        trainer = self.trainer
        trainer._train_one(self.batch)
        trainer._step_schedulers()
        trainer.step += 1

    def resident(self) -> list[torch.Tensor]:
        """Weights, optimizer and EMA state, the task's frozen helpers (LPIPS, first stage), the batch."""
        trainer = self.trainer
        modules = {**trainer.nets, **{f"ema:{k}": e.module for k, e in trainer.emas.items()},
                   **{f"helper:{k}": v for k, v in vars(trainer.task).items() if isinstance(v, torch.nn.Module)}}
        return [*state_tensors(modules, trainer.optimizers), *self.batch.values()]

    def counted_step(self, count_flops: bool) -> Optional[int]:
        """One step with its peak memory taken (and its FLOPs counted); returns the FLOPs."""
        counter = flop_counter() if count_flops else contextlib.nullcontext()
        with counter, peak_memory(self.device, self.resident()) as peak:
            self.step()
        self.peak = peak["bytes"]
        return int(counter.get_total_flops()) if count_flops else None


def bench_train(configs: dict[str, DictConfig], device: torch.device, folder: Path, *, use_tokens: bool = False,
                steps: int = 3, warmup: int = 1, matmul_size: int = 2048, burst_s: float = 0.25) -> list[dict[str, Any]]:
    """Training-step rows of one model: ``configs`` maps a variant name to its config; the first is
    the base, whose step FLOPs serve every variant (same model and batch).

    Variants are timed round-robin (one step of each per round, then a matmul burst per compute
    dtype), so a machine whose load changes during the run slows them alike. ``step_s`` is the
    fastest step and ``matmul_flops_per_s`` the fastest burst (the least disturbed figures);
    ``*_median`` are the medians.
    """
    runners = {name: StepRunner(name, cfg, device, folder / name, use_tokens) for name, cfg in configs.items()}
    base = next(iter(runners.values()))
    flops = None
    for runner in runners.values():
        for _ in range(max(warmup, 2 if runner.compiled else 1)):  # compile: a second pass may recompile
            runner.warmup_s.append(timed(runner.step, device))
        # The dispatch-mode counters see eager ops only: a compiled step is not counted.
        if runner is base:
            flops = runner.counted_step(count_flops=True)
        elif not runner.compiled:
            runner.counted_step(count_flops=False)
    dtypes = {str(r.dtype): r.dtype for r in runners.values()}
    matmul: dict[str, list[float]] = {k: [] for k in dtypes}
    for _ in range(steps):
        for runner in runners.values():
            runner.times.append(timed(runner.step, device))
        for key, dtype in dtypes.items():
            matmul[key].append(matmul_flops_per_s(device, dtype, matmul_size, burst_s))
    rows = []
    for runner in runners.values():
        cfg, mm = runner.cfg, matmul[str(runner.dtype)]
        step_s, step_med = min(runner.times), statistics.median(runner.times)
        rows.append({
            "exp": str(cfg.exp), "variant": runner.name, "input": "tokens" if use_tokens else "clips",
            "batch_size": int(cfg.train.batch_size), "resolution": int(cfg.data.resolution),
            "frames": int(cfg.data.frames), "precision": str(cfg.train.precision),
            "compute_dtype": str(runner.dtype).replace("torch.", ""),
            "trainable_parameters": sum(p.numel() for net in runner.trainer.nets.values()
                                        for p in net.parameters() if p.requires_grad),
            "flops_per_step": flops, "step_s": step_s, "step_s_median": step_med, "step_s_all": runner.times,
            "warmup_s": runner.warmup_s,
            "achieved_flops_per_s": flops / step_s, "matmul_flops_per_s": max(mm),
            "matmul_flops_per_s_median": statistics.median(mm), "matmul_size": matmul_size,
            "ratio": flops / step_s / max(mm), "ratio_median": flops / step_med / statistics.median(mm),
            "speedup_vs_base": min(base.times) / step_s,
            "peak_memory_bytes": runner.peak,
            "peak_memory_kind": None if runner.peak is None else (
                "cuda max_memory_allocated (own tensors)" if device.type == "cuda" else "live tensor storages"),
        })
    for runner in runners.values():
        runner.trainer = None
    return rows


# --------------------------------------------------------------------------------------------
# Sampling


@dataclass
class SamplingPath:
    """One code path of ``DDPMTask.predict``: the predictor it samples with and the context it runs in."""

    name: str
    predictor: Any
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    method: str = "rsvp"
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # the method's Trainer's
    observed: Optional[torch.Tensor] = None  # the method's observed frames [1, 3, K, H, W]
    frames: int = 0  # predicted frames (the method's first-stage clip)
    precision: str = ""  # the method's train.precision


SAMPLING_VARIANTS = ("baseline", "bf16")


def sampling_paths(task: Any, net: torch.nn.Module, variants: Sequence[str]) -> list[SamplingPath]:
    """``default``: the path ``validate.py`` samples with (``tools.pretrained.load_predictor``: every
    network in its inference layout; oneDNN 3D convolutions; the first stage's frame chunks), then
    each of ``variants``. ``baseline``: the code path before issue 17, on copies of the same
    weights: contiguous weights, PyTorch's own 3D-convolution choice, no frame chunks, every frame of
    the pseudo-clip encoded (no reuse of repeated frames). ``bf16``: the default path's predictor
    under bf16 autocast (``validate.py --precision bf16``)."""
    paths = [SamplingPath("default", inference_layout(task.predictor(net)))]
    for name in variants:
        if name == "bf16":
            device = next(net.parameters()).device
            paths.append(SamplingPath(name, paths[0].predictor, precision="bf16",
                                      autocast=lambda: inference_autocast("bf16", device)))
            continue
        if name != "baseline":
            raise ValueError(f"unknown sampling variant {name!r}; known: {', '.join(SAMPLING_VARIANTS)}")
        space, plain_net = copy.deepcopy(task.space), copy.deepcopy(net)
        space.first_stage.set_chunk_frames(0)
        space.first_stage.set_reuse_repeats(False)
        for module in (space, plain_net):
            to_memory_format(module, "contiguous")
        paths.append(SamplingPath(name, RSVPPredictor(space, task.diffusion, plain_net, task.cond_frames), plain_conv3d))
    return paths


@contextlib.contextmanager
def counted_parts(space: torch.nn.Module) -> Iterator[dict[str, Any]]:
    """FLOPs of everything inside the block (``total``) and of the latent space's ``condition``
    (``encode``) and ``decode`` calls in it, and the arguments of its last ``decode`` call
    (``decode_args``: ``(args, kwargs)``), in the dict yielded, filled after the block. Works for
    every method's latent space (RSVP's, PVDM's, LVDM's): instance attributes shadow the two
    methods inside the block."""
    out: dict[str, Any] = {"encode": 0, "decode": 0, "decode_args": None}
    counter = flop_counter()

    def wrap(part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            before = counter.get_total_flops()
            result = fn(*args, **kwargs)
            out[part] += int(counter.get_total_flops() - before)
            if part == "decode":
                out["decode_args"] = (args, kwargs)
            return result
        return counted

    space.condition, space.decode = wrap("encode", space.condition), wrap("decode", space.decode)
    try:
        with counter:
            yield out
    finally:
        del space.condition, space.decode
    out["total"] = int(counter.get_total_flops())


def method_paths(trainers: Trainer | dict[str, Trainer], device: torch.device,
                 variants: Sequence[str]) -> list[SamplingPath]:
    """The sampling paths of every method (``trainers``: a Trainer, RSVP's, or method -> Trainer):
    each method's default path (its task's predictor of the Trainer's EVAL net, in the inference
    layout) and, for RSVP, ``variants`` (:func:`sampling_paths`); each with its own random observed
    frames (the method's ``K`` and resolution) and its Trainer's autocast."""
    if isinstance(trainers, Trainer):
        trainers = {"rsvp": trainers}
    paths = []
    for method, trainer in trainers.items():
        task = trainer.task
        k, r = task.cond_frames, int(trainer.cfg.data.resolution)
        observed = (torch.rand(1, 3, k, r, r, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
        for path in sampling_paths(task, trainer.ctx.eval_net("model").eval(), variants if method == "rsvp" else ()):
            path.method, path.observed, path.frames = method, observed, int(task.space.frames)
            if not path.precision:  # a path without a precision of its own runs as the Trainer would
                path.autocast, path.precision = trainer.ctx.autocast, str(trainer.cfg.train.precision)
            paths.append(path)
    return paths


def bench_sampling(trainers: Trainer | dict[str, Trainer], device: torch.device, samplers: Sequence[str],
                   step_counts: Sequence[int], *, repeats: int = 1, track_memory: bool = True,
                   variants: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Latency and peak memory of each method's prediction of one clip per sampler and step count.

    ``trainers``: RSVP's Trainer (``DDPMTask``), or a dict method -> Trainer (``--methods``: the
    PVDM and LVDM tasks beside RSVP's); every method's paths (:func:`method_paths`) are timed
    round-robin, repetition by repetition, so a load change on a shared machine slows them alike.
    A prediction encodes the observed frames with the method's first stage, runs the sampler on
    the Trainer's eval denoiser (the EMA copy validate.py samples with), and decodes the predicted
    latent into the clip's frames, under the Trainer's precision (bf16 autocast on CUDA by
    default). One untimed warm-up call first; ``latency_s`` is the fastest of ``repeats``. FLOPs
    (:func:`counted_parts`, one counted 1-step prediction per method): encode + decode + steps x
    one sampler step (one guided call: two denoiser passes when guidance is not 0 or 1); the
    scheduler's own elementwise arithmetic is not counted. ``variants`` (RSVP only,
    :func:`sampling_paths`) are compared with RSVP's default path: ``max_abs_diff_vs_default``
    between their frames, ``time_vs_default`` = their latency / the default's (each method against
    its own default path). Rows of another method than RSVP carry ``method``.
    """
    paths = method_paths(trainers, device, variants)
    defaults = {path.method: path for path in paths if path.name == "default"}

    def resident(path: SamplingPath) -> list[torch.Tensor]:
        p = path.predictor
        return [t for m in (p.net, p.space, p.diffusion) for t in [*m.parameters(), *m.buffers()]] + [path.observed]

    def predict(path: SamplingPath, sampler: str, steps: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        with path.context(), path.autocast():
            return path.predictor.predict(path.observed, generator, sampler=sampler, steps=steps)

    frames = {id(path): predict(path, samplers[0], 1) for path in paths}  # warm-up, and the outputs compared
    flops, decode_args = {}, {}
    for method, path in defaults.items():
        with torch.no_grad(), counted_parts(path.predictor.space) as counted:
            predict(path, samplers[0], 1)  # one sampler step
        flops[method] = {"encode": counted["encode"], "decode": counted["decode"],
                         "denoiser": counted["total"] - counted["encode"] - counted["decode"]}
        decode_args[method] = counted["decode_args"]
    encode_s = {id(path): [] for path in paths}
    decode_s = {id(path): [] for path in paths}
    for _ in range(repeats):
        for path in paths:
            space, (args, kwargs) = path.predictor.space, decode_args[path.method]
            with path.context(), path.autocast():
                encode_s[id(path)].append(timed(lambda: space.condition(path.observed), device))
                decode_s[id(path)].append(timed(lambda: space.decode(*args, **kwargs), device))
    rows = []
    for sampler in samplers:
        for steps in step_counts:
            times: dict[int, list[float]] = {id(path): [] for path in paths}
            peaks: dict[int, Optional[int]] = {id(path): None for path in paths}
            for _ in range(repeats):
                for path in paths:
                    if device.type == "cuda":
                        with peak_memory(device, resident(path)) as measured:
                            times[id(path)].append(timed(lambda: predict(path, sampler, steps), device))
                        peaks[id(path)] = max(peaks[id(path)] or 0, measured["bytes"])
                    else:  # counting live tensors on the CPU slows the run: untimed, once per sampler below
                        times[id(path)].append(timed(lambda: predict(path, sampler, steps), device))
            for path in paths:
                default, f = defaults[path.method], flops[path.method]
                total = f["encode"] + f["decode"] + int(steps) * f["denoiser"]
                latency = min(times[id(path)])
                rows.append({**({} if path.method == "rsvp" else {"method": path.method}),
                             "variant": path.name, "resolution": int(path.observed.shape[-1]),
                             "frames": path.frames, "cond_frames": int(path.observed.shape[2]),
                             "sampler": sampler, "steps": int(steps), "latency_s": latency,
                             "latency_s_all": times[id(path)],
                             "time_vs_default": latency / min(times[id(default)]),
                             "max_abs_diff_vs_default": float((frames[id(path)] - frames[id(default)]).abs().max()),
                             "first_stage_encode_s": min(encode_s[id(path)]),
                             "first_stage_decode_s": min(decode_s[id(path)]),
                             "flops": total, "flops_encode": f["encode"], "flops_decode": f["decode"],
                             "flops_per_denoiser_step": f["denoiser"], "achieved_flops_per_s": total / latency,
                             "precision": path.precision,
                             "peak_memory_bytes": peaks[id(path)],
                             "peak_memory_kind": "cuda max_memory_allocated (own tensors)" if device.type == "cuda" else None})
        if device.type == "cpu" and track_memory:
            # Counting slows the run: once per sampler, at 2 steps (the multistep history exists by then).
            at = min(2, min(step_counts))
            for path in paths:
                with peak_memory(device, resident(path)) as measured:
                    predict(path, sampler, at)
                for row in rows:
                    if row["sampler"] == sampler and (row.get("method", "rsvp"), row["variant"]) == (path.method, path.name):
                        row["peak_memory_bytes"] = measured["bytes"]
                        row["peak_memory_kind"] = f"live tensor storages (counted at {at} steps)"
    return rows


# --------------------------------------------------------------------------------------------
# Autoregressive sampling


def bench_ar_sampling(cfg: DictConfig, device: torch.device, pred_frames: Sequence[int],
                      repeats: int = 1) -> list[dict[str, Any]]:
    """Latency of the tubelet transformer's prediction of one clip (``pred_frames`` frames after the
    config's observed ones) with the KV cache and with full recomputation; fastest of ``repeats``
    after one untimed warm-up; the same generator seed for both."""
    from models.interface import rollout
    from models.tubelet_autoencoder import tokens_per_step

    task = get_experiment(str(cfg.exp)).build_task(cfg, device)
    task.first_stage.to(device)
    predictor = inference_layout(task.predictor(task.net.to(device).eval()))
    k, r = task.cond_frames, int(cfg.data.resolution)
    observed = (torch.rand(1, 3, k, r, r, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)

    def predict(frames: int, cache: bool) -> torch.Tensor:
        return rollout(predictor, observed, frames, torch.Generator().manual_seed(0), kv_cache=cache)

    predict(predictor.step_frames, True)  # warm-up
    rows = []
    for frames in pred_frames:
        outputs, times = {}, {True: [], False: []}
        for _ in range(repeats):
            for cache in (True, False):
                synchronize(device)
                start = time.perf_counter()
                outputs[cache] = predict(frames, cache)
                synchronize(device)
                times[cache].append(time.perf_counter() - start)
        tokens = -(-frames // predictor.step_frames) * tokens_per_step(predictor.first_stage)
        for cache in (True, False):
            rows.append({"variant": "kv_cache" if cache else "recompute", "resolution": r, "cond_frames": k,
                         "pred_frames": int(frames), "trained_frames": int(cfg.model.frames),
                         "tokens_sampled": tokens, "latency_s": min(times[cache]), "latency_s_all": times[cache],
                         "speedup_of_cache": min(times[False]) / min(times[True]),
                         "same_frames": bool(torch.equal(outputs[True], outputs[False]))})
    return rows


# --------------------------------------------------------------------------------------------
# Data loading


def bench_data_loading(quick: bool, folder: Path) -> dict[str, Any]:
    """``scripts/bench_data.py`` in this process (it sets 1 torch thread; restored afterwards)."""
    import bench_data

    out = folder / "bench_data.json"
    argv = ["--out", str(out), "--dir", str(folder / "videos")]
    if quick:
        argv += ["--quick", "--num_videos", "4", "--clips", "20", "--strides", "1"]
    threads = torch.get_num_threads()
    try:
        bench_data.main(argv)
    finally:
        torch.set_num_threads(threads)
    return json.loads(out.read_text())


# --------------------------------------------------------------------------------------------
# The whole run


DEFAULT_VARIANTS = {
    # The GPU default (auto) is bf16 autocast: fp32 shows what it buys. CPU default is fp32.
    "cuda": ["fp32:train.precision=fp32", "channels_last:train.channels_last=true", "compile:train.compile=true",
             "checkpointing:model.unet.checkpointing=true"],
    "cpu": ["bf16:train.precision=bf16", "channels_last:train.channels_last=true",
            "checkpointing:model.unet.checkpointing=true"],
}


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"name:key=value,key=value"`` -> ``(name, [overrides])``."""
    name, sep, rest = text.partition(":")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"variant '{text}' is not NAME:key=value[,key=value]")
    return name, [o for o in rest.split(",") if o]


def device_info(device: torch.device) -> dict[str, Any]:
    info = {"type": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": cpu_model(), "cpu_cores": os.cpu_count(), "platform": platform.platform()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    else:
        info["name"] = f"{info['cpu']} ({info['cpu_cores']} cores)"
    return info


def parse_methods(text: str) -> list[str]:
    """``"rsvp,pvdm"`` -> ``["rsvp", "pvdm"]``, each one of :data:`METHODS`."""
    methods = [m for m in text.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods takes a comma-separated list of {', '.join(METHODS)}; got {text!r}")
    return methods


def method_overrides(entries: Sequence[str], method: str) -> list[str]:
    """The ``key=value`` parts of the ``METHOD:key=value`` entries for ``method``."""
    out = []
    for entry in entries:
        name, sep, override = entry.partition(":")
        if not sep or name not in METHODS or "=" not in override:
            raise ValueError(f"'{entry}' is not METHOD:key=value with METHOD one of {', '.join(METHODS)}")
        if name == method:
            out.append(override)
    return out


def variant_configs(exp: str, config: str, base: list[str], variants: Sequence[tuple[str, list[str]]],
                    notes: list[str]) -> dict[str, DictConfig]:
    """``{"base": cfg, name: cfg with the variant's overrides}``; variants that do not apply to
    ``exp`` (unknown keys) are left out with a note."""
    from tools.config import ConfigError

    configs = {"base": run_config(exp, config, base)}
    for name, overrides in variants:
        try:
            configs[name] = run_config(exp, config, [*base, *overrides])
        except ConfigError as err:
            notes.append(f"{exp}: variant {name} skipped ({str(err).splitlines()[0]})")
    return configs


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    sections = set(args.sections.split(","))
    setups = QUICK_SETUPS if args.quick else {r: FULL_SETUPS[r] for r in args.resolutions.split(",")}
    variants = [parse_variant(v) for v in (args.variant if args.variant is not None else
                                             ([] if args.quick else DEFAULT_VARIANTS[device.type]))]
    skip = set(args.skip.split(",")) if args.skip else set()
    methods = parse_methods(args.methods)
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv),
        "device": device_info(device), "quick": bool(args.quick), "train": [], "sampling": [], "notes": []}
    notes = results["notes"]
    folder = Path(tempfile.mkdtemp(prefix="rsvp_bench_"))
    matmul_size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    timing = dict(steps=args.steps, warmup=args.warmup, matmul_size=matmul_size)
    for label, setup in setups.items():
        quick_fs = QUICK_OVERRIDES["first_stage"] if args.quick else []
        quick_dd = QUICK_OVERRIDES["ddpm"] if args.quick else []
        fs_base = [*COMMON_OVERRIDES["first_stage"], *quick_fs, *args.overrides]
        if args.fs_batch:
            fs_base.append(f"train.batch_size={args.fs_batch}")
        if "rsvp" in methods and "train" in sections and f"first_stage@{label}" not in skip:
            print(f"[bench] first stage {setup['first_stage']} ...", flush=True)
            configs = variant_configs("first_stage", setup["first_stage"], fs_base, variants, notes)
            for row in bench_train(configs, device, folder / f"first_stage_{label}", **timing):
                results["train"].append({"config": setup["first_stage"], **row})
        ddpm_parts = {"ddpm", "ddpm_clips", "sample"} - {p.split("@")[0] for p in skip if p.endswith(f"@{label}")}
        samplers: dict[str, Callable[[], Trainer]] = {}  # method -> its sampling Trainer, built after the training rows
        configs_of: dict[str, str] = {}
        if "rsvp" in methods and {"train", "sample"} & sections and ddpm_parts:
            checkpoint = untrained_first_stage(ROOT / setup["first_stage"], folder / f"first_model_{label}.pth", fs_base)
            dd_base = [*COMMON_OVERRIDES["ddpm"], *quick_dd, f"first_model={checkpoint}", *args.ddpm_overrides]
            if args.ddpm_batch:
                dd_base.append(f"train.batch_size={args.ddpm_batch}")
            if "train" in sections and "ddpm" in ddpm_parts:
                print(f"[bench] DDPM {setup['ddpm']} (token batches) ...", flush=True)
                configs = variant_configs("ddpm", setup["ddpm"], dd_base, variants, notes)
                for row in bench_train(configs, device, folder / f"ddpm_{label}", use_tokens=True, **timing):
                    results["train"].append({"config": setup["ddpm"], **row})
            if "train" in sections and "ddpm_clips" in ddpm_parts and not args.quick:
                print(f"[bench] DDPM {setup['ddpm']} (clips encoded on the fly) ...", flush=True)
                configs = {"base": run_config("ddpm", setup["ddpm"], dd_base)}
                for row in bench_train(configs, device, folder / f"ddpm_clips_{label}", **timing):
                    results["train"].append({"config": setup["ddpm"], **row})
            if "sample" in sections and "sample" in ddpm_parts:
                configs_of["rsvp"] = setup["ddpm"]
                samplers["rsvp"] = lambda cfg=run_config("ddpm", setup["ddpm"], dd_base): build_trainer(
                    cfg, device, folder / f"sample_{label}")
        for method in methods:
            if method == "rsvp":
                continue
            msetup = (QUICK_METHOD_SETUPS if args.quick else METHOD_SETUPS)[method].get(label)
            parts = {"train", "sample"} & sections
            parts -= {part for part, key in (("train", method), ("sample", f"{method}_sample")) if f"{key}@{label}" in skip}
            if msetup is None:
                if parts:
                    notes.append(f"{method}: no config at {label} (left out)")
                continue
            if not parts:
                continue
            checkpoint = untrained_first_stage(ROOT / msetup["first_stage"], folder / f"{method}_{label}.pth",
                                               [*COMMON_OVERRIDES["first_stage"], *method_overrides(args.method_fs_overrides, method)])
            base = [*COMMON_OVERRIDES["ddpm"], f"first_model={checkpoint}", f"train.batch_size={args.baseline_batch}",
                    *method_overrides(args.method_overrides, method)]
            if "train" in parts:  # the baselines train from clips (each step encodes them with the first stage)
                print(f"[bench] {method.upper()} {msetup['ddpm']} (clips encoded on the fly) ...", flush=True)
                configs = {"base": run_config("ddpm", msetup["ddpm"], base)}
                for row in bench_train(configs, device, folder / f"{method}_{label}", **timing):
                    results["train"].append({"config": msetup["ddpm"], "method": method, **row})
            if "sample" in parts:  # one copy of the (random) weights is enough: no EMA copy
                configs_of[method] = msetup["ddpm"]
                samplers[method] = lambda cfg=run_config("ddpm", msetup["ddpm"], [*base, "train.ema_decay=0"]), \
                    m=method: build_trainer(cfg, device, folder / f"sample_{m}_{label}")
        if samplers:
            print(f"[bench] sampling {', '.join(configs_of.values())} ...", flush=True)
            trainers = {method: build() for method, build in samplers.items()}
            for row in bench_sampling(trainers, device, args.samplers.split(","),
                                      [int(s) for s in args.sample_steps.split(",")], repeats=args.sample_repeats,
                                      variants=args.sample_variant):
                results["sampling"].append({"config": configs_of[row.get("method", "rsvp")], **row})
            del trainers
    if "ar" in sections:
        print(f"[bench] autoregressive sampling {AR_SETUP['transformer']} ...", flush=True)
        first_model = untrained_first_stage(ROOT / AR_SETUP["first_stage"], folder / "tubelet.pth",
                                            ["data.num_workers=0", *args.ar_fs_overrides])
        cfg = run_config("transformer", AR_SETUP["transformer"], ["data.num_workers=0", f"first_model={first_model}",
                                                                  *args.ar_overrides])
        results["ar_sampling"] = bench_ar_sampling(cfg, device, [int(f) for f in args.ar_frames.split(",")],
                                                   repeats=args.sample_repeats)
    if "data" in sections:
        print("[bench] data loading (scripts/bench_data.py) ...", flush=True)
        results["data"] = bench_data_loading(args.quick, folder)
    results["summary"] = summary(results)
    shutil.rmtree(folder, ignore_errors=True)
    return results


def summary(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for row in results["train"]:
        if row["variant"] == "base":
            key = f"{row['exp']}{'_clips' if row['input'] == 'clips' and row['exp'] == 'ddpm' else ''}_{row['resolution']}"
            out[f"{key if 'method' not in row else row['method'] + '_' + str(row['resolution'])}_ratio"] = row["ratio"]
    for key, value in method_ratios(results).items():
        out[key] = value
    for row in results["sampling"]:
        base = baseline_of(results, row)
        if "method" not in row and row["variant"] == "default" and base is not None:
            key = f"sampling_{row['resolution']}_{row['sampler']}_{row['steps']}"
            out[f"{key}_speedup_vs_baseline"] = base["latency_s"] / row["latency_s"]
            if row["peak_memory_bytes"] and base["peak_memory_bytes"]:
                out[f"{key}_peak_vs_baseline"] = row["peak_memory_bytes"] / base["peak_memory_bytes"]
    for row in results.get("ar_sampling", []):
        if row["variant"] == "kv_cache":
            out[f"ar_{row['resolution']}_{row['pred_frames']}_kv_cache_speedup"] = row["speedup_of_cache"]
    if "data" in results:
        out["data_speedup"] = {k: v["wall"] for k, v in results["data"].get("speedup", {}).items()}
    return out


def method_pairs(results: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(kind, RSVP's row, a baseline's row)`` for every comparison ``--methods`` makes: ``sampling``
    (RSVP's default path and the method's prediction, same resolution, sampler and steps) and
    ``train`` (RSVP's DDPM training steps, from tokens and, when timed, from clips, and the method's
    step from clips, same resolution)."""
    pairs = []
    for row in results["sampling"]:
        for r in results["sampling"]:
            if ("method" in row and "method" not in r and r["variant"] == "default"
                    and (r["resolution"], r["sampler"], r["steps"]) == (row["resolution"], row["sampler"], row["steps"])):
                pairs.append(("sampling", r, row))
    for row in results["train"]:
        for r in results["train"]:
            if ("method" in row and row["variant"] == "base" and "method" not in r and r["exp"] == "ddpm"
                    and r["variant"] == "base" and r["resolution"] == row["resolution"]):
                pairs.append(("train", r, row))
    return pairs


def method_ratios(results: dict[str, Any]) -> dict[str, float]:
    """RSVP against each baseline (:func:`method_pairs`): ``sampling_<res>_<sampler>_<steps>_rsvp_vs_<method>_speedup``
    = the method's prediction latency / RSVP's; ``train_<res>_rsvp[_clips]_vs_<method>_speedup_per_clip`` = the
    method's DDPM training-step time per clip / RSVP's (token or clips step)."""
    out: dict[str, float] = {}
    for kind, rsvp, other in method_pairs(results):
        if kind == "sampling":
            key = f"sampling_{other['resolution']}_{other['sampler']}_{other['steps']}_rsvp_vs_{other['method']}_speedup"
            out[key] = other["latency_s"] / rsvp["latency_s"]
        else:
            key = f"train_{other['resolution']}_rsvp{'_clips' if rsvp['input'] == 'clips' else ''}_vs_{other['method']}"
            out[f"{key}_speedup_per_clip"] = per_clip(other) / per_clip(rsvp)
    return out


def per_clip(row: dict[str, Any]) -> float:
    """A training row's step time per clip of its batch."""
    return row["step_s"] / row["batch_size"]


def baseline_of(results: dict[str, Any], row: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The ``baseline`` sampling row of the same resolution, sampler and step count, if any."""
    same = [r for r in results["sampling"] if r["variant"] == "baseline" and "method" not in r
            and (r["resolution"], r["sampler"], r["steps"]) == (row["resolution"], row["sampler"], row["steps"])]
    return same[0] if same else None


# Issue 17's targets: prediction >= 1.4x faster than the baseline path, peak memory down by a third,
# the DDPM training step at >= 50 % of the dense matmul rate.
TARGETS = {"speedup": 1.4, "peak_ratio": 2 / 3, "train_ratio": 0.5}


def targets_markdown(results: dict[str, Any]) -> str:
    """The issue-17 comparison as Markdown (``--doc`` writes it into docs/BENCHMARKS.md)."""
    dev = results["device"]
    others = any("method" in r for r in [*results["sampling"], *results["train"]])
    lines = [f"Command: `{results['command']}` ({results.get('wall_s', 0):.0f} s). Machine: {dev['name']}, "
             f"torch {dev['torch']}, {dev['threads']} torch thread(s); {results['date']}.", "",
             f"| {'code path (RSVP) / method' if others else 'code path'} | res | sampler | steps | latency | encode | "
             "decode | peak memory | max abs diff of the frames vs default |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["sampling"]:
        lines.append(f"| {path_label(r)} | {r['resolution']} | {r['sampler']} | {r['steps']} | {r['latency_s']:.2f} s | "
                     f"{r['first_stage_encode_s']:.2f} s | {r['first_stage_decode_s']:.2f} s | "
                     f"{gib(r['peak_memory_bytes'])} GiB | {r['max_abs_diff_vs_default']:.1e} |")
    lines.append("")
    for r in results["sampling"]:
        base = baseline_of(results, r)
        if "method" in r or r["variant"] != "default" or base is None:
            continue
        speedup = base["latency_s"] / r["latency_s"]
        met = "met" if speedup >= TARGETS["speedup"] else f"not met: {TARGETS['speedup'] / speedup:.2f}x short"
        lines.append(f"- {r['resolution']}x{r['resolution']} {r['sampler']} {r['steps']} steps: the default path is "
                     f"**{speedup:.2f}x** as fast as the baseline (target >= {TARGETS['speedup']}x: {met}).")
        for other in results["sampling"]:
            if "method" not in other and other["variant"] == "bf16" and baseline_of(results, other) is base:
                lines.append(f"  Under bf16 autocast (`validate.py --precision bf16`, an opt-in) it is "
                             f"**{base['latency_s'] / other['latency_s']:.2f}x** as fast as the baseline, its frames "
                             f"within {other['max_abs_diff_vs_default']:.1e} of the fp32 default's.")
        if r["peak_memory_bytes"] and base["peak_memory_bytes"]:
            ratio = r["peak_memory_bytes"] / base["peak_memory_bytes"]
            met = "met" if ratio <= TARGETS["peak_ratio"] else f"not met by {100 * (ratio - TARGETS['peak_ratio']):.0f} points"
            lines.append(f"  Peak memory {gib(r['peak_memory_bytes'])} GiB against {gib(base['peak_memory_bytes'])} GiB "
                         f"= **{100 * ratio:.0f} %** of the baseline (target <= 67 %: {met}).")
    for r in results["train"]:
        if r["exp"] == "ddpm" and r["input"] == "tokens" and r["variant"] == "base":
            met = "met" if r["ratio"] >= TARGETS["train_ratio"] else "not met"
            lines.append(f"- DDPM training step ({r['resolution']}x{r['resolution']}, batch {r['batch_size']}, "
                         f"{r['compute_dtype']}): {r['flops_per_step'] / 1e9:.1f} GFLOP in {r['step_s']:.3f} s = "
                         f"{r['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s = **{100 * r['ratio']:.1f} %** of the dense "
                         f"matmul rate ({r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s; target >= 50 %: {met}).")
    if others:
        lines += ["", *methods_markdown(results)]
    return "\n".join(lines)


def path_label(row: dict[str, Any]) -> str:
    """A sampling row's code path (RSVP's rows) or method (a baseline's, ``--methods``)."""
    return row["method"].upper() if "method" in row else row["variant"]


def methods_markdown(results: dict[str, Any]) -> list[str]:
    """RSVP beside the baselines (``--methods``): the DDPM training steps and the ratios of :func:`method_ratios`."""
    rows = [r for r in results["train"] if r["exp"] == "ddpm" and r["variant"] == "base"]
    lines = []
    if any("method" in r for r in rows):
        lines += ["| DDPM training step | res | input | batch | GFLOP | step | per clip | GFLOP/s | of dense matmul | peak memory |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r.get('method', 'rsvp').upper()} | {r['resolution']} | {r['input']} | {r['batch_size']} | "
                         f"{r['flops_per_step'] / 1e9:.1f} | {r['step_s']:.3f} s | {per_clip(r):.3f} s | "
                         f"{r['achieved_flops_per_s'] / 1e9:.1f} | {100 * r['ratio']:.1f} % | {gib(r['peak_memory_bytes'])} GiB |")
        lines.append("")
    for kind, rsvp, other in method_pairs(results):
        name = other["method"].upper()
        if kind == "sampling":
            speedup = other["latency_s"] / rsvp["latency_s"]
            lines.append(f"- {other['resolution']}x{other['resolution']} {other['sampler']} {other['steps']} steps, one "
                         f"clip: {name} {other['latency_s']:.2f} s, RSVP's default path {rsvp['latency_s']:.2f} s: RSVP "
                         f"is **{speedup:.2f}x** as fast (RSVP / {name} latency = {1 / speedup:.2f}); peak memory "
                         f"{gib(rsvp['peak_memory_bytes'])} GiB against {gib(other['peak_memory_bytes'])} GiB.")
        else:
            speedup = per_clip(other) / per_clip(rsvp)
            source = "clips encoded in the step" if rsvp["input"] == "clips" else "token batches"
            lines.append(f"- DDPM training step per clip ({other['resolution']}x{other['resolution']}): RSVP "
                         f"({source}, batch {rsvp['batch_size']}) {per_clip(rsvp):.3f} s, {name} (clips encoded in the "
                         f"step, batch {other['batch_size']}) {per_clip(other):.3f} s: RSVP is **{speedup:.2f}x** as "
                         f"fast (RSVP / {name} = {1 / speedup:.2f}); of the dense matmul rate RSVP "
                         f"{100 * rsvp['ratio']:.1f} %, {name} {100 * other['ratio']:.1f} %.")
    return lines


def gib(n: Optional[int]) -> str:
    return "-" if n is None else f"{n / 2**30:.2f}"


def print_tables(results: dict[str, Any]) -> None:
    dev = results["device"]
    print(f"\ndevice: {dev['name']} | torch {dev['torch']} | {dev['threads']} threads | {results['date']}")
    print("\ntraining steps (step_s: fastest of the timed steps; ratio = achieved / dense matmul FLOP/s, same dtype)")
    head = f"{'exp':<12}{'input':<7}{'variant':<14}{'res':>4}{'batch':>6}{'dtype':>9}{'GFLOP':>9}{'step s':>9}" \
           f"{'GFLOP/s':>9}{'mm GFLOP/s':>11}{'ratio':>7}{'x base':>7}{'peak GiB':>9}"
    print(head)
    for r in results["train"]:
        print(f"{r['exp'] + ('/' + r['method'] if 'method' in r else ''):<12}{r['input']:<7}{r['variant']:<14}{r['resolution']:>4}{r['batch_size']:>6}"
              f"{r['compute_dtype']:>9}{r['flops_per_step'] / 1e9:>9.1f}{r['step_s']:>9.3f}"
              f"{r['achieved_flops_per_s'] / 1e9:>9.1f}{r['matmul_flops_per_s'] / 1e9:>11.1f}"
              f"{100 * r['ratio']:>6.1f}%{r['speedup_vs_base']:>7.2f}{gib(r['peak_memory_bytes']):>9}")
    if results["sampling"]:
        print("\nsampling one clip (encode observed frames, sampler, decode)")
        print(f"{'variant':<10}{'res':>4}{'frames':>7}{'sampler':>8}{'steps':>6}{'latency s':>11}{'encode s':>10}"
              f"{'decode s':>10}{'GFLOP':>9}{'GFLOP/s':>9}{'peak GiB':>9}{'t/default':>10}")
        for r in results["sampling"]:
            print(f"{path_label(r):<10}{r['resolution']:>4}{r['frames']:>7}{r['sampler']:>8}{r['steps']:>6}"
                  f"{r['latency_s']:>11.3f}{r['first_stage_encode_s']:>10.3f}{r['first_stage_decode_s']:>10.3f}"
                  f"{r['flops'] / 1e9:>9.1f}{r['achieved_flops_per_s'] / 1e9:>9.1f}{gib(r['peak_memory_bytes']):>9}"
                  f"{r['time_vs_default']:>10.2f}")
    if results.get("ar_sampling"):
        print("\nautoregressive sampling, tubelet transformer (encode observed frames, sample tokens, decode)")
        print(f"{'variant':<11}{'res':>4}{'observed':>9}{'predicted':>10}{'trained':>8}{'tokens':>7}{'latency s':>11}"
              f"{'cache x':>8}{'same':>6}")
        for r in results["ar_sampling"]:
            print(f"{r['variant']:<11}{r['resolution']:>4}{r['cond_frames']:>9}{r['pred_frames']:>10}"
                  f"{r['trained_frames']:>8}{r['tokens_sampled']:>7}{r['latency_s']:>11.3f}{r['speedup_of_cache']:>8.2f}"
                  f"{str(r['same_frames']):>6}")
    for key, value in method_ratios(results).items():
        print(f"{key}: {value:.2f}")
    if "data" in results:
        for stride, ratio in results["data"].get("speedup", {}).items():
            print(f"data loading {stride}: seek-based loader / full decode = {ratio['wall']:.2f}x clips/s, "
                  f"{ratio['cpu']:.2f}x less CPU per clip")
    for note in results["notes"]:
        print(f"note: {note}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes configs, 64x64 only, no variants (~1-2 min on 2 CPU cores)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default="results/bench.json")
    parser.add_argument("--sections", default="train,sample,data",
                        help="any of train,sample,data,ar (ar: the tubelet transformer's sampling with and without "
                             "its KV cache)")
    parser.add_argument("--ar_frames", default="8,32", help="ar: predicted frames per timed prediction (default "
                                                             "%(default)s; the config trains on 4 + 8)")
    parser.add_argument("--ar_override", dest="ar_overrides", action="append", default=[], metavar="key=value",
                        help="ar: extra transformer config override (repeatable)")
    parser.add_argument("--ar_fs_override", dest="ar_fs_overrides", action="append", default=[], metavar="key=value",
                        help="ar: extra tubelet first-stage config override (repeatable)")
    parser.add_argument("--resolutions", default="64,256", help="full run: UCF-101 config resolutions")
    parser.add_argument("--skip", default="", help="parts to leave out, e.g. first_stage@256,ddpm_clips@64,sample@256")
    parser.add_argument("--fs_batch", type=int, help="first-stage batch size (default: the config's)")
    parser.add_argument("--ddpm_batch", type=int, help="DDPM batch size (default: the config's)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 3; quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before (compiled nets: at least 2)")
    parser.add_argument("--matmul_size", type=int, default=0, help="side of the square matmul (default: 8192 CUDA, 2048 CPU)")
    parser.add_argument("--variant", action="append", metavar="NAME:key=value[,key=value]",
                        help="speed option to time against the base step (repeatable; default: a set per device, "
                             "none with --quick); --variant none for none")
    parser.add_argument("--samplers", default="ddpm,ddim,dpm")
    parser.add_argument("--sample_steps", default="20,50")
    parser.add_argument("--sample_repeats", type=int, default=None, help="timed samples per row, fastest kept "
                        "(default 2; quick 1)")
    parser.add_argument("--sample_variant", action="append", default=[], choices=list(SAMPLING_VARIANTS),
                        help="sampling code path to time round-robin against the default one: baseline = before "
                             "issue 17 (contiguous weights, PyTorch's 3D-conv choice, no frame chunks); bf16 = the "
                             "default path under bf16 autocast (validate.py --precision bf16)")
    parser.add_argument("--methods", default="rsvp",
                        help="comma-separated methods benchmarked side by side: rsvp (the sections above), pvdm, "
                             "lvdm (the baselines' 256x256 UCF-101 configs, shapes64 with --quick: the DDPM training "
                             "step from clips and the prediction of one clip, timed round-robin with RSVP's)")
    parser.add_argument("--baseline_batch", type=int, default=2,
                        help="batch size of the baselines' DDPM training step (default %(default)s; their configs' "
                             "64 / 32 do not fit a CPU); compare per clip")
    parser.add_argument("--method_override", dest="method_overrides", action="append", default=[],
                        metavar="METHOD:key=value", help="extra DDPM config override of a baseline (repeatable)")
    parser.add_argument("--method_fs_override", dest="method_fs_overrides", action="append", default=[],
                        metavar="METHOD:key=value", help="extra first-stage config override of a baseline (repeatable)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--doc", help="write the issue-17 comparison into this Markdown file's bench-targets block")
    parser.add_argument("--fs_override", dest="overrides", action="append", default=[], metavar="key=value",
                        help="extra first-stage config override (repeatable)")
    parser.add_argument("--ddpm_override", dest="ddpm_overrides", action="append", default=[], metavar="key=value",
                        help="extra DDPM config override (repeatable)")
    args = parser.parse_args(argv)
    if args.variant == ["none"]:
        args.variant = []
    if args.steps is None:
        args.steps = 2 if args.quick else 3
    if args.sample_repeats is None:
        args.sample_repeats = 1 if args.quick else 2
    if args.quick and args.samplers == "ddpm,ddim,dpm" and args.sample_steps == "20,50":
        args.samplers, args.sample_steps = "dpm", "20"
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = run(args)
    results["wall_s"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_tables(results)
    print(f"wrote {out} ({results['wall_s']:.0f} s)")
    if args.doc:
        from doc_block import replace_block

        replace_block(Path(args.doc), "bench-targets", targets_markdown(results))
        print(f"wrote the bench-targets block of {args.doc}")
    ddpm = [r for r in results["train"] if r["exp"] == "ddpm" and r["variant"] == "base" and r["input"] == "tokens"]
    if ddpm:
        r = ddpm[-1]
        print(f"DDPM training step ({r['resolution']}x{r['resolution']}, batch {r['batch_size']}, {r['compute_dtype']}): "
              f"{r['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s = {100 * r['ratio']:.1f}% of dense matmul "
              f"({r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
