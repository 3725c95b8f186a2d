"""Sharing trained weights: the EMA weights of a run as one ``.safetensors`` file, and its checked loader.

``python main.py --exp EXP --id ID ... --export PATH`` writes the weights of the run's newest intact
checkpoint: for each network its EMA weights (the raw ones for networks without EMA), as
``{net}.{parameter}`` tensors, with metadata naming the format, the experiment, the step and the
run's resolved config. Unlike a training checkpoint it holds no optimizer state and loading it
runs no unpickler: a safetensors file is a header and raw tensor bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from tools.checkpoint import CheckpointError, checkpoint_exp

EXPORT_FORMAT = "rsvp-weights-v1"


def export_weights(state: dict[str, Any], path: str | Path) -> Path:
    """Write the EMA (else raw) weights of every network of training checkpoint ``state`` to ``path``."""
    from safetensors.torch import save_file

    tensors, kinds = {}, []
    for name, raw in state["nets"].items():
        weights = state.get("ema", {}).get(name, raw)
        kinds.append(f"{name}:{'ema' if name in state.get('ema', {}) else 'raw'}")
        for key, tensor in weights.items():
            tensors[f"{name}.{key}"] = tensor.detach().cpu().clone().contiguous()
    metadata = {"format": EXPORT_FORMAT, "exp": str(checkpoint_exp(state)), "step": str(int(state["step"])),
                "nets": ",".join(kinds), "config": state.get("config", "")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_exported(path: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], DictConfig, dict[str, str]]:
    """``(state dicts by network, run config, metadata)`` of an exported file, checked.

    A file that is not a safetensors file, lacks the format's metadata, misses a listed network or
    holds non-finite values is a CheckpointError saying which.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"exported weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors raises its own error types for damaged headers and sizes
        raise CheckpointError(f"{path} is not a readable safetensors file ({str(err).splitlines()[0]})") from None
    if metadata.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path} is not an RSVP weights export (expected format '{EXPORT_FORMAT}')")
    nets: dict[str, dict[str, torch.Tensor]] = {name.split(":")[0]: {} for name in metadata["nets"].split(",")}
    for key, tensor in tensors.items():
        net, _, param = key.partition(".")
        if net not in nets:
            raise CheckpointError(f"{path} holds tensor {key} of a network its metadata does not list")
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise CheckpointError(f"{path}: tensor {key} holds NaN or inf values")
        nets[net][param] = tensor
    empty = [name for name, weights in nets.items() if not weights]
    if empty:
        raise CheckpointError(f"{path} lists network(s) {', '.join(empty)} but holds no weights for them")
    return nets, OmegaConf.create(metadata.get("config", "")), metadata
