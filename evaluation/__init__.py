"""Video-prediction metrics under one explicit protocol (see docs/EVALUATION.md).

PSNR, SSIM (frame_metrics), LPIPS (lpips_metric), ST-LPIPS (st_lpips; not comparable with LPIPS),
FVD and KVD (fvd), the protocol that aggregates them (protocol) and the
``python -m evaluation.evaluate`` CLI (evaluate).
"""
from evaluation.fvd import (
    I3DFeatures,
    build_i3d_standin,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_distance,
    load_i3d,
    mmd2_unbiased,
    resolve_i3d_path,
    save_i3d_standin,
)
from evaluation.frame_metrics import psnr_per_frame, ssim_per_frame
from evaluation.lpips_metric import build_lpips, lpips_per_frame
from evaluation.protocol import (
    ALL_METRICS,
    DEFAULT_METRICS,
    EvalProtocol,
    PredictionEvaluator,
    copy_last_frame_baseline,
    evaluate_predictions,
)
from evaluation.st_lpips import STLPIPS, build_st_lpips
from evaluation.weights import MissingWeightsError

__all__ = [
    "ALL_METRICS", "DEFAULT_METRICS", "EvalProtocol", "I3DFeatures", "MissingWeightsError", "PredictionEvaluator",
    "STLPIPS", "build_i3d_standin", "build_lpips", "build_st_lpips", "copy_last_frame_baseline",
    "evaluate_predictions", "frechet_distance", "frechet_distance_from_stats", "kernel_distance", "load_i3d",
    "lpips_per_frame", "mmd2_unbiased", "psnr_per_frame", "resolve_i3d_path", "save_i3d_standin", "ssim_per_frame",
]
