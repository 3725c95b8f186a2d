"""Typed configuration: dataclass schemas, YAML files and ``key=value`` overrides.

The dataclasses below are the schema. A YAML file under ``configs/`` (which may start from
another with ``base: other.yaml``, relative to itself) and the command line may
only set keys that exist in the schema, with values of the right type. Anything else raises
:class:`ConfigError`, whose message names the offending key and the closest valid keys;
the CLIs turn it into exit status 2.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from models.errors import ConfigError  # noqa: F401  (re-exported: tools and the CLIs import it from here)


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
    batch_size: int = 8  # per process and micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch: batch_size x grad_accum per process)
    max_steps: int = 10000
    log_every: int = 50
    ckpt_every: int = 1000
    sample_every: int = 1000
    keep_last: int = 3  # model_{step}.pth files kept besides model_last.pth
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.999  # 0 disables EMA
    ema_warmup: bool = True  # decay min(ema_decay, (1 + n) / (10 + n)) at update n: early weights fade out
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


def _read_file(path: Path, seen: tuple[Path, ...]) -> tuple[DictConfig, Optional[Path]]:
    """A YAML config file's keys and the path of its ``base:`` file (None without one)."""
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
    return from_file, None if base is None else path.parent / str(base)


def _merge_file(cfg: DictConfig, path: Path, seen: tuple[Path, ...]) -> DictConfig:
    """Merge a YAML file; its optional ``base:`` (a path relative to the file) is merged first."""
    from_file, base = _read_file(path, seen)
    if base is not None:
        cfg = _merge_file(cfg, base, seen + (path.resolve(),))
    return _merge(cfg, from_file, str(path))


def raw_config(config_path: Optional[str | Path] = None, overrides: Iterable[str] = ()) -> DictConfig:
    """The YAML files and overrides merged *without* a schema (nothing checked): for reading a key
    that chooses the schema itself, such as ``model.net``. :func:`build_config` reports errors."""

    def read(path: Path, seen: tuple[Path, ...]) -> DictConfig:
        from_file, base = _read_file(path, seen)
        return from_file if base is None else OmegaConf.merge(read(base, seen + (path.resolve(),)), from_file)

    try:
        cfg = read(Path(config_path), ()) if config_path is not None else OmegaConf.create()
        return OmegaConf.merge(cfg, parse_overrides(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"Could not merge the config files and overrides: {str(err).splitlines()[0]}") from None


# Value ranges the schema's types cannot express: (key, test, what is required).
_VALUE_CHECKS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("train.batch_size", lambda v: v >= 1, "at least 1"),
    ("train.grad_accum", lambda v: v >= 1, "at least 1"),
    ("train.max_steps", lambda v: v >= 0, "0 or more"),
    ("train.log_every", lambda v: v >= 1, "at least 1"),
    ("train.ckpt_every", lambda v: v >= 0, "0 (only at the end) or more"),
    ("train.sample_every", lambda v: v >= 0, "0 (never) or more"),
    ("train.keep_last", lambda v: v >= 0, "0 or more"),
    ("train.grad_clip", lambda v: v >= 0, "0 (off) or more"),
    ("train.ema_decay", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.precision", lambda v: v in ("auto", "fp32", "bf16", "fp16"), "auto, fp32, bf16 or fp16"),
    ("train.optim.name", lambda v: str(v).lower() in ("adam", "adamw"), "adam or adamw"),
    ("train.optim.lr", lambda v: v > 0, "positive"),
    ("train.optim.warmup_steps", lambda v: v >= 0, "0 or more"),
    ("train.optim.schedule", lambda v: v in ("constant", "cosine"), "constant or cosine"),
    ("data.frames", lambda v: v >= 1, "at least 1"),
    ("data.resolution", lambda v: v >= 1, "at least 1"),
    ("data.frame_stride", lambda v: v >= 1, "at least 1"),
    ("data.num_workers", lambda v: v >= 0, "0 or more"),
)


def check_values(cfg: DictConfig) -> None:
    """Raise ConfigError on the first out-of-range value, before any folder or model is made."""
    for key, ok, required in _VALUE_CHECKS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not ok(value):
            raise ConfigError(f"{key} must be {required}, got {value!r}")


def check_device(device: Optional[str]) -> None:
    """Raise ConfigError when ``device`` (auto | cpu | cuda | cuda:N) cannot be used on this machine."""
    if device is None:
        return
    from tools.distributed import resolve_device  # imports torch: only when a device is checked

    try:
        resolve_device(str(device))
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"--device {device}: {err}") from None


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the fully resolved config as YAML (atomically)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(path)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{dotted_key: value}`` of every leaf of a plain (container) config."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): node}


