"""FVD and KVD: I3D features, the Frechet distance and a polynomial-kernel MMD.

Detector. The TorchScript port of the TF-Hub Kinetics-400 I3D made for StyleGAN-V
(``i3d_torchscript.pt``; its authors checked it against the TF-Hub module, see
github.com/universome/fvd-comparison). It is called as::

    feats = detector(videos, rescale=False, resize=False, return_features=True)  # [B, 400]

with ``videos`` float ``[B, 3, T, 224, 224]`` in ``[-1, 1]``. ``return_features=True`` gives the
400-d pre-softmax output FVD uses ("raw features before the softmax layer" in StyleGAN-V's code).
With ``rescale=True, resize=True`` the module would instead take ``[0, 255]`` input and resize
internally (how StyleGAN-V's own metric calls it, on uint8 clips); we resize ourselves, as the
MCVD and ExtDM code does: frames are resized (bilinear, ``align_corners=False``) so the shorter
side is 224, then center-cropped to 224x224.

The file is looked up at, in order: the ``path`` argument (``--i3d``), ``$RSVP_I3D``, and
``~/.cache/rsvp/i3d_torchscript.pt``. Nothing is downloaded.

Stand-in. :func:`build_i3d_standin` makes a tiny, randomly initialised TorchScript module with
the same call signature and a 400-d output, for tests and smoke runs. It carries the attribute
``rsvp_standin``; anything computed with it is reported under ``fvd_standin`` / ``kvd_standin``,
never ``fvd`` / ``kvd``.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from evaluation.weights import MissingWeightsError, sha256_file

I3D_FILENAME = "i3d_torchscript.pt"
I3D_ENV = "RSVP_I3D"
I3D_SOURCE_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"  # StyleGAN-V's link
I3D_INPUT_SIZE = 224
FEATURE_DIM = 400


# ----------------------------------------------------------------------------------------------
# Locating and loading the detector


def default_i3d_path() -> Path:
    return Path.home() / ".cache" / "rsvp" / I3D_FILENAME


def resolve_i3d_path(path: str | Path | None = None) -> Path:
    """``path`` if given, else ``$RSVP_I3D`` if set, else ``~/.cache/rsvp/i3d_torchscript.pt``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(I3D_ENV, "")
    if env:
        return Path(env).expanduser()
    return default_i3d_path()


def missing_i3d_message(path: Path) -> str:
    return (
        f"FVD/KVD need the I3D detector '{I3D_FILENAME}' (StyleGAN-V's TorchScript port of the TF-Hub "
        f"Kinetics-400 I3D), which is not at {path}. Put it at {default_i3d_path()}, or point "
        f"${I3D_ENV} or --i3d at it. On a machine with network access it is {I3D_SOURCE_URL} . "
        f"No download is attempted. To run without FVD/KVD leave 'fvd' and 'kvd' out of --metrics."
    )


