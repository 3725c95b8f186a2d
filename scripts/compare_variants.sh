#!/usr/bin/env bash
# Train RSVP-S2, RSVP-S1 and RSVP-M at equal budget on the same tokens and compare them with
# the copy-last-frame baseline under one protocol.
#   FIRST_MODEL=results/gan_main_shapes_42/model_last.pth RES=32 bash scripts/compare_variants.sh
# Settings (environment): DATA (shapes), RES (configs/ddpm/rsvp_<net>_<DATA><RES>.yaml; 64), STEPS
# (DDPM steps per variant), BATCH, LR, NUM_TRAIN (shapes training clips to extract), NUM_VIDEOS,
# NUM_SAMPLES, SAMPLE_STEPS, OUT (results/compare_<data>), DEVICE. Re-running reuses finished
# stages. Appends '<stage> <seconds>' lines to $OUT/stage_times.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib_stages.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
: "${FIRST_MODEL:?set FIRST_MODEL to a first-stage checkpoint}"
DATA=${DATA:-shapes}; RES=${RES:-64}; STEPS=${STEPS:-2000}; BATCH=${BATCH:-16}; NUM_TRAIN=${NUM_TRAIN:-2000}
NUM_VIDEOS=${NUM_VIDEOS:-64}; NUM_SAMPLES=${NUM_SAMPLES:-4}; SAMPLE_STEPS=${SAMPLE_STEPS:-20}
OUT=${OUT:-results/compare_${DATA}}; K=${K:-4}; DEVICE=${DEVICE:-auto}
LR_OVERRIDE=(); [ -n "${LR:-}" ] && LR_OVERRIDE=(train.optim.lr="$LR")
mkdir -p "$OUT"
timed() { timed_stage "$OUT/stage_times.txt" "$@"; }
timed "extract tokens" python main.py --exp extract --first_model "$FIRST_MODEL" --data "$DATA" --out "$OUT/tokens_k$K" \
    --device "$DEVICE" model.cond_frames=$K data.shapes.num_train=$NUM_TRAIN model.splits=[train]
rows=()
for net in s2 s1 m; do
  name="RSVP-$(echo $net | tr a-z A-Z)"
  ckpt="$OUT/runs/ddpm_cmp_${net}_${DATA}_42/model_last.pth"
  timed "train $name" python train.py --config "configs/ddpm/rsvp_${net}_${DATA}${RES}.yaml" --tokens "$OUT/tokens_k$K" \
      --id "cmp_$net" --device "$DEVICE" --auto_resume results_dir="$OUT/runs" train.max_steps=$STEPS \
      train.batch_size=$BATCH data.shapes.num_train=$NUM_TRAIN train.sample_every=$STEPS train.ckpt_every=250 \
      "${LR_OVERRIDE[@]}"
  if validation_is_current "$OUT/validate_$net" "$ckpt"; then
    echo "reusing $OUT/validate_$net (newer than $ckpt)"
  else
    timed "validate $name" python validate.py --ckpt "$ckpt" --num_videos "$NUM_VIDEOS" --num_samples "$NUM_SAMPLES" \
        --sampler dpm --steps "$SAMPLE_STEPS" --seed 0 --device "$DEVICE" --out "$OUT/validate_$net"
  fi
  rows+=("$name=$OUT/validate_$net/metrics.json")
done
python scripts/results_table.py "${rows[@]}" --out "$OUT/table.md"
