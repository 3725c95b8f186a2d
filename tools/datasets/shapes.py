"""``shapes``: the built-in procedural dataset (no files, no download).

Each clip is a static textured scene (a smooth two-colour field overlaid with tiles, stripes or
bricks, a vignette and fine grain) with 1-3 textured sprites of different shapes (circle, square,
triangle, diamond, hexagon, cross) and colours (striped, checkered, dotted, ringed or plain, with
a shaded body and a dark outline). Sprites move with constant velocity, bounce off the borders
and occlude each other in a fixed depth order; their textures move rigidly with them. Edges are
antialiased, so motion is smooth at sub-pixel speeds.

Items: ``video`` float32 ``[3, T, H, W]`` in [-1, 1], ``mask`` int64 ``[T, H, W]``
(0 = background, k = the k-th sprite from the back, after occlusion: where its coverage is at
least one half and no sprite in front covers it that much), ``background`` float32 ``[3, H, W]``
in [-1, 1] (the scene without sprites), plus ``index``. Masks and backgrounds are ground truth
for diagnosing the first stage's scene/object/motion decomposition.

Determinism and split: clip ``i`` of a split is a pure function of ``(split, i)`` and the config:
it is drawn from ``sample_rng(SHAPES_STREAM, split_id, i)``; train and test use different
streams, so they are disjoint, and the test set is the same for every run seed (runs with other
seeds are evaluated on the same clips). The sampler's draw number does not change the clip.
Sizes: ``data.shapes.num_train`` / ``num_test`` clips.
"""
from __future__ import annotations

import colorsys
import functools
import math

import numpy as np
import torch
from torch.utils.data import Dataset

from tools.datasets.clips import DatasetError, check_split, split_key
from tools.seeding import sample_rng

SHAPES_STREAM = 0x5AA9E5
SPLIT_IDS = {"train": 1, "test": 2}

# name -> extent: how far the shape reaches from its centre along x or y, in units of the nominal
# radius (half of data.shapes.*_size times the frame side). Shapes have roughly equal areas.
SHAPES = {"circle": 1.0, "square": 0.88, "triangle": 1.3, "diamond": 1.25, "hexagon": 1.1, "cross": 1.15}
SHAPE_NAMES = tuple(SHAPES)
TEXTURES = ("stripes", "checker", "dots", "rings", "plain")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def signed_distance(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) to ``shape`` of nominal radius ``r`` at the origin."""
    ax, ay = np.abs(x), np.abs(y)
    if shape == "circle":
        return np.sqrt(x * x + y * y) - r
    if shape == "square":
        return np.maximum(ax, ay) - 0.88 * r
    if shape == "diamond":
        return (ax + ay - 1.25 * r) * np.float32(np.sqrt(0.5))
    if shape == "triangle":  # equilateral, apex up, circumradius 1.3 r
        R = 1.3 * r
        return np.maximum(y - R / 2, np.float32(np.sqrt(3) / 2) * ax - y / 2 - R / 2)
    if shape == "hexagon":  # flat top, circumradius 1.1 r
        R = 1.1 * r * np.float32(np.sqrt(3) / 2)  # apothem
        return np.maximum(ay, np.float32(np.sqrt(3) / 2) * ax + ay / 2) - R
    if shape == "cross":
        arm, half = 1.15 * r, 0.4 * r
        return np.minimum(np.maximum(ax - arm, ay - half), np.maximum(ax - half, ay - arm))
    raise ValueError(f"unknown shape {shape}")


def _texture(kind: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Weight in [0, 1] of the second colour at sprite-local coordinates (u, v in radii)."""
    if kind == "stripes":
        angle, freq = rng.uniform(0, np.pi), rng.uniform(1.2, 2.2)
        return _smoothstep(-0.35, 0.35, np.sin(np.pi * freq * (u * math.cos(angle) + v * math.sin(angle))))
    if kind == "checker":
        freq = rng.uniform(1.5, 2.5)
        return _smoothstep(-0.25, 0.25, np.sin(np.pi * freq * u) * np.sin(np.pi * freq * v))
    if kind == "dots":
        freq = rng.uniform(1.6, 2.4)
        a, b = u * freq, v * freq
        a, b = a - np.floor(a) - 0.5, b - np.floor(b) - 0.5
        return _smoothstep(0.34, 0.24, np.sqrt(a * a + b * b))
    if kind == "rings":
        freq = rng.uniform(1.2, 2.0)
        return _smoothstep(-0.35, 0.35, np.sin(2 * np.pi * freq * np.sqrt(u * u + v * v)))
    return np.zeros_like(u)