class I3DFeatures:
    """A loaded detector plus the preprocessing FVD needs.

    ``features(videos)`` maps ``[B, C, T, H, W]`` in ``[-1, 1]`` (C = 1 or 3, any H x W) to
    float64 ``[B, 400]`` numpy features. ``standin`` is True for :func:`build_i3d_standin` modules.
    """

    def __init__(self, module: torch.jit.ScriptModule, path: str | None, sha256: str | None,
                 device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        self.module = module.eval().to(device)
        self.path = path
        self.sha256 = sha256
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.standin = bool(getattr(module, "rsvp_standin", False))

    @property
    def label(self) -> str:
        return "random I3D stand-in (not FVD)" if self.standin else "I3D (TF-Hub Kinetics-400, StyleGAN-V TorchScript port)"

    def describe(self) -> dict:
        return {"file": self.path, "sha256": self.sha256 if not self.standin else "stand-in",
                "standin": self.standin, "label": self.label,
                "call": "detector(x, rescale=False, resize=False, return_features=True)",
                "input": f"[B, 3, T, {I3D_INPUT_SIZE}, {I3D_INPUT_SIZE}] in [-1, 1]",
                "resize": "bilinear (align_corners=False), shorter side to 224, center crop 224x224",
                "feature_dim": FEATURE_DIM}

    @torch.no_grad()
    def features(self, videos: torch.Tensor) -> np.ndarray:
        out = []
        for i in range(0, videos.shape[0], self.batch_size):
            x = preprocess_for_i3d(videos[i:i + self.batch_size].to(self.device))
            try:
                feats = self.module(x, rescale=False, resize=False, return_features=True)
            except RuntimeError as err:  # almost always clips too short for the I3D's temporal pooling
                raise ValueError(f"I3D failed on clips of shape {tuple(x.shape)} (T={x.shape[2]} frames; "
                                 f"the Kinetics I3D needs clips of roughly 10 frames or more): {err}") from err
            if feats.dim() != 2:
                feats = feats.reshape(feats.shape[0], -1)
            out.append(feats.double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


def load_i3d(path: str | Path | None = None, device: str | torch.device = "cpu",
             batch_size: int = 8) -> I3DFeatures:
    """Load the TorchScript I3D from :func:`resolve_i3d_path`; :class:`MissingWeightsError` if absent."""
    resolved = resolve_i3d_path(path)
    if not resolved.is_file():
        raise MissingWeightsError(missing_i3d_message(resolved), path=resolved, metric="fvd")
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.x but is the format of the file
        warnings.simplefilter("ignore", FutureWarning)
        try:
            module = torch.jit.load(str(resolved), map_location="cpu")
        except (RuntimeError, ValueError) as err:
            raise RuntimeError(f"{resolved} is not a loadable TorchScript file ({err}); expected "
                               f"{I3D_FILENAME} from {I3D_SOURCE_URL}") from err
    standin = bool(getattr(module, "rsvp_standin", False))
    return I3DFeatures(module, str(resolved), None if standin else sha256_file(resolved), device, batch_size)


def preprocess_for_i3d(videos: torch.Tensor, size: int = I3D_INPUT_SIZE) -> torch.Tensor:
    """``[B, C, T, H, W]`` in ``[-1, 1]`` -> float32 ``[B, 3, T, size, size]`` in ``[-1, 1]``.

    Bilinear resize (``align_corners=False``, no antialiasing) of every frame so the shorter side
    is ``size`` (the longer side rounded up), then a center crop; one channel is repeated to RGB.
    """
    from einops import rearrange

    b, c, t, h, w = videos.shape
    if c == 1:
        videos = videos.expand(-1, 3, -1, -1, -1)
    elif c != 3:
        raise ValueError(f"I3D needs 1 or 3 channels, got {c}")
    x = rearrange(videos.float().clamp(-1, 1), "b c t h w -> (b t) c h w")
    scale = size / min(h, w)
    th, tw = (size, math.ceil(w * scale)) if h <= w else (math.ceil(h * scale), size)
    if (th, tw) != (h, w):
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
    top, left = (th - size) // 2, (tw - size) // 2
    x = x[:, :, top:top + size, left:left + size]
    return rearrange(x, "(b t) c h w -> b c t h w", b=b).contiguous()


# ----------------------------------------------------------------------------------------------
# Test stand-in with the same interface


class _I3DStandin(torch.nn.Module):
    """Random stand-in for ``i3d_torchscript.pt``: same call signature, 400-d output. NOT I3D."""

    def __init__(self) -> None:
        super().__init__()
        self.rsvp_standin = True
        self.description = "random stand-in for i3d_torchscript.pt; its outputs are not I3D features"
        self.conv = torch.nn.Conv3d(3, 16, kernel_size=(3, 7, 7), stride=(2, 8, 8), padding=(1, 3, 3))
        self.head = torch.nn.Linear(32, FEATURE_DIM)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = F.interpolate(x, size=[x.shape[2], 224, 224], mode="trilinear", align_corners=False)
        h = torch.relu(self.conv(x))
        pooled = torch.cat([h.mean(dim=(2, 3, 4)), h.amax(dim=(2, 3, 4))], dim=1)
        feats = self.head(pooled)
        if return_features:
            return feats
        return torch.softmax(feats, dim=1)


def build_i3d_standin(seed: int = 0) -> torch.jit.ScriptModule:
    """A scripted, randomly initialised stand-in for the I3D detector (tests only)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.script(_I3DStandin().eval())
    finally:
        torch.random.set_rng_state(gen_state)
    return module


def save_i3d_standin(path: str | Path, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(build_i3d_standin(seed), str(path))
    return path


# ----------------------------------------------------------------------------------------------
# Frechet distance


def feature_stats(feats: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of ``[N, D]`` features; ``ddof=1``: unbiased covariance."""
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected features [N, D], got shape {x.shape}")
    if x.shape[0] <= ddof:
        raise ValueError(f"need more than {ddof} feature vectors for a covariance, got {x.shape[0]}")
    mu = x.mean(axis=0)
    centered = x - mu
    return mu, centered.T @ centered / (x.shape[0] - ddof)


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr sqrt(S1 S2)`` via symmetric eigendecompositions; robust for singular covariances."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ sigma2 @ root1
    lam = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(lam, 0, None)).sum())


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                                sigma2: np.ndarray, info: dict | None = None) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))`` in float64.

    ``scipy.linalg.sqrtm`` of ``S1 S2`` is used, its (tiny) imaginary part discarded, as in the
    reference implementations. If it fails (non-finite, or an imaginary part that is not tiny,
    which happens with the singular covariances of fewer samples than dimensions), the trace is
    computed from symmetric eigendecompositions instead. ``info`` receives what was done.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("feature statistics of different dimensions")
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    scale = max(float(np.trace(s1) + np.trace(s2)), 1e-300)
    method, imag = "scipy.linalg.sqrtm", 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            root = scipy.linalg.sqrtm(s1 @ s2)
            if isinstance(root, tuple):  # older scipy with disp=False semantics
                root = root[0]
            imag = float(np.abs(np.imag(root)).max()) if np.iscomplexobj(root) else 0.0
            tr_root = float(np.real(np.trace(root)))
            ok = np.isfinite(tr_root) and imag <= 1e-3 * scale
        except (np.linalg.LinAlgError, ValueError):
            ok = False
    if not ok:
        method = "eigh (sqrtm failed or was inaccurate)"
        tr_root = _trace_sqrt_product_eigh(s1, s2)
    if info is not None:
        info.update({"sqrt_method": method, "max_imag_discarded": imag})
    return mean_term + float(np.trace(s1) + np.trace(s2)) - 2.0 * tr_root


