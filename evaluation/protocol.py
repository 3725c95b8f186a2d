"""The evaluation protocol: which frames, which samples, how results are aggregated and recorded.

Shapes: ground truth ``real`` is ``[B, C, T, H, W]`` in ``[-1, 1]``; model output ``samples`` is
``[B, N, C, T', H, W]`` (N samples per video; ``[B, C, T', H, W]`` means N = 1) with either
``T' = T`` (full clips: the first ``cond_frames`` frames are ignored) or ``T' = T - cond_frames``
(predicted frames only).

Frame metrics (PSNR, SSIM, LPIPS, ST-LPIPS) score each predicted frame ``cond_frames .. T-1``
against the ground truth, average over those frames per (video, sample), then aggregate over
samples: ``mean`` (mean over the N samples, then over videos) and ``best_of_n`` (per video and per
metric the best sample -- max PSNR/SSIM, min LPIPS/ST-LPIPS -- then the mean over videos, as MCVD
and ExtDM report).
Per-horizon curves give the same two aggregations per predicted frame; for best-of-N the curve
of the sample chosen by its video average is used.

FVD/KVD compare I3D features of the ground-truth clips (one per video) with those of the
generated clips (all ``B x N`` samples). With ``fvd_include_observed`` the clips are the observed
frames followed by the predicted ones -- the observed frames taken from the ground truth for both
sets, as MCVD and ExtDM do -- otherwise the predicted frames only.

Every result carries a ``protocol`` entry that records these choices and the weights used.
"""
from __future__ import annotations

import dataclasses
import math
import platform
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from evaluation.frame_metrics import mean_and_ci, psnr_per_frame, quantize_uint8, ssim_per_frame
from evaluation.weights import MissingWeightsError

ALL_METRICS = ("psnr", "ssim", "lpips", "st_lpips", "fvd", "kvd")
# What runs when no metrics are named. st_lpips is asked for by name: it is not LPIPS (its values
# are not comparable with published LPIPS), so it is never a silent replacement for it.
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "fvd", "kvd")
FRAME_METRICS = ("psnr", "ssim", "lpips", "st_lpips")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "st_lpips": False}
STANDIN_SUFFIX = "_standin"


@dataclass
class EvalProtocol:
    """The choices behind a set of numbers (all recorded in the output)."""

    cond_frames: int = 0               # observed frames at the start of each ground-truth clip
    fvd_include_observed: bool = True  # FVD/KVD clips = observed + predicted (MCVD/ExtDM) or predicted only
    quantize_uint8: bool = True        # score the 8-bit videos a file would hold
    lpips_net: str = "alex"            # "alex" (video-prediction papers) or "vgg"
    st_lpips_net: str = "alex"         # ST-LPIPS backbone: "alex" or "vgg"
    fvd_cov_ddof: int = 1              # 1: unbiased covariance (TF FVD, MCVD); 0: StyleGAN-V's 1/N
    kvd_num_subsets: int = 100
    kvd_subset_size: int = 1000
    kvd_seed: int = 0

    def __post_init__(self) -> None:
        if self.cond_frames < 0:
            raise ValueError("cond_frames must be >= 0")
        if self.lpips_net not in ("alex", "vgg"):
            raise ValueError(f"lpips_net must be 'alex' or 'vgg', got {self.lpips_net!r}")
        if self.st_lpips_net not in ("alex", "vgg"):
            raise ValueError(f"st_lpips_net must be 'alex' or 'vgg', got {self.st_lpips_net!r}")
        if self.fvd_cov_ddof not in (0, 1):
            raise ValueError("fvd_cov_ddof must be 0 or 1")


def parse_metrics(metrics: str | Iterable[str] | None) -> list[str]:
    """``"psnr,ssim"`` or an iterable -> validated list in canonical order; None -> the defaults."""
    if metrics is None:
        return list(DEFAULT_METRICS)
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    names = [m for m in names if m]
    unknown = sorted(set(names) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(ALL_METRICS)}")
    if not names:
        raise ValueError("no metrics requested")
    return [m for m in ALL_METRICS if m in names]


