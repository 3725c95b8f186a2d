"""ESTIMATED GPU time of each stage of the real-data pipelines, from the work of their real steps.

    python scripts/estimate_time.py --dataset ucf101 --res 64 [--tflops 125] [--markdown] [--out est.json]

Nothing is timed. Each stage's real code (the task's ``training_step``: forward, losses,
backward; the encoder pass of ``--exp extract``; the encode / denoiser calls / decode of
validate.py) runs once on fake tensors (shapes only, no compute) while three dispatch modes
count its FLOPs (``torch.utils.flop_counter.FlopCounterMode`` with ``tools/flops.py``'s CPU
attention formulas: matrix products, convolutions, attention), its kernel-launching operators
(every aten operator that is not a view), and the peak bytes of live tensors
(scripts/measure_memory.py's accounting, the same number that script prints). Two lower bounds
on the time of one unit (a training step, a batch) follow:

* compute: FLOPs / an *assumed* achieved throughput: ``--tflops`` for the bf16-autocast training
  stages (default 125 = 40 % of an A100's 312 dense bf16 TFLOP/s), ``--tflops_fp32`` for
  extraction and sampling, which run in fp32 with TF32 convolutions (default 62 = 40 % of 156);
* launch: operators x ``--us_per_op`` (default 6 us, the usual CPU cost of one eager PyTorch
  operator): small steps (the latent DDPM) are bound by this, not by FLOPs.

A stage's estimate is the larger of the two, times the number of units. Left out: the optimizer
update (fused AdamW on CUDA: a few kernels), elementwise work's memory traffic, data loading,
checkpoints, sample steps, the sampler's own arithmetic, and validate.py's metrics (LPIPS, I3D
for FVD). Read the result as an order of magnitude, not as a measurement.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from measure_memory import LiveTensorMemory, training_step  # noqa: E402
from models.diffusion.guidance import GuidedDenoiser  # noqa: E402
from models.diffusion.samplers import sampling_timesteps  # noqa: E402
from models.latent_space import SemanticLatentSpace, SemanticTokens  # noqa: E402
from tools.config import ConfigError  # noqa: E402
from tools.experiments.ddpm import DDPMTask  # noqa: E402
from tools.experiments.first_stage import build_vqvae  # noqa: E402
from tools.flops import flop_counter  # noqa: E402
from tools.registry import experiment_config  # noqa: E402

CONFIGS = Path("configs")
# Train / test videos (UCF-101: official fold 1 lists). SkyTimelapse: leaf folders of the release
# as our loader counts them, an ASSUMPTION here; `python -m tools.inspect_data` prints the real count.
DATASET_VIDEOS = {"ucf101": (9537, 3783), "sky": (2392, 225)}
VALIDATE_BATCH = 8  # validate.py --batch_size default


@dataclass(frozen=True)
class Pipeline:
    """The configs one real-data pipeline script runs (scripts/lib_pipeline.sh uses the same files)."""

    data: str
    res: int
    first_stage: str
    gan: str
    ddpm: str
    extract_batch: int  # clips per encoder batch of --exp extract (fp32, no autocast)


PIPELINES = {
    ("ucf101", 64): Pipeline("ucf101", 64, "first_stage/moso_ucf101_64.yaml", "first_stage/moso_ucf101_64_gan.yaml",
                             "ddpm/rsvp_s2_ucf101_64.yaml", 32),
    ("ucf101", 256): Pipeline("ucf101", 256, "first_stage/moso_ucf101_256.yaml",
                              "first_stage/moso_ucf101_256_gan.yaml", "ddpm/rsvp_s2_ucf101_256.yaml", 8),
    ("sky", 256): Pipeline("sky", 256, "first_stage/moso_sky256.yaml", "first_stage/moso_sky256_gan.yaml",
                           "ddpm/rsvp_s2_sky256.yaml", 8),
}


@dataclass
class Cost:
    """The work of one unit (a training step, a batch): FLOPs, kernel-launching operators, peak bytes."""

    flops: int = 0
    ops: int = 0
    peak_bytes: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.ops + other.ops, max(self.peak_bytes, other.peak_bytes))

    def times(self, n: int) -> "Cost":
        return Cost(self.flops * n, self.ops * n, self.peak_bytes)


# Operators that only compute metadata: they launch nothing on a GPU.
_METADATA_OPS = {"aten::_unsafe_view", "aten::lift_fresh"}


class OperatorCounter(TorchDispatchMode):
    """Counts the aten operators that launch work (not views, device/shape queries or other
    metadata operators); ``paused`` stops counting."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not (self.paused or func.is_view or func.namespace != "aten" or func.name() in _METADATA_OPS):
            self.ops += 1
        return func(*args, **(kwargs or {}))


