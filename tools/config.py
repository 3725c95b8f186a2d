"""Typed configuration: dataclass schemas, YAML files and ``key=value`` overrides.

The dataclasses below are the schema. A YAML file under ``configs/`` (which may start from
another with ``base: other.yaml``, relative to itself) and the command line may
only set keys that exist in the schema, with values of the right type. Anything else raises
:class:`ConfigError`, whose message names the offending key and the closest valid keys;
the CLIs turn it into exit status 2.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration problem the user can fix; CLIs print it and exit with status 2."""


@dataclass
class ShapesConfig:
    """The built-in procedural dataset (``--data shapes``)."""

    num_train: int = 10000
    num_test: int = 256
    min_sprites: int = 1
    max_sprites: int = 3
    # Sprite side length as a fraction of the frame side.
    min_size: float = 0.2
    max_size: float = 0.35
    # Speed in frame sides per frame.
    min_speed: float = 0.01
    max_speed: float = 0.04


@dataclass
class DataConfig:
    name: str = "shapes"  # shapes | ucf101 | sky | videofolder | mmnist
    path: Optional[str] = None  # dataset root (not needed for shapes)
    resolution: int = 64  # clips are centre-cropped to square, then resized to this
    frames: int = 16  # frames per clip (T)
    frame_stride: int = 1  # take every k-th frame of the source video
    fold: int = 1  # UCF-101 official split fold (1, 2 or 3)
    test_fraction: float = 0.1  # held-out share when a dataset has no split of its own
    num_workers: int = 2  # DataLoader workers
    cache_dir: Optional[str] = None  # where video indexes are cached; default: ~/.cache/rsvp
    shapes: ShapesConfig = field(default_factory=ShapesConfig)


@dataclass
class OptimConfig:
    name: str = "adamw"  # adam | adamw
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"  # constant | cosine (decays to lr * min_lr_ratio at max_steps)
    min_lr_ratio: float = 0.1
    fused: bool = True  # fused AdamW kernel (CUDA and CPU); false = PyTorch's per-tensor loop


@dataclass
class TrainConfig:
    batch_size: int = 8  # per process
    max_steps: int = 10000
    log_every: int = 50
    ckpt_every: int = 1000
    sample_every: int = 1000
    keep_last: int = 3  # model_{step}.pth files kept besides model_last.pth
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.999  # 0 disables EMA
    optim: OptimConfig = field(default_factory=OptimConfig)
    find_unused_parameters: bool = False  # DDP option for models with conditional branches
    compile: bool = False  # torch.compile the trained nets (first steps slower; see docs/BENCHMARKS.md)
    channels_last: bool = False  # channels-last weights (3D convs: channels_last_3d); docs/BENCHMARKS.md


@dataclass
class RunConfig:
    exp: str = "first_stage"
    id: str = "main"
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    results_dir: str = "results"
    first_stage_folder: Optional[str] = None
    first_model: Optional[str] = None
    out: Optional[str] = None  # output folder of experiments that write one (e.g. extract)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Each experiment supplies the schema of its own ``model`` section.
    model: Any = None


def flat_keys(node: Any, prefix: str = "") -> list[str]:
    """All dotted keys of a config (leaves and sections)."""
    keys: list[str] = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            dotted = f"{prefix}{key}"
            keys.append(dotted)
            keys.extend(flat_keys(node._get_node(key), dotted + "."))
    return keys


def closest_keys(key: str, valid: Iterable[str], n: int = 3) -> list[str]:
    """Valid keys that look like ``key``: by the whole dotted path, then by the last part."""
    valid = list(valid)
    found = difflib.get_close_matches(key, valid, n=n, cutoff=0.6)
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = {v.rsplit(".", 1)[-1]: v for v in valid}
    for match in difflib.get_close_matches(leaf, list(by_leaf), n=n, cutoff=0.6):
        if by_leaf[match] not in found:
            found.append(by_leaf[match])
    return found[:n]


def _unknown_key_message(key: str, schema: DictConfig, source: str) -> str:
    suggestions = closest_keys(key, flat_keys(schema))
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    return f"Unknown config key '{key}' (from {source}).{hint}"


def _check_keys(user: Any, schema: DictConfig, source: str) -> None:
    """Fail on the first key of ``user`` that the schema does not have, naming it."""
    valid = set(flat_keys(schema))

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, DictConfig):
            return
        for key in node.keys():
            dotted = f"{prefix}{key}"
            if dotted not in valid:
                raise ConfigError(_unknown_key_message(dotted, schema, source))
            schema_node = OmegaConf.select(schema, dotted)
            if isinstance(schema_node, DictConfig):
                walk(node._get_node(key), dotted + ".")

    walk(user, "")


def _merge(schema: DictConfig, user: DictConfig, source: str) -> DictConfig:
    _check_keys(user, schema, source)
    try:
        return OmegaConf.merge(schema, user)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        expected = ""
        try:
            current = OmegaConf.select(schema, key)
            if current is not None and not isinstance(current, (DictConfig, ListConfig)):
                expected = f" (expected {type(current).__name__}, default {current!r})"
        except OmegaConfBaseException:
            pass
        first_line = str(err).splitlines()[0]
        raise ConfigError(f"Bad value for config key '{key}' (from {source}){expected}: {first_line}") from None


def parse_overrides(overrides: Iterable[str]) -> DictConfig:
    """``["train.lr=1e-4", ...]`` -> DictConfig; a malformed item is a ConfigError."""
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"Override '{item}' is not of the form key=value (e.g. train.max_steps=500).")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as err:
        raise ConfigError(f"Could not parse overrides {overrides}: {err}") from None


def build_config(
    schema: Any,
    config_path: Optional[str | Path] = None,
    overrides: Iterable[str] = (),
) -> DictConfig:
    """Schema defaults <- YAML file <- ``key=value`` overrides, each validated against the schema.

    ``schema`` is a dataclass instance (usually :class:`RunConfig` with the experiment's model
    schema filled in) or an already structured DictConfig.
    """
    cfg = schema if isinstance(schema, DictConfig) else OmegaConf.structured(schema)
    if config_path is not None:
        cfg = _merge_file(cfg, Path(config_path), seen=())
    cfg = _merge(cfg, parse_overrides(overrides), "command line")
    return cfg


def _merge_file(cfg: DictConfig, path: Path, seen: tuple[Path, ...]) -> DictConfig:
    """Merge a YAML file; its optional ``base:`` (a path relative to the file) is merged first."""
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"Config files include each other in a loop: {' -> '.join(map(str, seen + (path,)))}")
    try:
        from_file = OmegaConf.load(path)
    except Exception as err:  # YAML syntax errors come in several exception types
        raise ConfigError(f"Could not read config file {path}: {err}") from None
    if not isinstance(from_file, DictConfig):
        raise ConfigError(f"Config file {path} must hold a mapping of keys, not {type(from_file).__name__}.")
    base = from_file.pop("base", None)
    if base is not None:
        cfg = _merge_file(cfg, path.parent / str(base), seen + (path.resolve(),))
    return _merge(cfg, from_file, str(path))


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the fully resolved config as YAML (atomically)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(path)


def config_diff(old: DictConfig, new: DictConfig) -> dict[str, tuple[Any, Any]]:
    """Leaf values that differ between two configs: ``{dotted_key: (old, new)}``."""
    old_c = OmegaConf.to_container(old, resolve=True)
    new_c = OmegaConf.to_container(new, resolve=True)

    def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for k, v in node.items():
                out.update(leaves(v, f"{prefix}{k}."))
            return out
        return {prefix.rstrip("."): node}

    a, b = leaves(old_c), leaves(new_c)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