def config_diff(old: DictConfig, new: DictConfig) -> dict[str, tuple[Any, Any]]:
    """Leaf values that differ between two configs: ``{dotted_key: (old, new)}``."""
    a = _leaves(OmegaConf.to_container(old, resolve=True))
    b = _leaves(OmegaConf.to_container(new, resolve=True))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


# Keys a resumed run may change (fnmatch patterns; docs/USAGE.md). They take effect: the Trainer
# rebuilds optimizers and LR schedules from the config and keeps only their moments and step counts
# from the checkpoint. Every other key (architecture, data geometry, losses, seed) is fixed by it.
RESUMABLE_KEYS = (
    "train.max_steps", "train.log_every", "train.ckpt_every", "train.sample_every", "train.keep_last",
    "train.batch_size", "train.grad_accum", "train.precision", "train.grad_clip", "train.ema_decay", "*.optim.*",
    "train.compile", "train.channels_last", "train.find_unused_parameters", "model.vqvae.chunk_frames",
    "data.path", "data.num_workers", "data.cache_dir", "device", "results_dir", "out", "model.eval_clips",
)


def resume_changes(saved: DictConfig, new: DictConfig, source: str = "the checkpoint") -> dict[str, tuple[Any, Any]]:
    """The keys that ``new`` changes against the ``saved`` config of a run being resumed.

    Raises ConfigError naming every changed key outside :data:`RESUMABLE_KEYS` (a different
    architecture cannot load the saved weights). Keys the saved config lacks (added to the schema
    since) are not changes.
    """
    old = _leaves(OmegaConf.to_container(saved, resolve=True))
    cur = _leaves(OmegaConf.to_container(new, resolve=True))
    changed = {k: (old[k], cur.get(k)) for k in sorted(old) if k in cur and old[k] != cur[k]}
    fixed = {k: v for k, v in changed.items() if not any(fnmatch.fnmatchcase(k, p) for p in RESUMABLE_KEYS)}
    if fixed:
        listed = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in fixed.items())
        raise ConfigError(f"--resume cannot change {listed}: fixed by {source}. Resume with the run's own values, "
                          "or start a new run (--id NEW); keys that may change on resume: docs/USAGE.md")
    return changed


def field_docs(schema: type) -> dict[str, str]:
    """One-line docs of a dataclass's fields: the comment on each field's line, or the comment lines above it."""
    try:
        lines = inspect.getsource(schema).splitlines()[1:]
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("#").strip())
            continue
        match = re.match(r"^\s+(\w+)\s*:[^#]*(?:#\s*(.*))?$", line)
        if match and not text.startswith(("def ", "@", "return ")):
            docs[match.group(1)] = match.group(2) or " ".join(above)
        above = []
    return docs


def _type_name(node: Any) -> str:
    ref = getattr(node._metadata, "ref_type", Any)
    name = getattr(ref, "__name__", None) if not getattr(ref, "__args__", None) else None
    return name or str(ref).replace("typing.", "")


def describe_config(cfg: DictConfig, defaults: DictConfig) -> str:
    """Every leaf of ``cfg`` as ``key: value  # type, default: D; doc`` (the schemas' field comments)."""
    lines: list[str] = []

    def walk(node: DictConfig, default: Any, prefix: str) -> None:
        schema = OmegaConf.get_type(node)
        docs = field_docs(schema) if schema not in (None, dict) else {}
        for key in node.keys():
            child = node._get_node(key)
            dotted = f"{prefix}{key}"
            child_default = OmegaConf.select(default, str(key), default=None) if isinstance(default, DictConfig) else None
            if isinstance(child, DictConfig) and not child._is_none():
                walk(child, child_default, dotted + ".")
                continue
            value = OmegaConf.to_container(child, resolve=True) if isinstance(child, ListConfig) else child._value()
            if isinstance(child_default, ListConfig):
                child_default = OmegaConf.to_container(child_default)
            doc = docs.get(str(key), "")
            lines.append(f"{dotted}: {value!r}  # {_type_name(child)}, default {child_default!r}" + (f"; {doc}" if doc else ""))

    walk(cfg, defaults, "")
    return "\n".join(lines)
