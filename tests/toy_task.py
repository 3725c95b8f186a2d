"""A tiny test-only training task for the shared Trainer (tests only; not an experiment).

``ToyVideos``: an in-memory dataset following the dataset key protocol (``dataset[i]`` or
``dataset[(i, draw)]`` -> ``{"video": [C, T, H, W], "index": i}``; the draw seeds a random
temporal flip, as real datasets seed their random clip start).
``ToyTask``: a two-layer conv autoencoder (dropout + input noise, so resume must restore the RNG)
with an optional patch discriminator trained by a second optimizer (a GAN-shaped step).

Run as a script it trains in ``run_dir`` (used by the SIGTERM test)::

    python tests/toy_task.py RUN_DIR [max_steps] [step_sleep_s] [resume]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

if __name__ == "__main__":  # script mode: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from losses.reconstruction import reconstruction_loss  # noqa: E402
from tools.config import RunConfig, build_config  # noqa: E402
from tools.seeding import sample_rng  # noqa: E402
from tools.trainer import TrainTask, build_optimizer  # noqa: E402


class SimulatedCrash(RuntimeError):
    """Raised from inside training to imitate a killed process."""


class ToyVideos(Dataset):
    def __init__(self, n: int = 16, channels: int = 3, frames: int = 4, size: int = 8, seed: int = 0) -> None:
        self.n, self.shape, self.seed = n, (channels, frames, size, size), seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, draw = key if isinstance(key, tuple) else (key, None)
        rng = sample_rng(self.seed, index)
        base = rng.uniform(-1, 1, size=self.shape[:1] + (1,) + self.shape[2:])
        ramp = torch.linspace(-0.5, 0.5, self.shape[1]).view(1, -1, 1, 1)
        video = (torch.from_numpy(base).float() + ramp * float(rng.uniform(-1, 1))).clamp(-1, 1)
        if draw is not None and sample_rng(self.seed, 1, draw).random() < 0.5:
            video = video.flip(1)
        return {"video": video, "index": index}


class ToyAutoencoder(nn.Module):
    def __init__(self, channels: int = 3, hidden: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.encode = nn.Conv3d(channels, hidden, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.decode = nn.Conv3d(hidden, channels, 3, padding=1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decode(self.dropout(F.gelu(self.encode(video)))))


class ToyDiscriminator(nn.Module):
    def __init__(self, channels: int = 3, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(channels, hidden, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                                 nn.Conv3d(hidden, 1, 3, padding=1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)


class ToyTask(TrainTask):
    def __init__(self, *, gan: bool = False, disc_start: int = 2, ema: bool = True, dropout: float = 0.1,
                 noise: float = 0.05, crash_at: Optional[int] = None, nan_at: Optional[int] = None,
                 step_sleep: float = 0.0) -> None:
        self.model = ToyAutoencoder(dropout=dropout)
        self.disc = ToyDiscriminator() if gan else None
        self.ema_nets = ("model",) if ema else ()
        self.disc_start, self.noise = disc_start, noise
        self.crash_at, self.nan_at, self.step_sleep = crash_at, nan_at, step_sleep
        self.steps_seen = 0  # extra task state, checkpointed through state_dict()

    def networks(self) -> dict[str, nn.Module]:
        nets = {"model": self.model}
        if self.disc is not None:
            nets["disc"] = self.disc
        return nets

    def configure_optimizers(self, nets, cfg):
        opts = {"model": build_optimizer(nets["model"].parameters(), cfg.train.optim, cfg.train.max_steps)}
        if "disc" in nets:
            opts["disc"] = build_optimizer(nets["disc"].parameters(), cfg.train.optim, cfg.train.max_steps)
        return opts

    def training_step(self, batch, step, ctx):
        if self.crash_at is not None and step == self.crash_at:
            raise SimulatedCrash(f"simulated crash at step {step}")
        if self.step_sleep:
            time.sleep(self.step_sleep)
        video = batch["video"]
        noisy = video + self.noise * torch.randn_like(video)
        with ctx.autocast():
            out = ctx.nets["model"](noisy)
        rec = reconstruction_loss(out, video, "l1")
        if self.nan_at is not None and step >= self.nan_at:
            rec = rec * float("nan")
        logs = {"loss/rec": rec}
        loss = rec
        if self.disc is not None and step >= self.disc_start:
            with ctx.autocast():
                real, fake = ctx.nets["disc"](video), ctx.nets["disc"](out.detach())
            d_loss = 0.5 * (F.relu(1 - real.float()).mean() + F.relu(1 + fake.float()).mean())
            ctx.step(d_loss, "disc")
            with ctx.autocast():
                g_loss = -ctx.nets["disc"](out).float().mean()
            loss = rec + 0.1 * g_loss
            logs.update({"loss/disc": d_loss, "loss/gen": g_loss})
        ctx.step(loss, "model")
        self.steps_seen += 1
        logs["loss"] = loss
        return logs

    def sample(self, batch, step, ctx):
        video = batch["video"]
        return {"input": video, "recon": ctx.eval_net("model")(video).clamp(-1, 1)}

    def state_dict(self) -> dict[str, Any]:
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_seen = int(state["steps_seen"])


def toy_config(*overrides: str):
    """A RunConfig for the toy task: tiny batches, few steps, CPU-friendly."""
    base = ["train.batch_size=4", "train.max_steps=8", "train.log_every=1", "train.ckpt_every=4",
            "train.sample_every=0", "train.keep_last=2", "train.ema_decay=0.9", "train.grad_clip=1.0",
            "train.optim.lr=0.01", "train.optim.warmup_steps=2", "train.optim.schedule=cosine",
            "data.num_workers=0", "seed=3", "exp=toy", "device=cpu"]
    return build_config(RunConfig(), overrides=base + list(overrides))


def main(argv: list[str]) -> int:
    from tools.seeding import seed_everything
    from tools.trainer import Trainer, TrainingInterrupted

    run_dir = argv[0]
    max_steps = int(argv[1]) if len(argv) > 1 else 1000
    sleep = float(argv[2]) if len(argv) > 2 else 0.05
    workers = int(argv[3]) if len(argv) > 3 else 0
    resume = len(argv) > 4 and argv[4] == "resume"
    cfg = toy_config(f"train.max_steps={max_steps}", "train.ckpt_every=100000", f"data.num_workers={workers}")
    seed_everything(cfg.seed)
    trainer = Trainer(ToyTask(step_sleep=sleep), cfg, run_dir, "cpu", resume=resume, progress=False, console=False)
    try:
        trainer.fit(ToyVideos())
    except TrainingInterrupted as err:
        print(err, flush=True)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
