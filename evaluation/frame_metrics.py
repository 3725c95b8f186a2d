"""Per-frame PSNR and SSIM on videos ``[..., C, T, H, W]``.

Convention (see docs/EVALUATION.md): every frame is scored on its own, then frames are averaged.

* Inputs are in ``value_range`` (the project's ``[-1, 1]`` by default) and are mapped to
  ``[0, 1]`` first; both metrics are then computed with data range 1. (PSNR does not care, but
  SSIM's luminance term is not shift invariant: SSIM on ``[-1, 1]`` values is a different number.)
* PSNR: ``10 log10(1 / MSE)`` with the MSE over the frame's ``C x H x W`` values.
  The MSE is floored at ``1e-10`` so that identical frames score 100 dB instead of ``inf``
  (an ``inf`` would make every average meaningless); ExtDM's code uses the same 100 dB cap.
* SSIM: Wang et al. 2004 as implemented by ``skimage.metrics.structural_similarity`` with
  ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1`` and
  ``channel_axis`` set: an 11-tap Gaussian window (sigma 1.5, truncated at 3.5 sigma),
  population (co)variances, ``K1 = 0.01, K2 = 0.03``, the SSIM map averaged over the pixels at
  least 5 px from the border ("valid" region), then over channels. The tests check the values
  against scikit-image to 1e-6.

Both functions are plain torch, run on any device and accept any leading batch dimensions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

PSNR_MAX_DB = 100.0


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.dim() < 4:
        raise ValueError(f"expected videos [..., C, T, H, W], got shape {tuple(pred.shape)}")


def _to_unit(video: torch.Tensor, value_range: tuple[float, float], dtype: torch.dtype) -> torch.Tensor:
    lo, hi = value_range
    return (video.to(dtype) - lo) / (hi - lo)


def psnr_per_frame(pred: torch.Tensor, target: torch.Tensor,
                   value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """PSNR in dB of every frame: ``[..., C, T, H, W]`` x2 -> ``[..., T]`` (float64).

    Equals ``skimage.metrics.peak_signal_noise_ratio(target01, pred01, data_range=1)`` per frame,
    except that identical frames give 100 dB rather than ``inf``.
    """
    _check_pair(pred, target)
    diff = _to_unit(pred, value_range, torch.float64) - _to_unit(target, value_range, torch.float64)
    mse = diff.pow(2).mean(dim=(-4, -2, -1))  # over C, H, W -> [..., T]
    return 10.0 * torch.log10(1.0 / mse.clamp_min(10 ** (-PSNR_MAX_DB / 10)))


def gaussian_window(win_size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, as ``scipy.ndimage.gaussian_filter`` builds them."""
    radius = (win_size - 1) // 2
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim_per_frame(pred: torch.Tensor, target: torch.Tensor,
                   value_range: tuple[float, float] = (-1.0, 1.0), win_size: int = 11,
                   sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Mean SSIM of every frame: ``[..., C, T, H, W]`` x2 -> ``[..., T]`` (float64).

    Matches ``skimage.metrics.structural_similarity(target01, pred01, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)`` frame by frame,
    where ``*01`` are the frames mapped from ``value_range`` to ``[0, 1]``.
    """
    _check_pair(pred, target)
    if win_size % 2 != 1:
        raise ValueError("win_size must be odd")
    h, w = pred.shape[-2:]
    if h < win_size or w < win_size:
        raise ValueError(f"SSIM with an {win_size}x{win_size} window needs frames of at least "
                         f"{win_size}x{win_size} pixels; got {h}x{w}")
    lead = pred.shape[:-4]
    c, t = pred.shape[-4], pred.shape[-3]
    x = rearrange(_to_unit(pred, value_range, dtype), "... c t h w -> (... t c) 1 h w")
    y = rearrange(_to_unit(target, value_range, dtype), "... c t h w -> (... t c) 1 h w")
    g = gaussian_window(win_size, sigma, dtype=dtype, device=pred.device)
    gh, gw = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(z: torch.Tensor) -> torch.Tensor:  # separable "valid" filtering == skimage's crop
        return F.conv2d(F.conv2d(z, gh), gw)

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1, c2 = k1**2, k2**2  # data range 1
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    per_channel = s.mean(dim=(1, 2, 3)).double()
    per_channel = per_channel.reshape(*lead, t, c) if lead else per_channel.reshape(t, c)
    return per_channel.mean(dim=-1)


def quantize_uint8(video: torch.Tensor) -> torch.Tensor:
    """Round ``[-1, 1]`` values to the 256 levels a uint8 file would store (clamped)."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def mean_and_ci(values) -> dict:
    """Mean, sample std (ddof 1) and half-width of a normal 95% confidence interval of the mean."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = v.size
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    return {"mean": float(v.mean()), "std": std,
            "ci95": 1.959964 * std / math.sqrt(n) if n > 1 else 0.0, "n": int(n)}