@functools.lru_cache(maxsize=8)
def _pixel_grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)`` in [0, 1], each ``[res, res]`` (read-only)."""
    y, x = (np.mgrid[0:res, 0:res].astype(np.float32) + 0.5) / res
    y.flags.writeable = x.flags.writeable = False
    return y, x


def render_background(rng: np.random.Generator, res: int) -> np.ndarray:
    """A static scene, float32 ``[3, res, res]`` in [0, 1]."""
    y, x = _pixel_grid(res)
    hue, sat = rng.random(), rng.uniform(0.2, 0.5)
    dark = _hsv(hue, sat, rng.uniform(0.22, 0.38))[:, None, None]
    light = _hsv(hue + rng.uniform(-0.12, 0.12), sat * rng.uniform(0.6, 1.0), rng.uniform(0.5, 0.7))[:, None, None]
    field = np.zeros_like(x)
    for _ in range(3):
        fx, fy = rng.uniform(-2.5, 2.5, size=2).tolist()
        field += np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    field = _smoothstep(-2.0, 2.0, field)
    image = dark + (light - dark) * field
    kind = rng.integers(3)
    cells = rng.uniform(4, 9)
    if kind == 0:  # tiles
        checker = (np.floor(x * cells) + np.floor(y * cells)) % 2
        image *= 1 - 0.16 * checker
    elif kind == 1:  # stripes
        angle = rng.uniform(0, np.pi)
        stripes = np.sin(2 * np.pi * cells * (x * math.cos(angle) + y * math.sin(angle)))
        image *= 0.88 + 0.12 * stripes
    else:  # bricks
        rows = y * cells
        shift = 0.5 * (np.floor(rows) % 2)
        cols = x * cells / 2 + shift
        mortar = np.maximum(_smoothstep(0.12, 0.0, rows - np.floor(rows)),
                            _smoothstep(0.06, 0.0, cols - np.floor(cols)))
        image *= 1 - 0.3 * mortar
    vignette = 1 - 0.35 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    image = image * vignette + 0.05 * (rng.random((res, res), dtype=np.float32) - 0.5)
    return np.clip(image, 0, 1, out=image)


def _bounce(p0: float, velocity: float, t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions over time of a point moving at constant velocity, reflected at ``lo`` and ``hi``."""
    length = hi - lo
    if length <= 0:
        return np.full(t.shape, (lo + hi) / 2, dtype=np.float64)
    q = np.mod(p0 - lo + velocity * t, 2 * length)
    return lo + np.where(q < length, q, 2 * length - q)


