#!/usr/bin/env bash
# Train RSVP-S2, RSVP-S1 and RSVP-M at equal budget on the same tokens (and, given their
# autoencoders, PVDM, LVDM and the tubelet transformer at the same budget) and compare them with the copy-last-frame baseline under
# one protocol; optionally the long-horizon rollouts of every method.
#   FIRST_MODEL=results/gan_main_shapes_42/model_last.pth RES=32 bash scripts/compare_variants.sh
# Settings (environment): DATA (shapes), RES (configs/ddpm/rsvp_<net>_<DATA><RES>.yaml; 64), STEPS
# (DDPM steps per variant), BATCH, LR, NUM_TRAIN (shapes training clips to extract), NUM_VIDEOS,
# NUM_SAMPLES, SAMPLE_STEPS, METRICS (validate.py --metrics), OUT (results/compare_<data>), DEVICE,
# PVDM_FIRST_MODEL / LVDM_FIRST_MODEL (a baseline's autoencoder checkpoint: that baseline joins with
# configs/ddpm/<pvdm|lvdm>_<DATA><RES>.yaml, once with its own diffusion settings and once with RSVP's:
# v prediction, cosine schedule),
# TUBELET_FIRST_MODEL (an FSQ tubelet autoencoder: the tubelet transformer joins with
# configs/transformer/tubelet_<DATA><RES>.yaml), VARIANTS (a subset of
# "s2 s1 m pvdm pvdm_v lvdm lvdm_v tubelet", the default),
# LONG_FRAMES (0: none; else every method also predicts this many frames, rolled out clip by clip,
# LONG_SAMPLES samples per video, plotted by scripts/long_horizon.py into $OUT/long_horizon.{json,png,txt}).
# Re-running reuses finished stages. Appends '<stage> <seconds>' lines (timed_stage, scripts/lib_stages.sh) to $OUT/stage_times.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib_compare.sh"
: "${FIRST_MODEL:?set FIRST_MODEL to a first-stage checkpoint}"
timed() { timed_stage "$OUT/stage_times.txt" "$@"; }
timed "extract tokens" python main.py --exp extract --first_model "$FIRST_MODEL" --data "$DATA" --out "$OUT/tokens_k$K" \
    --device "$DEVICE" model.cond_frames=$K data.shapes.num_train=$NUM_TRAIN model.splits=[train]
rows=(); longs=()
# <baseline>: its own diffusion settings (PVDM, LVDM: eps prediction, linear schedule);
# <baseline>_v: RSVP's (v prediction, cosine schedule). A baseline runs when its autoencoder is given.
for net in ${VARIANTS:-s2 s1 m pvdm pvdm_v lvdm lvdm_v tubelet}; do
  method=${net%_v}
  if [ "$method" = pvdm ] || [ "$method" = lvdm ]; then
    first_var=$(echo "${method}_FIRST_MODEL" | tr a-z A-Z); first_model=${!first_var:-}
    [ -n "$first_model" ] || continue
    name=$(echo "$method" | tr a-z A-Z); diffusion=()
    [ "$net" != "$method" ] && { name="$name (v, cosine)"; diffusion=(model.diffusion.prediction=v model.diffusion.schedule=cosine); }
    timed "train $name" python main.py --exp ddpm --config "configs/ddpm/${method}_${DATA}${RES}.yaml" \
        --first_model "$first_model" --id "cmp_$net" "${budget[@]}" model.cond_frames=$K "${diffusion[@]}"
  elif [ "$net" = tubelet ]; then  # the FSQ tubelet autoencoder's tokens, a causal ALiBi transformer
    [ -n "${TUBELET_FIRST_MODEL:-}" ] || continue
    name="Tubelet transformer"
    timed "train $name" python main.py --exp transformer --config "configs/transformer/tubelet_${DATA}${RES}.yaml" \
        --first_model "$TUBELET_FIRST_MODEL" --id "cmp_$net" "${budget[@]}" model.cond_frames=$K
  else
    name="RSVP-$(echo $net | tr a-z A-Z)"
    timed "train $name" python train.py --config "configs/ddpm/rsvp_${net}_${DATA}${RES}.yaml" --tokens "$OUT/tokens_k$K" \
        --id "cmp_$net" "${budget[@]}"
  fi
  experiment=ddpm; [ "$net" = tubelet ] && experiment=transformer
  ckpt="$OUT/runs/${experiment}_cmp_${net}_${DATA}_42/model_last.pth"
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
