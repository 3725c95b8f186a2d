#!/usr/bin/env bash
# Train RSVP-S2, RSVP-S1 and RSVP-M at equal budget on the same tokens (and, given a PVDM
# autoencoder, PVDM at the same budget) and compare them with the copy-last-frame baseline under
# one protocol; optionally the long-horizon rollouts of every method.
#   FIRST_MODEL=results/gan_main_shapes_42/model_last.pth RES=32 bash scripts/compare_variants.sh
# Settings (environment): DATA (shapes), RES (configs/ddpm/rsvp_<net>_<DATA><RES>.yaml; 64), STEPS
# (DDPM steps per variant), BATCH, LR, NUM_TRAIN (shapes training clips to extract), NUM_VIDEOS,
# NUM_SAMPLES, SAMPLE_STEPS, METRICS (validate.py --metrics), OUT (results/compare_<data>), DEVICE,
# PVDM_FIRST_MODEL (a PVDM autoencoder checkpoint: PVDM joins with configs/ddpm/pvdm_<DATA><RES>.yaml, once
# with its own diffusion settings and once with RSVP's: v prediction, cosine schedule),
# LONG_FRAMES (0: none; else every method also predicts this many frames, rolled out clip by clip,
# LONG_SAMPLES samples per video, plotted by scripts/long_horizon.py into $OUT/long_horizon.{json,png,txt}).
# Re-running reuses finished stages. Appends '<stage> <seconds>' lines to $OUT/stage_times.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib_stages.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
: "${FIRST_MODEL:?set FIRST_MODEL to a first-stage checkpoint}"
DATA=${DATA:-shapes}; RES=${RES:-64}; STEPS=${STEPS:-2000}; BATCH=${BATCH:-16}; NUM_TRAIN=${NUM_TRAIN:-2000}
NUM_VIDEOS=${NUM_VIDEOS:-64}; NUM_SAMPLES=${NUM_SAMPLES:-4}; SAMPLE_STEPS=${SAMPLE_STEPS:-20}
METRICS=${METRICS:-psnr,ssim,lpips,st_lpips,fvd,kvd}; LONG_FRAMES=${LONG_FRAMES:-0}; LONG_SAMPLES=${LONG_SAMPLES:-1}
OUT=${OUT:-results/compare_${DATA}}; K=${K:-4}; DEVICE=${DEVICE:-auto}; PVDM_FIRST_MODEL=${PVDM_FIRST_MODEL:-}
LR_OVERRIDE=(); [ -n "${LR:-}" ] && LR_OVERRIDE=(train.optim.lr="$LR")
mkdir -p "$OUT"
timed() { timed_stage "$OUT/stage_times.txt" "$@"; }
# The same budget for every second stage: steps, batch, learning rate, training clips, checkpoints.
budget=(--device "$DEVICE" --auto_resume results_dir="$OUT/runs" train.max_steps=$STEPS train.batch_size=$BATCH
        data.shapes.num_train=$NUM_TRAIN train.sample_every=$STEPS train.ckpt_every=250 "${LR_OVERRIDE[@]}")
timed "extract tokens" python main.py --exp extract --first_model "$FIRST_MODEL" --data "$DATA" --out "$OUT/tokens_k$K" \
    --device "$DEVICE" model.cond_frames=$K data.shapes.num_train=$NUM_TRAIN model.splits=[train]
rows=(); longs=()
# pvdm: PVDM's own diffusion (eps prediction, linear schedule); pvdm_v: RSVP's (v prediction, cosine).
for net in s2 s1 m pvdm pvdm_v; do
  if [ "${net%_v}" = pvdm ]; then
    [ -n "$PVDM_FIRST_MODEL" ] || continue
    name=PVDM; diffusion=()
    [ "$net" = pvdm_v ] && { name="PVDM (v, cosine)"; diffusion=(model.diffusion.prediction=v model.diffusion.schedule=cosine); }
    timed "train $name" python main.py --exp ddpm --config "configs/ddpm/pvdm_${DATA}${RES}.yaml" \
        --first_model "$PVDM_FIRST_MODEL" --id "cmp_$net" "${budget[@]}" model.cond_frames=$K "${diffusion[@]}"
  else
    name="RSVP-$(echo $net | tr a-z A-Z)"
    timed "train $name" python train.py --config "configs/ddpm/rsvp_${net}_${DATA}${RES}.yaml" --tokens "$OUT/tokens_k$K" \
        --id "cmp_$net" "${budget[@]}"
  fi
  ckpt="$OUT/runs/ddpm_cmp_${net}_${DATA}_42/model_last.pth"
  validate_stage "$OUT/stage_times.txt" "$name" "$OUT/validate_$net" "$ckpt" --num_videos "$NUM_VIDEOS" --num_samples "$NUM_SAMPLES"
  rows+=("$name=$OUT/validate_$net/metrics.json")
  if [ "$LONG_FRAMES" -gt 0 ]; then
    validate_stage "$OUT/stage_times.txt" "$name, $LONG_FRAMES frames" "$OUT/long_$net" "$ckpt" --num_videos "$NUM_VIDEOS" \
        --num_samples "$LONG_SAMPLES" --pred_frames "$LONG_FRAMES"
    longs+=("$name=$OUT/long_$net/metrics.json")
  fi
done
python scripts/results_table.py "${rows[@]}" --out "$OUT/table.md"
if [ "$LONG_FRAMES" -gt 0 ]; then
  python scripts/long_horizon.py "${longs[@]}" --json "$OUT/long_horizon.json" --png "$OUT/long_horizon.png" \
      | tee "$OUT/long_horizon.txt"
fi
