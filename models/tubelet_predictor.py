"""The tubelet baseline as a :class:`models.interface.Predictor`: encode, sample tokens, decode.

The observed frames are encoded into tokens by the frozen tubelet autoencoder (its encoder never
mixes time steps, so these are the tokens the frames have in any longer clip), the transformer
samples the tokens of the next time steps one by one after them (time-major, raster order within a
step), and the decoder turns the observed and sampled tokens, together, into frames; the frames
after the observed ones are the prediction. Nothing but the observed frames is read.

A long prediction is one autoregressive pass (:meth:`TubeletPredictor.rollout`): the transformer
attends over everything sampled so far, also beyond the sequence length it was trained on (ALiBi),
or over the last ``context_steps`` time steps.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
from einops import rearrange

from models.interface import pseudo_clip
from models.tubelet_autoencoder import TubeletAutoencoder, tokens_per_step
from models.tubelet_transformer import TubeletTransformer, generate


# The diffusion methods' options that validate.py and the comparison scripts pass to every predictor
# (--sampler, --steps, --guidance, --snap): ignored here, with a warning, and listed in settings().
DIFFUSION_OPTIONS = ("sampler", "steps", "guidance", "snap")


@dataclass
class TubeletSamplingConfig:
    temperature: float = 1.0  # softmax temperature; 0: greedy
    top_k: int = 0  # sample among the k most likely tokens; 0: all
    top_p: float = 1.0  # nucleus: the smallest set of tokens whose probability reaches p; 1: all
    kv_cache: bool = True  # keys and values kept between tokens (linear cost); false: full recomputation
    context_steps: int = 0  # attend to the tokens of at most this many earlier time steps; 0: all

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1 or self.context_steps < 0:
            raise ValueError(f"sampling needs temperature >= 0, top_k >= 0, 0 < top_p <= 1, context_steps >= 0; "
                             f"got {self}")


class TubeletPredictor:
    """A frozen tubelet autoencoder and the token transformer ``net`` (eval mode for sampling).

    ``frames``: frames per predicted clip (the training sequence's after the ``cond_frames`` observed)."""

    samples_tokens = True  # validate.py's --temperature / --top_k / --top_p apply

    def __init__(self, first_stage: TubeletAutoencoder, net: TubeletTransformer, cond_frames: int, frames: int,
                 sampling: Optional[TubeletSamplingConfig] = None) -> None:
        self.first_stage, self.net = first_stage.eval(), net
        self.cond_frames, self.frames = int(cond_frames), int(frames)
        self.resolution = first_stage.resolution
        self.sampling = sampling or TubeletSamplingConfig()
        self.step_frames = first_stage.tubelet[0]

    def _options(self, sample_options: dict[str, Any]) -> TubeletSamplingConfig:
        options = {k: v for k, v in sample_options.items() if k not in DIFFUSION_OPTIONS}
        ignored = sorted(set(sample_options) - set(options))
        if ignored:
            warnings.warn(f"the tubelet transformer ignores the diffusion sampling options {ignored}")
        unknown = sorted(set(options) - set(asdict(self.sampling)))
        if unknown:
            raise ValueError(f"sampling options {unknown} do not apply to the tubelet transformer; its options are "
                             f"{sorted(asdict(self.sampling))} (defaults: the checkpoint's model.sampling)")
        return TubeletSamplingConfig(**{**asdict(self.sampling), **options})

    def _context(self, observed: torch.Tensor) -> torch.Tensor:
        """The latest observed frames that fill whole time steps (``K`` rounded down to the tubelet length)."""
        k, t = observed.shape[2], self.step_frames
        if k < t:
            raise ValueError(f"{k} observed frames do not fill one tubelet of {t} frames")
        return observed[:, :, k - k // t * t:]

    @torch.no_grad()
    def tokens(self, clip: torch.Tensor) -> torch.Tensor:
        """``[B, T' H' W']`` token sequence of a clip (time-major, raster order within a step)."""
        return rearrange(self.first_stage.encode(clip)["indices"], "b t h w -> b (t h w)")

    @torch.no_grad()
    def _decode_after(self, context: torch.Tensor, after: torch.Tensor, frames: int) -> torch.Tensor:
        """The first ``frames`` frames of the token sequence ``after`` the ``context`` tokens, decoded together."""
        _, h, w = self.first_stage.token_grid()
        grid = rearrange(torch.cat([context, after], dim=1), "b (t h w) -> b t h w", h=h, w=w)
        start = context.shape[1] // (h * w) * self.step_frames
        return self.first_stage.decode_indices(grid)[:, :, start:start + frames].clamp(-1, 1)

    @torch.no_grad()
    def rollout(self, observed: torch.Tensor, pred_frames: int, generator: Optional[torch.Generator] = None,
                **sample_options: Any) -> torch.Tensor:
        """``pred_frames`` frames after ``observed`` ``[B, 3, K, H, W]``, sampled in one autoregressive pass."""
        options = self._options(sample_options)
        context = self.tokens(self._context(observed))
        per_step = tokens_per_step(self.first_stage)
        count = math.ceil(pred_frames / self.step_frames) * per_step
        window = options.context_steps * per_step or None
        new = generate(self.net, context, count, generator, temperature=options.temperature, top_k=options.top_k,
                       top_p=options.top_p, kv_cache=options.kv_cache, window=window)
        return self._decode_after(context, new, pred_frames)

    @torch.no_grad()
    def predict(self, observed: torch.Tensor, generator: Optional[torch.Generator] = None,
                **sample_options: Any) -> torch.Tensor:
        """Frames ``[B, 3, T, H, W]`` following the observed ones (one clip of ``frames``)."""
        return self.rollout(observed, self.frames, generator, **sample_options)

    @torch.no_grad()
    def reconstruct(self, observed: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """The true future's tokens decoded after the observed frames' tokens (a perfect transformer)."""
        frames = future.shape[2]
        padded = pseudo_clip(future, math.ceil(frames / self.step_frames) * self.step_frames)
        return self._decode_after(self.tokens(self._context(observed)), self.tokens(padded), frames)

    def settings(self, **sample_options: Any) -> dict[str, Any]:
        ignored = sorted(k for k in sample_options if k in DIFFUSION_OPTIONS)
        return {**{f"sampling_{k}": v for k, v in asdict(self._options(sample_options)).items()},
                "ignored_sample_options": ignored}