def render_clip(rng: np.random.Generator, frames: int, res: int, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One clip: float32 ``[3, T, res, res]`` in [0, 1], uint8 mask ``[T, res, res]`` and the
    sprite-free background float32 ``[3, res, res]`` in [0, 1] (ground truth for the scene)."""
    background = render_background(rng, res)
    count = int(rng.integers(cfg.min_sprites, cfg.max_sprites + 1))
    shapes = rng.choice(len(SHAPE_NAMES), size=count, replace=count > len(SHAPE_NAMES))
    radii = (rng.uniform(cfg.min_size, cfg.max_size, size=count) * res / 2).tolist()
    reach = max(SHAPES[SHAPE_NAMES[s]] * r for s, r in zip(shapes, radii)) if count else 0.0
    pad = int(np.ceil(reach)) + 4  # any sprite centre inside the frame keeps its patch on the canvas
    canvas = np.zeros((3, frames, res + 2 * pad, res + 2 * pad), dtype=np.float32)
    canvas[:, :, pad:pad + res, pad:pad + res] = background[:, None]
    mask = np.zeros(canvas.shape[1:], dtype=np.uint8)
    t = np.arange(frames)
    hue0 = rng.random()
    outline = 1.2 * max(1.0, res / 64)
    for k, (shape_id, r) in enumerate(zip(shapes, radii)):
        shape = SHAPE_NAMES[shape_id]
        extent = SHAPES[shape] * r
        size = 2 * int(np.ceil(extent)) + 4  # side of the patch the sprite is drawn in
        grid = np.arange(size, dtype=np.float32) + 0.5 - size // 2
        speed = rng.uniform(cfg.min_speed, cfg.max_speed) * res
        angle = rng.uniform(0, 2 * np.pi)
        cx = _bounce(rng.uniform(extent, res - extent), speed * math.cos(angle), t, extent, res - extent)
        cy = _bounce(rng.uniform(extent, res - extent), speed * math.sin(angle), t, extent, res - extent)
        ix, iy = np.floor(cx).astype(np.int64), np.floor(cy).astype(np.int64)
        # Pixel-centre coordinates relative to the sprite centre: [T, 1, S] and [T, S, 1].
        x = (grid[None, :] + (ix - cx)[:, None]).astype(np.float32)[:, None, :]
        y = (grid[None, :] + (iy - cy)[:, None]).astype(np.float32)[:, :, None]
        distance = signed_distance(shape, x, y, r)
        alpha = np.clip(0.5 - distance, 0.0, 1.0)
        # Colours: hues spread around the wheel; the second colour lighter, darker or shifted.
        hue = hue0 + k / max(count, 1) + rng.uniform(-0.06, 0.06)
        first = _hsv(hue, rng.uniform(0.65, 0.95), rng.uniform(0.85, 1.0))[:, None, None, None]
        variant = rng.integers(3)
        second = (first * 0.4 + 0.6 if variant == 0 else first * 0.45 if variant == 1
                  else _hsv(hue + 0.5, rng.uniform(0.5, 0.9), rng.uniform(0.8, 1.0))[:, None, None, None])
        u, v = x / r, y / r
        weight = _texture(TEXTURES[rng.integers(len(TEXTURES))], u, v, rng)
        light = 1.0 - 0.15 * ((u + 0.45) ** 2 + (v + 0.45) ** 2)  # lit from the top left
        edge = np.clip((distance + outline) / outline, 0.0, 1.0)  # 1 on the rim, 0 inside
        shade = np.maximum(light * (1 - 0.7 * edge), 0.0)
        color = (first + (second - first) * weight) * shade  # [3, T, S, S], in [0, 1]
        covered = alpha >= 0.5
        for i, top, left in zip(t, iy + pad - size // 2, ix + pad - size // 2):
            region = canvas[:, i, top:top + size, left:left + size]
            region += (color[:, i] - region) * alpha[i]
            mask[i, top:top + size, left:left + size][covered[i]] = k + 1
    crop = (slice(pad, pad + res), slice(pad, pad + res))
    return canvas[(slice(None), slice(None), *crop)], mask[(slice(None), *crop)], background


class ShapesDataset(Dataset):
    def __init__(self, cfg, split: str) -> None:
        check_split(split)
        shapes = cfg.shapes
        if not 0 <= shapes.min_sprites <= shapes.max_sprites:
            raise DatasetError(f"shapes: need 0 <= data.shapes.min_sprites <= max_sprites, got "
                               f"{shapes.min_sprites} and {shapes.max_sprites}")
        if not 0 < shapes.min_size <= shapes.max_size:
            raise DatasetError(f"shapes: need 0 < data.shapes.min_size <= max_size, got "
                               f"{shapes.min_size} and {shapes.max_size}")
        self.cfg = shapes
        self.split, self.frames, self.resolution = split, cfg.frames, cfg.resolution
        self.count = shapes.num_train if split == "train" else shapes.num_test
        if self.count <= 0:
            raise DatasetError(f"shapes: data.shapes.num_{split} must be positive, got {self.count}")
        self.name, self.num_found, self.skipped = "shapes", self.count, []

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key) -> dict:
        index, _ = split_key(key)
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} clips")
        rng = sample_rng(SHAPES_STREAM, SPLIT_IDS[self.split], index)
        frames, mask, background = render_clip(rng, self.frames, self.resolution, self.cfg)
        return {"video": torch.from_numpy(frames * 2 - 1),
                "mask": torch.from_numpy(mask.astype(np.int64)),
                "background": torch.from_numpy(background * 2 - 1), "index": index}


def build(cfg, split: str, seed: int = 0) -> ShapesDataset:
    """``seed`` is unused: the clips do not depend on the run seed (see the module docstring)."""
    return ShapesDataset(cfg, split)
