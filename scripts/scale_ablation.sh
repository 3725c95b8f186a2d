#!/usr/bin/env bash
# Latent-scale ablation (docs/FIRST_STAGE.md): RSVP-S2 with the scale factor measured on all codes
# (scene, object, motion: the default) against one measured on the motion codes only (the part the
# DDPM diffuses), at the same budget, on the tokens and protocol of scripts/compare_variants.sh.
#   OUT=results/reproduce_shapes RES=32 bash scripts/scale_ablation.sh   # after compare_variants.sh
# Settings (environment): as compare_variants.sh (OUT, DATA, RES, STEPS, BATCH, LR, NUM_TRAIN,
# NUM_VIDEOS, NUM_SAMPLES, SAMPLE_STEPS, METRICS, K, DEVICE). Writes $OUT/scale_ablation.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib_compare.sh"
[ -d "$OUT/tokens_k$K" ] && [ -f "$OUT/validate_s2/metrics.json" ] || {
  echo "error: run scripts/compare_variants.sh with OUT=$OUT first (tokens and the default RSVP-S2)" >&2; exit 2; }
ckpt="$OUT/runs/ddpm_cmp_s2_motionscale_${DATA}_42/model_last.pth"
timed_stage "$OUT/stage_times.txt" "train RSVP-S2 (motion-only scale)" python train.py \
    --config "configs/ddpm/rsvp_s2_${DATA}${RES}.yaml" --tokens "$OUT/tokens_k$K" --id cmp_s2_motionscale \
    "${budget[@]}" model.scale_from=motion
validate_stage "$OUT/stage_times.txt" "RSVP-S2 (motion-only scale)" "$OUT/validate_s2_motionscale" "$ckpt" \
    --num_videos "$NUM_VIDEOS" --num_samples "$NUM_SAMPLES"
python scripts/results_table.py "RSVP-S2, scale of all codes=$OUT/validate_s2/metrics.json" \
    "RSVP-S2, scale of the motion codes=$OUT/validate_s2_motionscale/metrics.json" --out "$OUT/scale_ablation.md"
