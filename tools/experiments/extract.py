"""``--exp extract``: encode a dataset with a trained first stage into token folders (tools/tokens.py).

What is stored (the arrays, their shapes, the codebook) is the first stage's own token format
(``FirstStageEntry.tokens`` in the registry; RSVP: models/latent_space.SemanticTokens).

    python main.py --exp extract --first_model results/gan_main_shapes_42/model_last.pth --data shapes --out data/tokens_shapes

Writes the train and test splits in shards of ``model.shard_size`` clips. Re-running the same
command skips the shards already finished; a folder made from another checkpoint or other data
is refused. Clips are taken deterministically (training clips start where the dataset's
per-clip RNG says, ``model.clips_per_video`` clips per video).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from evaluation.weights import sha256_file
from tools.config import ConfigError
from tools.datasets import build_dataset
from tools.distributed import resolve_device
from tools.loader import init_worker
from tools.pretrained import find_first_stage, load_first_stage
from tools.registry import Experiment
from tools.tokens import META_NAME, index_dtype, shard_done_path, shard_file


@dataclass
class ExtractConfig:
    splits: list[str] = field(default_factory=lambda: ["train", "test"])
    shard_size: int = 1024  # clips per shard file
    clips_per_video: int = 1  # training clips per video (test: always 1, the fixed-start clip)
    # 0: tokens of plain T-frame clips. K > 0: prediction pairs for the second stage from clips of
    # K + T frames: the tokens of the K observed frames (the condition) and of the next T (the target).
    cond_frames: int = 0


class KeyedClips(Dataset):
    """``dataset[keys[i]]``: a fixed list of (index, draw) keys into a clip dataset."""

    def __init__(self, dataset: Dataset, keys: np.ndarray) -> None:
        self.dataset, self.keys = dataset, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict:
        index, draw = (int(v) for v in self.keys[i])
        item = self.dataset[(index, draw)]
        return {"video": item["video"]}


def clip_keys(num_videos: int, clips_per_video: int) -> np.ndarray:
    """Clip ``j`` of video ``i`` gets draw ``j * num_videos + i``: distinct, stable random starts."""
    j, i = np.meshgrid(np.arange(clips_per_video), np.arange(num_videos), indexing="ij")
    return np.stack([i.ravel(), (j * num_videos + i).ravel()], axis=1).astype(np.int64)


def _identity(cfg: DictConfig, ckpt: Path, digest: str) -> dict:
    """What must match for a re-run to continue an existing folder."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.pop("num_workers", None)
    return {"checkpoint_sha256": digest, "data": data, "clips_per_video": int(cfg.model.clips_per_video),
            "shard_size": int(cfg.model.shard_size)}


def _save_atomic(path: Path, array: np.ndarray) -> None:
    # The PID keeps two extract runs into one --out from writing the same temporary file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _check_or_write_meta(out: Path, meta: dict) -> None:
    path = out / META_NAME
    if path.is_file():
        old = json.loads(path.read_text())
        mismatched = [k for k in meta["identity"] if old.get("identity", {}).get(k) != meta["identity"][k]]
        if mismatched:
            raise ConfigError(f"{out} holds tokens from a different extraction (differs in: {', '.join(mismatched)}; "
                              f"it was made from {old.get('checkpoint')}). Use a new --out folder, or delete it.")
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path)


@torch.no_grad()
def extract(cfg: DictConfig) -> Path:
    ckpt = find_first_stage(cfg)
    if not cfg.out:
        raise ConfigError("--exp extract needs --out DIR (where the token folder goes)")
    out = Path(cfg.out)
    trained = load_first_stage(ckpt)
    device = resolve_device(cfg.device)
    model = trained.model.to(device)
    # The model was built for one clip geometry: clips are cut to it, whatever the data defaults say.
    cond_frames = int(cfg.model.cond_frames)
    cfg.data.frames = model.frames + cond_frames
    cfg.data.resolution = model.resolution
    tokens = trained.tokens(cond_frames)
    arrays = list(tokens.shapes)
    codebook = tokens.codebook()
    dtype = index_dtype(tokens.codebook_size)
    meta = {
        "identity": _identity(cfg, ckpt, sha256_file(ckpt)),
        "checkpoint": str(ckpt), "checkpoint_step": int(trained.state["step"]),
        **tokens.meta(), "dtype": dtype.name,
        "frames": model.frames, "cond_frames": cond_frames, "arrays": arrays,
        "resolution": int(cfg.data.resolution), "splits": {},
    }
    splits = {}
    for split in cfg.model.splits:
        dataset = build_dataset(cfg.data, split, cfg.seed)
        per_video = int(cfg.model.clips_per_video) if split == "train" else 1
        keys = clip_keys(len(dataset), per_video) if split == "train" else np.stack(
            [np.arange(len(dataset)), np.arange(len(dataset))], axis=1).astype(np.int64)
        num_shards = -(-len(keys) // int(cfg.model.shard_size))
        meta["splits"][split] = {"num_clips": int(len(keys)), "num_shards": num_shards}
        splits[split] = (dataset, keys, num_shards)
    _check_or_write_meta(out, meta)
    np.save(out / "codebook.npy", codebook.float().cpu().numpy())

    for split, (dataset, keys, num_shards) in splits.items():
        split_dir = out / split
        split_dir.mkdir(parents=True, exist_ok=True)
        todo = [s for s in range(num_shards) if not shard_done_path(split_dir, s).is_file()]
        if not todo:
            print(f"[extract] {split}: all {num_shards} shards already done")
            continue
        shard_size = int(cfg.model.shard_size)
        total = sum(len(keys[s * shard_size:(s + 1) * shard_size]) for s in todo)
        bar = tqdm(total=total, desc=f"extract {split} ({len(todo)} shards)", unit="clip", dynamic_ncols=True)
        for shard in todo:
            shard_keys = keys[shard * shard_size:(shard + 1) * shard_size]
            loader = DataLoader(KeyedClips(dataset, shard_keys), batch_size=int(cfg.train.batch_size),
                                num_workers=int(cfg.data.num_workers), worker_init_fn=init_worker,
                                pin_memory=device.type == "cuda")
            grids = {k: [] for k in arrays}
            for batch in loader:
                indices = tokens.encode(batch["video"].to(device, non_blocking=True))
                for k in arrays:
                    grids[k].append(indices[k].cpu().numpy().astype(dtype))
                bar.update(len(batch["video"]))
            for k in arrays:
                _save_atomic(shard_file(split_dir, k, shard), np.concatenate(grids[k]))
            _save_atomic(shard_file(split_dir, "keys", shard), shard_keys)
            shard_done_path(split_dir, shard).write_text("ok\n")
        bar.close()
    skipped = {s: len(getattr(d, "skipped", [])) for s, (d, _, _) in splits.items()}
    counts = ", ".join(f"{s}: {m['num_clips']} clips" for s, m in meta["splits"].items())
    print(f"[extract] tokens in {out} ({counts}; videos skipped as unreadable: {skipped})")
    return out


def _run(cfg: DictConfig, run_dir: Path, resume: bool) -> int:
    extract(cfg)
    return 0


EXTRACT = Experiment(
    name="extract", model_schema=ExtractConfig, run=_run, uses_run_dir=False,
    description="encode a dataset into the first stage's token folders (--first_model, --out)",
)