def copy_last_frame_baseline(observed: torch.Tensor, pred_len: int) -> torch.Tensor:
    """The trivial predictor: repeat the last observed frame.

    ``observed`` ``[B, C, K, H, W]`` (K >= 1) -> predicted frames ``[B, C, pred_len, H, W]``.
    """
    if observed.dim() != 5 or observed.shape[2] < 1:
        raise ValueError(f"expected observed frames [B, C, K>=1, H, W], got {tuple(observed.shape)}")
    if pred_len < 1:
        raise ValueError("pred_len must be >= 1")
    return observed[:, :, -1:].expand(-1, -1, pred_len, -1, -1).clone()


def _software() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"torch": torch.__version__, "torchvision": ver("torchvision"), "lpips": ver("lpips"),
            "stlpips-pytorch": ver("stlpips-pytorch"), "scipy": ver("scipy"), "numpy": np.__version__,
            "python": platform.python_version()}


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class PredictionEvaluator:
    """Streams batches of videos through the metrics; :meth:`compute` gives the result dict.

    ``lpips_model`` / ``st_lpips_model`` / ``i3d`` may be passed in (built once, reused); otherwise
    they are built from local files on first need. With ``on_missing_weights="skip"`` a missing weight file removes
    that metric and is recorded under ``skipped`` (with the message naming the file and where it
    goes); ``"raise"`` re-raises :class:`MissingWeightsError`.
    """

    def __init__(self, metrics: str | Iterable[str] | None = None, protocol: EvalProtocol | None = None, *,
                 device: str | torch.device | None = None, lpips_model: torch.nn.Module | None = None,
                 st_lpips_model: torch.nn.Module | None = None, i3d=None, i3d_path: str | None = None,
                 on_missing_weights: str = "skip",
                 keep_per_video: bool = False, lpips_chunk: int = 64, i3d_batch: int = 8) -> None:
        if on_missing_weights not in ("skip", "raise"):
            raise ValueError("on_missing_weights must be 'skip' or 'raise'")
        self.requested = parse_metrics(metrics)
        self.protocol = protocol or EvalProtocol()
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.keep_per_video = keep_per_video
        self.lpips_chunk = lpips_chunk
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.active = list(self.requested)
        self.lpips_model = lpips_model
        self.st_lpips_model = st_lpips_model
        self.i3d = i3d
        self._setup_models(i3d_path, i3d_batch, on_missing_weights)
        self._frame_values: dict[str, list[np.ndarray]] = {m: [] for m in FRAME_METRICS if m in self.active}
        self._feats_real: list[np.ndarray] = []
        self._feats_fake: list[np.ndarray] = []
        self._ids_fake: list[np.ndarray] = []
        self._names: list[str] = []
        self._shape: dict | None = None
        self._num_videos = 0

    # ------------------------------------------------------------------ setup
    def _setup_models(self, i3d_path, i3d_batch, on_missing) -> None:
        from evaluation.lpips_metric import build_lpips
        from evaluation.st_lpips import build_st_lpips

        for metric, build, net in (("lpips", build_lpips, self.protocol.lpips_net),
                                   ("st_lpips", build_st_lpips, self.protocol.st_lpips_net)):
            if metric in self.active and getattr(self, f"{metric}_model") is None:
                try:
                    setattr(self, f"{metric}_model", build(net, self.device))
                except MissingWeightsError as err:
                    if on_missing == "raise":
                        raise
                    self._skip([metric], str(err))
        if ("fvd" in self.active or "kvd" in self.active) and self.i3d is None:
            from evaluation.fvd import load_i3d

            try:
                self.i3d = load_i3d(i3d_path, self.device, batch_size=i3d_batch)
            except MissingWeightsError as err:
                if on_missing == "raise":
                    raise
                self._skip([m for m in ("fvd", "kvd") if m in self.active], str(err))
            except RuntimeError as err:  # present but not loadable
                raise ValueError(f"cannot load the I3D detector: {err}") from err

    def _skip(self, names: Sequence[str], reason: str) -> None:
        for name in names:
            self.skipped[name] = reason
            self.active.remove(name)
        warnings.warn(f"skipping {', '.join(names)}: {reason}", stacklevel=3)

    @property
    def lpips_standin(self) -> bool:
        return bool(getattr(self.lpips_model, "rsvp_standin", False))

    @property
    def i3d_standin(self) -> bool:
        return bool(getattr(self.i3d, "standin", False))

    def key(self, metric: str) -> str:
        """Output name of a metric: ``lpips_standin`` / ``fvd_standin`` / ``kvd_standin`` for stand-ins."""
        if metric == "lpips" and self.lpips_standin:
            return metric + STANDIN_SUFFIX
        if metric in ("fvd", "kvd") and self.i3d_standin:
            return metric + STANDIN_SUFFIX
        return metric

    # ------------------------------------------------------------------ streaming
    def _check_shapes(self, real: torch.Tensor, samples: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if real.dim() != 5:
            raise ValueError(f"real must be [B, C, T, H, W], got shape {tuple(real.shape)}")
        if samples.dim() == 5:
            samples = samples.unsqueeze(1)
        if samples.dim() != 6:
            raise ValueError(f"samples must be [B, N, C, T, H, W] or [B, C, T, H, W], got {tuple(samples.shape)}")
        b, c, t, h, w = real.shape
        k = self.protocol.cond_frames
        if samples.shape[0] != b:
            raise ValueError(f"{b} ground-truth videos but {samples.shape[0]} sample sets")
        if samples.shape[2] != c or samples.shape[-2:] != real.shape[-2:]:
            raise ValueError(f"samples {tuple(samples.shape[2:])} [C, T, H, W] do not match ground truth "
                             f"{(c, t, h, w)} in channels or frame size")
        if k >= t:
            raise ValueError(f"cond_frames={k} leaves no predicted frames in clips of {t} frames")
        ts = samples.shape[3]
        if ts == t:
            full = True
        elif k > 0 and ts == t - k:
            full = False
        else:
            expected = f"{t}" + (f" (full clips) or {t - k} (predicted frames only)" if k > 0 else "")
            raise ValueError(f"samples have {ts} frames, expected {expected}")
        shape = {"channels": c, "total_frames": t, "height": h, "width": w,
                 "samples_per_video": samples.shape[1], "full_clips": full}
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            diff = {key: (self._shape[key], shape[key]) for key in shape if shape[key] != self._shape[key]}
            raise ValueError(f"batch differs from earlier batches in {diff} (earlier, now)")
        return samples, full

    @torch.no_grad()
    def update(self, real: torch.Tensor, samples: torch.Tensor, names: Sequence[str] | None = None) -> None:
        """Add ``B`` videos: ground truth ``[B, C, T, H, W]``, samples ``[B, N, C, T', H, W]``."""
        samples, full = self._check_shapes(real, samples)
        b, n = samples.shape[:2]
        k = self.protocol.cond_frames
        real = real.to(self.device, torch.float32).clamp(-1, 1)
        samples = samples.to(self.device, torch.float32).clamp(-1, 1)
        if self.protocol.quantize_uint8:
            real, samples = quantize_uint8(real), quantize_uint8(samples)
        pred = samples[:, :, :, k:] if full else samples            # [B, N, C, P, H, W]
        target = real[:, :, k:].unsqueeze(1).expand_as(pred)         # [B, N, C, P, H, W]

        if "psnr" in self.active:
            self._frame_values["psnr"].append(psnr_per_frame(pred, target).cpu().numpy())
        if "ssim" in self.active:
            self._frame_values["ssim"].append(ssim_per_frame(pred, target).cpu().numpy())
        for metric, model in (("lpips", self.lpips_model), ("st_lpips", self.st_lpips_model)):
            if metric in self.active:
                from evaluation.lpips_metric import lpips_per_frame

                self._frame_values[metric].append(lpips_per_frame(model, pred, target, self.lpips_chunk).numpy())

        if "fvd" in self.active or "kvd" in self.active:
            from einops import rearrange

            if self.protocol.fvd_include_observed and k > 0:
                observed = real[:, :, :k].unsqueeze(1).expand(-1, n, -1, -1, -1, -1)
                fake_clips = torch.cat([observed, pred], dim=3)
                real_clips = real
            else:
                fake_clips, real_clips = pred, real[:, :, k:]
            self._feats_real.append(self.i3d.features(real_clips))
            self._feats_fake.append(self.i3d.features(rearrange(fake_clips, "b n c t h w -> (b n) c t h w")))
            ids = np.arange(self._num_videos, self._num_videos + b)
            self._ids_fake.append(np.repeat(ids, n))

        if names is not None:
            if len(names) != b:
                raise ValueError(f"{len(names)} names for {b} videos")
            self._names.extend(str(x) for x in names)
        self._num_videos += b

    # ------------------------------------------------------------------ results
    def export_batches(self) -> dict:
        """The per-batch results accumulated so far (picklable: numpy arrays and lists).

        The state holds one entry per :meth:`update` call; :meth:`load_batches` puts every rank's
        entries back in global batch order, so one process then computes what a single-process
        run would (same order, same sums, FVD/KVD on all features)."""
        return {"frame_values": {m: list(v) for m, v in self._frame_values.items()},
                "feats_real": list(self._feats_real), "feats_fake": list(self._feats_fake),
                "names": list(self._names), "shape": self._shape}

    def load_batches(self, parts: Sequence[tuple[Sequence[int], Sequence[int], dict]]) -> None:
        """Replace this evaluator's state by the batches of every rank, in global batch order.

        ``parts``: one ``(batch indices, batch sizes, export_batches())`` per rank.
        """
        batches: dict[int, dict] = {}
        for ids, sizes, state in parts:
            first = 0
            for j, (b, size) in enumerate(zip(ids, sizes)):
                if b in batches:
                    raise RuntimeError(f"batch {b} was evaluated by two processes")
                batches[b] = {"size": size, "names": state["names"][first:first + size],
                              "frame_values": {m: v[j] for m, v in state["frame_values"].items()},
                              "feats": (state["feats_real"][j], state["feats_fake"][j]) if state["feats_real"] else None}
                first += size
        order = sorted(batches)
        if order != list(range(len(order))):
            raise RuntimeError(f"batches {sorted(set(range(max(order) + 1)) - set(order))} were not evaluated")
        shapes = [state["shape"] for _, _, state in parts if state["shape"] is not None]
        if any(s != shapes[0] for s in shapes):
            raise RuntimeError(f"processes disagree on the video shapes: {shapes}")
        self._shape = shapes[0]
        self._frame_values = {m: [batches[b]["frame_values"][m] for b in order] for m in self._frame_values}
        self._names = [name for b in order for name in batches[b]["names"]]
        self._num_videos = sum(batches[b]["size"] for b in order)
        if all(batches[b]["feats"] is not None for b in order):
            n = self._shape["samples_per_video"]
            self._feats_real = [batches[b]["feats"][0] for b in order]
            self._feats_fake = [batches[b]["feats"][1] for b in order]
            starts = np.cumsum([0] + [batches[b]["size"] for b in order])
            self._ids_fake = [np.repeat(np.arange(starts[i], starts[i + 1]), n) for i in range(len(order))]

    def _protocol_record(self) -> dict:
        s = self._shape or {}
        p = self.protocol
        k, t = p.cond_frames, s.get("total_frames", 0)
        record = {
            "num_videos": self._num_videos,
            "samples_per_video": s.get("samples_per_video"),
            "total_frames": t,
            "cond_frames": k,
            "pred_frames": t - k if t else None,
            "resolution": [s.get("height"), s.get("width")],
            "channels": s.get("channels"),
            "sample_frames_given": ("full clips (their first cond_frames frames are not scored)"
                                    if s.get("full_clips") else "predicted frames only"),
            "quantize_uint8": p.quantize_uint8,
            "metrics_requested": self.requested,
            "metrics_computed": [self.key(m) for m in self.active],
            "metrics_skipped": dict(self.skipped),
        }
        if any(m in self.active for m in FRAME_METRICS):
            record["frame_metrics"] = {
                "frames_scored": f"predicted frames only: indices {k}..{t - 1} of each clip (horizon 1..{t - k})",
                "per_frame": "each frame scored on its own; frames averaged per (video, sample)",
                "aggregations": {
                    "mean": "mean over the N samples of a video, then mean over videos",
                    "best_of_n": "per video and per metric the best of the N samples (PSNR/SSIM max, "
                                 "LPIPS/ST-LPIPS min) by its frame average, then mean over videos",
                },
                "spread": "std = sample std over videos of the per-video value; ci95 = 1.96 std / sqrt(videos)",
                "psnr": "10 log10(1/MSE) on [0,1] frames, MSE over C x H x W, floored at 1e-10 (100 dB cap)",
                "ssim": "skimage-equivalent: Gaussian window 11, sigma 1.5, population covariance, "
                        "K1=0.01, K2=0.03, data range 1 on [0,1], mean over the valid region, then over channels",
            }
            if "lpips" in self.active:
                record["frame_metrics"]["lpips"] = {
                    "net": getattr(self.lpips_model, "rsvp_net", p.lpips_net), "version": "0.1",
                    "input": "frames in [-1,1] at native resolution (no resize); 1 channel repeated to RGB",
                    "backbone_file": getattr(self.lpips_model, "rsvp_backbone_file", None),
                    "standin": self.lpips_standin,
                    "label": getattr(self.lpips_model, "rsvp_label", "LPIPS"),
                }
            if "st_lpips" in self.active:
                from evaluation.st_lpips import LABEL, package_version

                record["frame_metrics"]["st_lpips"] = {
                    "net": getattr(self.st_lpips_model, "rsvp_net", p.st_lpips_net),
                    "package": f"stlpips-pytorch {package_version()} (weights only; our network code)",
                    "input": "frames in [-1,1] at native resolution (no resize); 1 channel repeated to RGB",
                    "weights_file": getattr(self.st_lpips_model, "rsvp_weights_file", None),
                    "label": LABEL,
                }
        if "fvd" in self.active or "kvd" in self.active:
            n_real = sum(x.shape[0] for x in self._feats_real)
            n_fake = sum(x.shape[0] for x in self._feats_fake)
            include = p.fvd_include_observed and k > 0
            record["fvd"] = {
                "clip": "observed + predicted frames" if include else "predicted frames only",
                "clip_frames": t if include else t - k,
                "observed_frames_source": "ground truth, for both sets" if include else None,
                "num_real_clips": n_real,
                "num_fake_clips": n_fake,
                "fake_clips": "all N samples of every video",
                "covariance_ddof": p.fvd_cov_ddof,
                "detector": self.i3d.describe() if self.i3d is not None else None,
            }
        record["software"] = _software()
        record["protocol_options"] = dataclasses.asdict(p)
        return record

    def compute(self) -> dict:
        """All metrics so far, with ``summary`` (flat), details, ``curves`` and ``protocol``."""
        if self._num_videos == 0:
            raise ValueError("no videos were added")
        from evaluation.fvd import FEATURE_DIM, frechet_distance, kernel_distance

        k = self.protocol.cond_frames
        t = self._shape["total_frames"]
        out: dict = {"summary": {}, "frame_metrics": {}, "distribution_metrics": {}, "curves": {},
                     "skipped": dict(self.skipped), "notes": list(self.notes)}
        n = self._shape["samples_per_video"]

        if any(m in self.active for m in FRAME_METRICS):
            out["curves"] = {"horizon": list(range(1, t - k + 1)), "frame_index": list(range(k, t))}
        per_video = {}
        for metric in FRAME_METRICS:
            if metric not in self.active:
                continue
            name = self.key(metric)
            values = np.concatenate(self._frame_values[metric])        # [V, N, P]
            video_sample = values.mean(axis=2)                           # [V, N]
            mean_per_video = video_sample.mean(axis=1)                   # [V]
            pick = np.argmax if HIGHER_IS_BETTER[metric] else np.argmin
            best_idx = pick(video_sample, axis=1)                        # [V]
            best_per_video = video_sample[np.arange(len(best_idx)), best_idx]
            best_curve = values[np.arange(len(best_idx)), best_idx].mean(axis=0)
            out["frame_metrics"][name] = {"mean": mean_and_ci(mean_per_video),
                                          "best_of_n": mean_and_ci(best_per_video),
                                          "higher_is_better": HIGHER_IS_BETTER[metric]}
            out["summary"][name] = float(mean_per_video.mean())
            out["summary"][f"{name}_best_of_n"] = float(best_per_video.mean())
            out["curves"][name] = {"mean": values.mean(axis=(0, 1)).tolist(), "best_of_n": best_curve.tolist()}
            if self.keep_per_video:
                per_video[name] = video_sample.tolist()
        if self.keep_per_video and per_video:
            out["per_video"] = {"names": self._names or None, "values_per_sample": per_video}

        if "fvd" in self.active or "kvd" in self.active:
            real = np.concatenate(self._feats_real)
            fake = np.concatenate(self._feats_fake)
            ids_fake = np.concatenate(self._ids_fake)
            ids_real = np.arange(real.shape[0])
            if real.shape[0] < FEATURE_DIM:
                msg = (f"FVD/KVD from {real.shape[0]} real and {fake.shape[0]} generated clips: with fewer clips "
                       f"than the {FEATURE_DIM} feature dimensions the covariances are rank-deficient and FVD "
                       f"depends strongly on the number of clips; compare only numbers computed with the same "
                       f"number (MCVD/ExtDM use 256 videos, StyleGAN-V 2048)")
                out["notes"].append(msg)
                warnings.warn(msg, stacklevel=2)
            if "fvd" in self.active:
                name = self.key("fvd")
                try:
                    info: dict = {}
                    fvd = frechet_distance(real, fake, ddof=self.protocol.fvd_cov_ddof, info=info)
                    entry = {"value": _finite(fvd), **info, "num_real_clips": int(real.shape[0]),
                             "num_fake_clips": int(fake.shape[0])}
                    if n > 1:  # ExtDM-style: one FVD per sample index, against the same real clips
                        per_sample = [frechet_distance(real, fake[j::n], ddof=self.protocol.fvd_cov_ddof)
                                      for j in range(n)]
                        entry["per_sample_index"] = {"values": per_sample, **mean_and_ci(per_sample)}
                        out["summary"][f"{name}_per_sample_mean"] = _finite(float(np.mean(per_sample)))
                    out["distribution_metrics"][name] = entry
                    out["summary"][name] = _finite(fvd)
                except ValueError as err:
                    out["skipped"]["fvd"] = str(err)
            if "kvd" in self.active:
                name = self.key("kvd")
                try:
                    info = {}
                    kvd = kernel_distance(real, fake, ids_real, ids_fake, self.protocol.kvd_num_subsets,
                                          self.protocol.kvd_subset_size, self.protocol.kvd_seed, info=info)
                    out["distribution_metrics"][name] = {"value": _finite(kvd), **info}
                    out["summary"][name] = _finite(kvd)
                except ValueError as err:
                    out["skipped"]["kvd"] = str(err)

        out["protocol"] = self._protocol_record()
        out["protocol"]["metrics_skipped"] = dict(out["skipped"])
        return out


def evaluate_predictions(real: torch.Tensor, samples: torch.Tensor, cond_frames: int | None = None,
                         metrics: str | Iterable[str] | None = None, protocol: EvalProtocol | None = None,
                         *, batch_size: int = 16, names: Sequence[str] | None = None, **evaluator_kwargs) -> dict:
    """Evaluate ``samples`` ``[B, N, C, T', H, W]`` against ``real`` ``[B, C, T, H, W]`` (in ``[-1, 1]``).

    ``cond_frames`` (if given) overrides ``protocol.cond_frames``. The videos are processed ``batch_size`` at a
    time. Further keyword arguments go to :class:`PredictionEvaluator` (``device``,
    ``lpips_model``, ``i3d``, ``i3d_path``, ``on_missing_weights``, ``keep_per_video``, ...).
    Returns the dict of :meth:`PredictionEvaluator.compute`.
    """
    protocol = protocol or EvalProtocol()
    if cond_frames is not None:
        protocol = dataclasses.replace(protocol, cond_frames=cond_frames)
    evaluator = PredictionEvaluator(metrics, protocol, **evaluator_kwargs)
    if samples.dim() == 5:
        samples = samples.unsqueeze(1)
    for i in range(0, real.shape[0], batch_size):
        evaluator.update(real[i:i + batch_size], samples[i:i + batch_size],
                         None if names is None else names[i:i + batch_size])
    return evaluator.compute()
