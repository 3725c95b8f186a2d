#!/usr/bin/env bash
# Latent-scale ablation (docs/FIRST_STAGE.md): RSVP-S2 with the scale factor measured on all codes
# (scene, object, motion: the default) against one measured on the motion codes only (the part the
# DDPM diffuses), at the same budget, on the tokens and protocol of scripts/compare_variants.sh.
#   OUT=results/reproduce_shapes RES=32 bash scripts/scale_ablation.sh   # after compare_variants.sh
# Settings (environment): as compare_variants.sh (OUT, DATA, RES, STEPS, BATCH, LR, NUM_TRAIN,
# NUM_VIDEOS, NUM_SAMPLES, SAMPLE_STEPS, METRICS, K, DEVICE). Writes $OUT/scale_ablation.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib_stages.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
DATA=${DATA:-shapes}; RES=${RES:-64}; STEPS=${STEPS:-2000}; BATCH=${BATCH:-16}; NUM_TRAIN=${NUM_TRAIN:-2000}
NUM_VIDEOS=${NUM_VIDEOS:-64}; NUM_SAMPLES=${NUM_SAMPLES:-4}; SAMPLE_STEPS=${SAMPLE_STEPS:-20}
METRICS=${METRICS:-psnr,ssim,lpips,st_lpips,fvd,kvd}; OUT=${OUT:-results/compare_${DATA}}; K=${K:-4}; DEVICE=${DEVICE:-auto}
LR_OVERRIDE=(); [ -n "${LR:-}" ] && LR_OVERRIDE=(train.optim.lr="$LR")
[ -d "$OUT/tokens_k$K" ] && [ -f "$OUT/validate_s2/metrics.json" ] || {
  echo "error: run scripts/compare_variants.sh with OUT=$OUT first (tokens and the default RSVP-S2)" >&2; exit 2; }
ckpt="$OUT/runs/ddpm_cmp_s2_motionscale_${DATA}_42/model_last.pth"
timed_stage "$OUT/stage_times.txt" "train RSVP-S2 (motion-only scale)" python train.py \
    --config "configs/ddpm/rsvp_s2_${DATA}${RES}.yaml" --tokens "$OUT/tokens_k$K" --id cmp_s2_motionscale \
    --device "$DEVICE" --auto_resume results_dir="$OUT/runs" train.max_steps=$STEPS train.batch_size=$BATCH \
    data.shapes.num_train=$NUM_TRAIN train.sample_every=$STEPS train.ckpt_every=250 model.scale_from=motion \
    "${LR_OVERRIDE[@]}"
validate_stage "$OUT/stage_times.txt" "RSVP-S2 (motion-only scale)" "$OUT/validate_s2_motionscale" "$ckpt" \
    --num_videos "$NUM_VIDEOS" --num_samples "$NUM_SAMPLES"
python scripts/results_table.py "RSVP-S2, scale of all codes=$OUT/validate_s2/metrics.json" \
    "RSVP-S2, scale of the motion codes=$OUT/validate_s2_motionscale/metrics.json" --out "$OUT/scale_ablation.md"