def frechet_distance(feats1: np.ndarray, feats2: np.ndarray, ddof: int = 1,
                     info: dict | None = None) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets ``[N1, D]``, ``[N2, D]``."""
    mu1, s1 = feature_stats(feats1, ddof)
    mu2, s2 = feature_stats(feats2, ddof)
    return frechet_distance_from_stats(mu1, s1, mu2, s2, info)


# ----------------------------------------------------------------------------------------------
# Kernel distance (KVD): MMD^2 with the cubic polynomial kernel of KID


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``k(x, y) = (x . y / d + 1)^3`` (Binkowski et al. 2018, the KID kernel)."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, groups_x: np.ndarray | None = None,
                  groups_y: np.ndarray | None = None) -> float:
    """Unbiased estimate of MMD^2 between the distributions of ``x`` and ``y``.

    Every term averages the kernel over pairs of *different* groups only. Without groups each row
    is its own group and ``x``/``y`` groups never coincide: the usual estimator of KID
    (off-diagonal means of ``Kxx``, ``Kyy``, the full mean of ``Kxy``). With groups (a video id
    per row, shared between ``x`` and ``y``) pairs from the same video -- a prediction and its
    ground truth, two samples of the same context -- are left out, since they are not independent
    draws; the estimate stays unbiased and is exactly 0 when ``x`` and ``y`` are identical.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if groups_x is None or groups_y is None:
        groups_x = np.arange(x.shape[0])
        groups_y = np.arange(y.shape[0]) + x.shape[0]
    groups_x, groups_y = np.asarray(groups_x), np.asarray(groups_y)

    def mean_over_different(a: np.ndarray, ga: np.ndarray, b: np.ndarray, gb: np.ndarray,
                            block: int = 1024) -> float:
        total, count = 0.0, 0
        for i in range(0, a.shape[0], block):  # row blocks keep memory at block x len(b)
            k = polynomial_kernel(a[i:i + block], b)
            mask = ga[i:i + block, None] != gb[None, :]
            total += float(k[mask].sum())
            count += int(mask.sum())
        if count == 0:
            raise ValueError("KVD needs at least two different videos in each set")
        return total / count

    kxx = mean_over_different(x, groups_x, x, groups_x)
    kyy = mean_over_different(y, groups_y, y, groups_y)
    kxy = mean_over_different(x, groups_x, y, groups_y)
    return kxx + kyy - 2.0 * kxy


