"""Is the scene/object/motion decomposition real? Pictures and numbers, written with the samples.

Pictures (one GIF, left to right): input | reconstruction | scene only (merge gate forced to the
scene) | objects only (gate forced to the objects) | this clip's scene and objects moved by the
*next* clip's motion.

Collapse diagnostics (any data):

* ``decomp/temporal_variance_ratio`` — how much the reconstruction varies over time, as a
  fraction of how much the input does (per-pixel variance over T, averaged). A decoder that emits
  the same frame for every t scores about 0, a perfect one 1.
* ``decomp/other_motion_psnr`` — PSNR between the reconstruction and the decoding of the same
  scene and objects with *another clip's* motion codes. Low means the decoder depends on motion.
* ``decomp/temporal_mean_psnr`` — PSNR of the input's temporal mean against the input: the best
  any decoder that ignores motion can reach (the bound a working first stage must beat).

``decomp/motion_sensitivity_psnr`` — PSNR between the reconstruction and the decoding of the same
scene and objects with *random* codebook motion. High values (above ~40 dB) mean the decoder
ignores its motion tokens: no second stage that predicts motion can then change the frames.

Numbers, when the data provides ground truth (the built-in ``shapes`` data does):

* ``decomp/scene_bg_psnr`` vs ``decomp/recon_bg_psnr`` — PSNR against the true, sprite-free
  background. A scene stream that holds only the scene beats the full reconstruction here
  (which contains the sprites); if it does not, the sprites live in the scene stream.
* ``decomp/swap_iou_motion_src`` vs ``decomp/swap_iou_appearance_src`` — where the motion-swapped
  clip differs from the true background of its scene (its foreground; without a true background,
  from its own scene-only frames), compared by IoU with the sprite masks of the clip that gave
  the motion and of the clip that gave scene and objects. Real motion tokens move the sprites
  along the motion clip's paths: the first IoU is the larger. ``decomp/recon_iou``, the same
  IoU for the unswapped reconstruction and its own masks, is the ceiling.
"""
from __future__ import annotations

import torch
from einops import repeat

from evaluation.frame_metrics import psnr_per_frame

# A pixel belongs to the foreground of a decoded clip when it differs from the scene-only
# decoding by more than this (in [-1, 1] units, strongest channel): a tenth of the range.
FOREGROUND_THRESHOLD = 0.2


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter = (a & b).sum().float()
    union = (a | b).sum().float()
    return inter / union.clamp(min=1)


# Below this temporal-variance ratio (reconstruction / input) the log warns of motion collapse.
COLLAPSE_RATIO = 0.3


def motion_collapse_warnings(scalars: dict[str, float]) -> list[str]:
    """The warning a first stage's sample step logs when its reconstructions stop moving."""
    ratio = scalars.get("decomp/temporal_variance_ratio")
    if ratio is not None and ratio < COLLAPSE_RATIO:
        return [f"motion collapse: the reconstruction varies over time {ratio:.2f}x as much as the input "
                f"(< {COLLAPSE_RATIO}); the decoder is ignoring motion (docs/FIRST_STAGE.md)"]
    return []


def temporal_variance_ratio(recon: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel variance over T of ``recon`` over that of ``video`` (``[B, C, T, H, W]``)."""
    return recon.float().var(dim=2).mean() / video.float().var(dim=2).mean().clamp(min=1e-12)


def temporal_mean_psnr(video: torch.Tensor) -> torch.Tensor:
    """PSNR of every frame against the clip's temporal mean: the motion-blind decoder's bound."""
    return psnr_per_frame(video.mean(dim=2, keepdim=True).expand_as(video), video).mean()


@torch.no_grad()
def decomposition_report(model, batch: dict, device: torch.device,
                         anchor: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    video = batch["video"].to(device)
    codes = model.encode(video, anchor=anchor)["codes"]
    anchor = video[:, :, 0] if anchor is None else anchor
    recon = model.decode(codes, anchor=anchor).clamp(-1, 1)
    scene_only = model.decode(codes, force_gate=1.0).clamp(-1, 1)
    objects_only = model.decode(codes, force_gate=0.0).clamp(-1, 1)
    # Motion from the next clip of the batch (a batch of one swaps with itself).
    swapped_codes = {**codes, "motion": codes["motion"].roll(1, dims=0)}
    swapped = model.decode(swapped_codes, anchor=anchor).clamp(-1, 1)  # the appearance source's anchor
    out: dict[str, torch.Tensor] = {
        "decomposition": torch.cat([video, recon, scene_only, objects_only, swapped], dim=-1),
        "decomp/temporal_variance_ratio": temporal_variance_ratio(recon, video),
        "decomp/temporal_mean_psnr": temporal_mean_psnr(video),
    }
    if video.shape[0] > 1:
        out["decomp/other_motion_psnr"] = psnr_per_frame(swapped, recon).mean()
    # Does the decoder use its motion tokens at all? Decode with random codebook motion instead.
    b, _, t, h, w = codes["motion"].shape
    motion_ids = torch.randint(0, model.codebook_size, (b, t, h, w), generator=torch.Generator().manual_seed(0))
    motion_ids = motion_ids.to(device)
    random_motion = model.codes_from_indices({"motion": motion_ids})["motion"]
    out["decomp/motion_sensitivity_psnr"] = psnr_per_frame(
        model.decode({**codes, "motion": random_motion}, anchor=anchor).clamp(-1, 1), recon).mean()
    reference = scene_only
    if "background" in batch:
        background = repeat(batch["background"].to(device), "b c h w -> b c t h w", t=video.shape[2])
        out["decomp/scene_bg_psnr"] = psnr_per_frame(scene_only, background).mean()
        out["decomp/recon_bg_psnr"] = psnr_per_frame(recon, background).mean()
        reference = background
    if "mask" in batch and video.shape[0] > 1:
        sprites = batch["mask"].to(device) > 0  # [B, T, H, W]

        def foreground(frames: torch.Tensor) -> torch.Tensor:
            return (frames - reference).abs().amax(dim=1) > FOREGROUND_THRESHOLD

        out["decomp/swap_iou_motion_src"] = _iou(foreground(swapped), sprites.roll(1, dims=0))
        out["decomp/swap_iou_appearance_src"] = _iou(foreground(swapped), sprites)
        out["decomp/recon_iou"] = _iou(foreground(recon), sprites)  # what a perfect swap would reach
    return out
