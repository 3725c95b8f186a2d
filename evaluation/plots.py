"""Per-horizon curves (PSNR / SSIM / LPIPS / ST-LPIPS against the predicted frame index) as a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

FRAME_METRIC_ORDER = ("psnr", "ssim", "lpips", "lpips_standin", "st_lpips")
Y_LABELS = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓",
            "lpips_standin": "LPIPS stand-in (not LPIPS)", "st_lpips": "ST-LPIPS ↓ (not LPIPS)"}


def plot_curves(runs: Mapping[str, dict], path: str | Path, title: str | None = None) -> Path | None:
    """Draw the ``curves`` of one or more results into one PNG; returns the path (None if nothing to draw).

    ``runs`` maps a label (e.g. ``"model"``, ``"copy last frame"``) to the ``curves`` dict of
    :meth:`evaluation.protocol.PredictionEvaluator.compute` (or to the whole result dict). Each
    metric gets a panel; solid lines are the mean over samples, dashed lines best-of-N (drawn only
    when a run has more than one sample per video, i.e. when the two differ).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    curves_by_run = {label: (run.get("curves", run) if isinstance(run, dict) else run) for label, run in runs.items()}
    metrics = [m for m in FRAME_METRIC_ORDER if any(m in c for c in curves_by_run.values())]
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, (label, curves) in enumerate(curves_by_run.items()):
            if metric not in curves:
                continue
            x = curves.get("horizon") or list(range(1, len(curves[metric]["mean"]) + 1))
            color = f"C{i}" if len(curves_by_run) <= 10 else plt.get_cmap("tab20")(i % 20)
            mean, best = curves[metric]["mean"], curves[metric].get("best_of_n")
            ax.plot(x, mean, color=color, marker="o", ms=3, label=f"{label} (mean)")
            if best is not None and best != mean:
                ax.plot(x, best, color=color, ls="--", marker="x", ms=3, label=f"{label} (best of N)")
        ax.set_xlabel("predicted frame (horizon)")
        ax.set_ylabel(Y_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    if len(curves_by_run) <= 4:
        axes[0][0].legend(fontsize=7)
    else:  # many runs: one legend beside the panels, where it hides no curve
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