def kernel_distance(feats_real: np.ndarray, feats_fake: np.ndarray, ids_real: np.ndarray | None = None,
                    ids_fake: np.ndarray | None = None, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0, info: dict | None = None) -> float:
    """KVD: :func:`mmd2_unbiased` on I3D features, averaged over random subsets of videos.

    With at most ``max_subset_size`` videos (ids) everything is used once and the result is
    deterministic; otherwise ``num_subsets`` subsets of ``max_subset_size`` videos are drawn without
    replacement (``seed``) and the estimates averaged, as KID does in StyleGAN2-ADA / StyleGAN-V.
    """
    rng = np.random.default_rng(seed)
    paired = ids_real is not None and ids_fake is not None
    if paired:
        ids_real, ids_fake = np.asarray(ids_real), np.asarray(ids_fake)
        pool = np.intersect1d(np.unique(ids_real), np.unique(ids_fake))
        if pool.size < 2:
            raise ValueError("KVD needs at least two videos")
        if pool.size <= max_subset_size:
            value, used = mmd2_unbiased(feats_fake, feats_real, ids_fake, ids_real), 1
        else:
            vals = []
            for _ in range(num_subsets):
                keep = rng.choice(pool, max_subset_size, replace=False)
                mf, mr = np.isin(ids_fake, keep), np.isin(ids_real, keep)
                vals.append(mmd2_unbiased(feats_fake[mf], feats_real[mr], ids_fake[mf], ids_real[mr]))
            value, used = float(np.mean(vals)), num_subsets
        size = int(min(pool.size, max_subset_size))
    else:
        m = min(feats_real.shape[0], feats_fake.shape[0], max_subset_size)
        if m < 2:
            raise ValueError("KVD needs at least two feature vectors per set")
        if feats_real.shape[0] <= max_subset_size and feats_fake.shape[0] <= max_subset_size:
            value, used = mmd2_unbiased(feats_fake, feats_real), 1
        else:
            vals = []
            for _ in range(num_subsets):
                xf = feats_fake[rng.choice(feats_fake.shape[0], m, replace=False)]
                xr = feats_real[rng.choice(feats_real.shape[0], m, replace=False)]
                vals.append(mmd2_unbiased(xf, xr))
            value, used = float(np.mean(vals)), num_subsets
        size = int(m)
    if info is not None:
        info.update({"kernel": "(x.y/d + 1)^3", "estimator": "unbiased MMD^2" + (
            ", pairs from the same video excluded" if paired else ""), "subsets": used,
            "subset_size": size, "seed": seed})
    return value