class CostMeter:
    """Counts FLOPs, operators and peak live bytes of what runs inside ``with meter:``."""

    def __init__(self, *persistent: torch.Tensor) -> None:
        self.flops, self.operators, self.memory = flop_counter(), OperatorCounter(), LiveTensorMemory()
        self.persistent = persistent
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "CostMeter":
        for mode in (self.flops, self.operators, self.memory):
            self._stack.enter_context(mode)
        self.memory.add(*self.persistent)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Operators here are not counted (FLOPs and memory still are)."""
        self.operators.paused = True
        try:
            yield
        finally:
            self.operators.paused = False

    def cost(self) -> Cost:
        return Cost(int(self.flops.get_total_flops()), self.operators.ops, self.memory.peak)


def _config(exp: str, path: str, overrides: Sequence[str] = ()):
    """A config as main.py builds it (the experiment's schema, the YAML with its base files)."""
    return experiment_config(exp, path, overrides)


def _weights(*modules: torch.nn.Module) -> list[torch.Tensor]:
    return [t for m in modules for t in [*m.parameters(), *m.buffers()]]


def train_step_cost(exp: str, config: str, batch_size: int, overrides: Sequence[str] = (), tokens: bool = False,
                    first_stage_config: Optional[str] = None) -> Cost:
    """One training step of the real task (bf16 autocast). Its ``peak_bytes`` is what
    ``scripts/measure_memory.py`` reports for the same arguments; the optimizer update's
    operators are not counted (one fused kernel per parameter group on CUDA)."""
    with training_step(exp, config, batch_size, "bf16", overrides, tokens=tokens,
                       first_stage_config=first_stage_config) as step:
        meter = CostMeter(*step.state_tensors())
        for opt in step.optimizers.values():
            opt.step = _paused(meter, opt.step)
        with meter:
            step.run()
        return meter.cost()


def _paused(meter: CostMeter, fn):
    def wrapped(*args, **kwargs):
        with meter.paused():
            return fn(*args, **kwargs)
    return wrapped


def extract_cost(first_stage_config: str, cond_frames: int, batch_size: int, overrides: Sequence[str] = ()) -> Cost:
    """One batch of prediction pairs (observed pseudo-clip + future clip) encoded as ``--exp extract``
    does it: fp32, no autocast."""
    with training_step("first_stage", first_stage_config, 1, "bf16", overrides) as step:
        model = step.task.model.eval()
        frames, res = int(step.cfg.data.frames), int(step.cfg.data.resolution)
        video = torch.rand(batch_size, 3, cond_frames + frames, res, res) * 2 - 1
        with torch.no_grad(), CostMeter(*_weights(model), video) as meter:
            SemanticTokens(model, cond_frames).encode(video)
        return meter.cost()


def sample_cost(ddpm_config: str, first_stage_config: str, batch_size: int,
                overrides: Sequence[str] = (), first_stage_overrides: Sequence[str] = ()) -> tuple[Cost, Cost]:
    """(One predicted clip for a batch of videos as validate.py makes it: encode the observed
    frames, the sampler's denoiser calls, decode; validate.py's first-stage ceiling for the batch:
    encode observed and future, decode), fp32.

    The samplers (models/diffusion/samplers.run_sampler) make one guided denoiser call per
    timestep: one call is counted through the real GuidedDenoiser (two passes when the guidance
    is not 0 or 1) and multiplied. The networks are untrained and built inside the fake mode (a
    loaded checkpoint's buffers would hide values the quantizer's control flow reads); the work
    does not depend on the weights.
    """
    fs_cfg, cfg = _config("first_stage", first_stage_config, first_stage_overrides), _config("ddpm", ddpm_config, overrides)
    # The clip geometry the ddpm experiment takes from its first stage (its prepare_config).
    cfg.data.resolution = fs_cfg.data.resolution
    cfg.data.frames = int(cfg.model.cond_frames) + int(fs_cfg.data.frames)
    dcfg = cfg.model.diffusion
    calls = len(sampling_timesteps(int(dcfg.num_timesteps), int(dcfg.sample_steps), str(dcfg.timestep_spacing)))
    b = batch_size
    with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
        task = DDPMTask(cfg, SemanticLatentSpace(build_vqvae(fs_cfg), scale=1.0))
        net = task.net.eval()
        k, t, res = task.cond_frames, task.space.frames, int(cfg.data.resolution)
        observed = torch.rand(b, 3, k, res, res) * 2 - 1
        future = torch.rand(b, 3, t, res, res) * 2 - 1
        weights = _weights(task.space, net)
        with CostMeter(*weights, observed) as encode:
            cond = task.space.condition(observed)
        x = torch.randn(b, *cond["motion"].shape[1:])
        denoise = GuidedDenoiser(net, cond, float(dcfg.guidance), b, torch.device("cpu"))
        with CostMeter(*weights, observed, x, *cond.values()) as one_call:
            denoise(x, torch.full((b,), int(dcfg.num_timesteps) // 2, dtype=torch.int64))
        with CostMeter(*weights, observed, x, *cond.values()) as decode:
            task.space.decode(cond, x)
        with CostMeter(*weights, observed, future) as ceiling:
            task.space.decode(task.space.condition(observed), task.space.target(future, observed))
    sample = encode.cost() + one_call.cost().times(calls) + decode.cost()
    return sample, ceiling.cost()


@dataclass
class StageEstimate:
    stage: str
    config: str
    batch_size: int
    unit: str  # what one cost is for: a training step, a batch
    units: int
    flops_per_unit: int
    ops_per_unit: int
    peak_gib: float
    compute_hours: float  # FLOPs / assumed throughput
    launch_hours: float  # operators x assumed cost per operator
    memory_command: Optional[str] = None

    @property
    def hours(self) -> float:
        return max(self.compute_hours, self.launch_hours)


@dataclass(frozen=True)
class Assumptions:
    tflops: float = 125.0  # achieved bf16 TFLOP/s, training (40 % of an A100's 312)
    tflops_fp32: float = 62.0  # achieved TF32 TFLOP/s, extraction and sampling (40 % of 156)
    us_per_op: float = 6.0  # CPU cost of one eager operator (launch bound)


def _stage(stage: str, config: str, batch: int, unit: str, units: int, cost: Cost, tflops: float,
           a: Assumptions, memory_command: Optional[str] = None) -> StageEstimate:
    return StageEstimate(stage, config, batch, unit, units, cost.flops, cost.ops, round(cost.peak_bytes / 2**30, 3),
                         cost.flops * units / (tflops * 1e12) / 3600, cost.ops * units * a.us_per_op * 1e-6 / 3600,
                         memory_command)


def estimate(dataset: str, res: int, a: Assumptions = Assumptions(), clips_per_video: int = 8,
             num_videos: int = 256, num_samples: int = 4) -> list[StageEstimate]:
    """Every stage of one pipeline, with the configs and defaults the pipeline script uses."""
    if (dataset, res) not in PIPELINES:
        raise ConfigError(f"no pipeline for {dataset} at {res}x{res}; known: {sorted(PIPELINES)}")
    p = PIPELINES[(dataset, res)]
    fs, gan, ddpm = (str(CONFIGS / c) for c in (p.first_stage, p.gan, p.ddpm))
    out = []
    for exp, path in (("first_stage", fs), ("gan", gan)):
        cfg = _config(exp, path)
        b = int(cfg.train.batch_size)
        out.append(_stage(exp, path, b, "step", int(cfg.train.max_steps), train_step_cost(exp, path, b), a.tflops, a,
                          f"python scripts/measure_memory.py --exp {exp} --config {path} --batch_size {b}"))
    dcfg = _config("ddpm", ddpm)
    k = int(dcfg.model.cond_frames)
    train_videos, test_videos = DATASET_VIDEOS[dataset]
    clips = train_videos * clips_per_video + test_videos
    out.append(_stage(f"extract ({clips:,} clips)", f"model.cond_frames={k}", p.extract_batch, "batch",
                      math.ceil(clips / p.extract_batch), extract_cost(fs, k, p.extract_batch), a.tflops_fp32, a))
    b = int(dcfg.train.batch_size)
    out.append(_stage("ddpm (train.py)", ddpm, b, "step", int(dcfg.train.max_steps),
                      train_step_cost("ddpm", ddpm, b, tokens=True, first_stage_config=fs), a.tflops, a,
                      f"python scripts/measure_memory.py --exp ddpm --config {ddpm} --batch_size {b} "
                      f"--tokens --first_stage_config {fs}"))
    sample, ceiling = sample_cost(ddpm, fs, VALIDATE_BATCH)
    diff = dcfg.model.diffusion
    out.append(_stage(f"validate ({num_videos} videos x {num_samples} samples, {diff.sampler} {diff.sample_steps} steps)",
                      ddpm, VALIDATE_BATCH, "batch", math.ceil(num_videos / VALIDATE_BATCH),
                      sample.times(num_samples) + ceiling, a.tflops_fp32, a))
    return out


def format_hours(hours: float) -> str:
    if hours >= 48:
        return f"{hours / 24:.1f} d"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 60:.0f} min" if hours * 60 >= 1 else "< 1 min"


def markdown(rows: list[StageEstimate]) -> str:
    lines = ["| stage | batch | per unit: GFLOP / operators | units | compute bound | launch bound | "
             "**estimate** | peak memory |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.stage} | {r.batch_size} | {r.flops_per_unit / 1e9:,.0f} / {r.ops_per_unit:,} per {r.unit} "
                     f"| {r.units:,} | {format_hours(r.compute_hours)} | {format_hours(r.launch_hours)} | "
                     f"**{format_hours(r.hours)}** | {r.peak_gib:.1f} GiB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted({d for d, _ in PIPELINES}))
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--tflops", type=float, default=Assumptions.tflops, help="assumed achieved bf16 TFLOP/s (training)")
    parser.add_argument("--tflops_fp32", type=float, default=Assumptions.tflops_fp32,
                        help="assumed achieved TFLOP/s in fp32/TF32 (extract, validate)")
    parser.add_argument("--us_per_op", type=float, default=Assumptions.us_per_op,
                        help="assumed CPU microseconds per eager operator (launch bound)")
    parser.add_argument("--clips_per_video", type=int, default=8, help="as CLIPS_PER_VIDEO of the pipeline scripts")
    parser.add_argument("--num_videos", type=int, default=256, help="as NUM_VIDEOS of the pipeline scripts")
    parser.add_argument("--num_samples", type=int, default=4, help="as NUM_SAMPLES of the pipeline scripts")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--out", help="also write the estimates as JSON")
    args = parser.parse_args(argv)
    assumptions = Assumptions(args.tflops, args.tflops_fp32, args.us_per_op)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stage code may print; stdout is for the result
            rows = estimate(args.dataset, args.res, assumptions, args.clips_per_video, args.num_videos,
                            args.num_samples)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.markdown:
        print(markdown(rows))
    else:
        for r in rows:
            print(f"{r.stage}: {r.flops_per_unit / 1e9:,.1f} GFLOP and {r.ops_per_unit:,} operators per {r.unit} "
                  f"x {r.units:,} -> ESTIMATE {format_hours(r.hours)} (compute {format_hours(r.compute_hours)}, "
                  f"launch {format_hours(r.launch_hours)}), peak {r.peak_gib:.2f} GiB")
    if args.out:
        Path(args.out).write_text(json.dumps({"assumptions": asdict(assumptions),
                                              "stages": [{**asdict(r), "hours": r.hours} for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
