"""Classifier-free guidance around a denoiser ``model_fn(x_t, t, cond, cond_mask) -> Tensor``.

``cond`` is opaque here: a tensor, a (nested) dict/list/tuple of tensors, or None. ``cond_mask``
is a bool ``[B]``; False asks the model to ignore (zero/null) its conditioning for that sample.
The guided output is ``uncond + w * (cond - uncond)`` on the model output, whatever it
parametrises: given x_t, eps is an affine function of v (``eps = sqrt(1-abar) x_t + sqrt(abar) v``),
so guiding v and guiding eps give the same sample.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor, Any, torch.Tensor], torch.Tensor]


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], tree: Any) -> Any:
    """Apply ``fn`` to every tensor in a nest of dicts/lists/tuples; other leaves are kept as they are."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return type(tree)((key, map_tensors(fn, value)) for key, value in tree.items())
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple
        return type(tree)(*(map_tensors(fn, value) for value in tree))
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_tensors(fn, value) for value in tree)
    return tree


def tensor_leaves(tree: Any) -> list[torch.Tensor]:
    leaves: list[torch.Tensor] = []
    map_tensors(lambda x: leaves.append(x) or x, tree)
    return leaves


def checked_output(out: Any, like: torch.Tensor) -> torch.Tensor:
    """The model output as float32, after checking it is a tensor shaped like the model input."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the denoiser must return a tensor shaped like x_t; got {type(out).__name__}")
    if out.shape != like.shape:
        raise ValueError(f"the denoiser returned shape {tuple(out.shape)}; expected x_t's shape {tuple(like.shape)}")
    return out.float()


class GuidedDenoiser:
    """``GuidedDenoiser(model_fn, cond, guidance, batch_size)(x_t, t) -> guided model output (float32)``.

    guidance == 1 makes one conditional call, guidance == 0 one unconditional call. Otherwise the
    conditional and unconditional passes go in one model call of batch 2B (conditioning duplicated
    once, up front) when every tensor in ``cond`` has batch size B on dim 0 and ``batch_cfg`` is
    True; else in two calls of batch B (less peak memory, or a ``cond`` that cannot be stacked).
    """

    def __init__(self, model_fn: ModelFn, cond: Any, guidance: float, batch_size: int,
                 device: torch.device, batch_cfg: bool = True) -> None:
        self.model_fn = model_fn
        self.cond = cond
        self.guidance = float(guidance)
        self.batch_size = batch_size
        self.ones = torch.ones(batch_size, dtype=torch.bool, device=device)
        self.zeros = torch.zeros(batch_size, dtype=torch.bool, device=device)
        stackable = all(leaf.ndim >= 1 and leaf.shape[0] == batch_size for leaf in tensor_leaves(cond))
        self.batched = batch_cfg and stackable and self.guidance not in (0.0, 1.0)
        if self.batched:
            self.cond_2b = map_tensors(lambda x: torch.cat([x, x]), cond)
            self.mask_2b = torch.cat([self.ones, self.zeros])

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.guidance == 1.0:
            return checked_output(self.model_fn(x, t, self.cond, self.ones), x)
        if self.guidance == 0.0:
            return checked_output(self.model_fn(x, t, self.cond, self.zeros), x)
        if self.batched:
            x2 = torch.cat([x, x])
            out = checked_output(self.model_fn(x2, torch.cat([t, t]), self.cond_2b, self.mask_2b), x2)
            cond_out, uncond_out = out.chunk(2)
        else:
            cond_out = checked_output(self.model_fn(x, t, self.cond, self.ones), x)
            uncond_out = checked_output(self.model_fn(x, t, self.cond, self.zeros), x)
        return uncond_out + self.guidance * (cond_out - uncond_out)
