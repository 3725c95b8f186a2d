"""A causal transformer over tubelet tokens with ALiBi attention biases (docs/TUBELET.md).

Sequence order: time-major. All ``H' W'`` tokens of time step ``s`` come before those of ``s + 1``;
within a step, raster order (row by row, left to right). A clip's ``[B, T', H', W']`` token grid is
``rearrange(grid, "b t h w -> b (t h w)")``.

No position embeddings: every attention head adds ALiBi's bias ``-m_h (i - j)`` to the score of query
``i`` on key ``j`` (Press et al. 2022, "Train Short, Test Long"), with slopes ``m_h = 2^(-8 h / H)``
for heads ``h = 1 .. H``. The bias depends only on the distance ``i - j``, so a model trained on
sequences of ``L`` tokens runs on longer ones. The bias and the causal mask (``-inf`` where ``j > i``)
are one float ``attn_mask`` of :func:`torch.nn.functional.scaled_dot_product_attention`.

Sampling keeps each layer's keys and values (a KV cache): each new token costs one forward pass of
one token over the cache, so a sample's cost grows linearly with its length (full recomputation:
quadratically). ``window`` limits what a sampled token attends to: itself and the ``window`` tokens
before it (a sliding window over the cache; with ALiBi the positions are relative, so dropping old
keys needs no re-indexing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from models.unets.config import coerce_config


@dataclass
class TubeletTransformerConfig:
    dim: int = 512  # token width
    depth: int = 8  # transformer blocks
    heads: int = 8  # attention heads (ALiBi slopes 2^(-8h/heads))
    mlp_ratio: float = 4.0  # MLP hidden width / dim
    dropout: float = 0.0  # on attention weights and after attention and MLP

    def __post_init__(self) -> None:
        if min(self.dim, self.depth, self.heads) < 1 or self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a positive multiple of heads ({self.heads}); depth >= 1")
        if not 0 <= self.dropout < 1 or self.mlp_ratio <= 0:
            raise ValueError(f"dropout must be in [0, 1) and mlp_ratio positive; got {self.dropout}, {self.mlp_ratio}")


def alibi_slopes(heads: int) -> torch.Tensor:
    """``[heads]``: ``m_h = 2^(-8 h / heads)``, ``h = 1 .. heads`` (ALiBi's geometric sequence)."""
    return torch.pow(2.0, -8.0 * torch.arange(1, heads + 1, dtype=torch.float64) / heads).float()


def alibi_bias(slopes: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """``[H, Lq, Lk]`` float attention mask: ``-m_h (i - j)`` for keys at or before the query, ``-inf`` after."""
    distance = (q_pos[:, None] - k_pos[None, :]).to(slopes.dtype)  # i - j
    bias = -slopes[:, None, None] * distance
    return bias.masked_fill(distance < 0, float("-inf"))


class KVCache:
    """Each layer's keys and values ``[B, H, L, d]`` and the positions ``[L]`` of the tokens they hold."""

    def __init__(self, depth: int, context: Optional[int] = None) -> None:
        self.keys: list[Optional[torch.Tensor]] = [None] * depth
        self.values: list[Optional[torch.Tensor]] = [None] * depth
        self.positions: Optional[torch.Tensor] = None
        self.context = context  # keep the keys of at most this many earlier tokens (None: all)

    @property
    def length(self) -> int:
        """The position the next token gets: every token seen, dropped ones included."""
        return 0 if self.positions is None else int(self.positions[-1]) + 1

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's keys and values with ``k``/``v`` appended (cut to the window once the step is done)."""
        if self.keys[layer] is not None:
            k, v = torch.cat([self.keys[layer], k], dim=2), torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def trim(self) -> None:
        """Drop the oldest tokens beyond ``context`` (after a forward pass has used them)."""
        if self.context is None or self.positions is None or len(self.positions) <= self.context:
            return
        self.positions = self.positions[-self.context:]
        self.keys = [k[:, :, -self.context:] for k in self.keys]
        self.values = [v[:, :, -self.context:] for v in self.values]


class Attention(nn.Module):
    """Multi-head self-attention whose scores get the ALiBi bias and the causal mask (one SDPA call)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: Optional[KVCache] = None,
                layer: int = 0) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype),
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out(rearrange(out, "b h n d -> b n (h d)"))


class Block(nn.Module):
    """Pre-norm transformer block: attention, then MLP, each residual."""

    def __init__(self, cfg: TubeletTransformerConfig) -> None:
        super().__init__()
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dropout)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: Optional[KVCache], layer: int) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask, cache, layer))
        return x + self.drop(self.mlp(self.norm2(x)))


class TubeletTransformer(nn.Module):
    """``forward(tokens [B, L]) -> logits [B, L, vocab]``: logit ``i`` predicts token ``i + 1``."""

    def __init__(self, cfg: TubeletTransformerConfig | Mapping[str, Any] | None, vocab: int) -> None:
        super().__init__()
        cfg = coerce_config(cfg if cfg is not None else TubeletTransformerConfig(), TubeletTransformerConfig)
        self.cfg, self.vocab = cfg, int(vocab)
        self.embed = nn.Embedding(self.vocab, cfg.dim)  # one vector per FSQ token number
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, self.vocab)
        self.register_buffer("slopes", alibi_slopes(cfg.heads), persistent=False)

    def forward(self, tokens: torch.Tensor, cache: Optional[KVCache] = None) -> torch.Tensor:
        """Logits of every position of ``tokens`` ``[B, n]``. With ``cache``, ``tokens`` continue the
        cached sequence (their positions follow it) and their keys and values join the cache."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens are [B, L]; got shape {tuple(tokens.shape)}")
        start = 0 if cache is None else cache.length
        q_pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        if cache is None:
            k_pos = q_pos
        else:
            k_pos = q_pos if cache.positions is None else torch.cat([cache.positions, q_pos])
            cache.positions = k_pos
        mask = alibi_bias(self.slopes, q_pos, k_pos)[None]  # [1, H, n, L]: one mask for the whole batch
        x = self.embed(tokens)
        for layer, block in enumerate(self.blocks):
            x = block(x, mask, cache, layer)
        if cache is not None:
            cache.trim()
        return self.head(self.norm(x))


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``logits`` ``[B, V]`` with every token outside the ``top_k`` most likely (0: no limit) and
    outside the smallest set whose probability reaches ``top_p`` (nucleus; 1: no limit) set to ``-inf``."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability of the more likely tokens
        drop = before >= top_p  # the most likely token is always kept (before = 0)
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sample_token(logits: torch.Tensor, generator: Optional[torch.Generator], temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``[B]`` tokens drawn from ``logits`` ``[B, V]``; temperature 0 is greedy. One uniform number per
    row from ``generator`` (on the CPU, whatever the device), inverted through the CDF: the draws, and
    so the tokens, are the same on every device for the same generator state."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(logits.shape[0], 1, generator=generator, dtype=cdf.dtype).to(cdf.device)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp(max=logits.shape[-1] - 1).squeeze(-1)


@torch.no_grad()
def generate(net: TubeletTransformer, context: torch.Tensor, count: int, generator: Optional[torch.Generator],
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, kv_cache: bool = True,
             window: Optional[int] = None) -> torch.Tensor:
    """``count`` tokens ``[B, count]`` sampled after ``context`` ``[B, Lc]`` (at least one token).

    ``kv_cache``: one token per forward pass over the cached keys and values (linear cost); False:
    the whole sequence recomputed for every token (the reference the cache must match). ``window``:
    a token attends to itself and at most this many tokens before it (None: all; with a window and
    more than one layer the two paths differ: cached keys of deeper layers were computed from the
    longer context their tokens saw)."""
    if context.shape[1] < 1:
        raise ValueError("generation needs at least one context token")
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    out = []
    if kv_cache:
        cache = KVCache(len(net.blocks), context=window)
        logits = net(context[:, -(window + 1):] if window else context, cache)[:, -1]
        for i in range(count):
            token = sample_token(logits, generator, **options)
            out.append(token)
            if i + 1 < count:
                logits = net(token[:, None], cache)[:, -1]
        return torch.stack(out, dim=1)
    seq = context
    for _ in range(count):
        logits = net(seq[:, -(window + 1):] if window else seq)[:, -1]
        token = sample_token(logits, generator, **options)
        out.append(token)
        seq = torch.cat([seq, token[:, None]], dim=1)
    return torch.stack(out, dim=1)
