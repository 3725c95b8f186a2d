#!/usr/bin/env bash
# What a first-stage variant buys and costs the second stage (docs/FIRST_STAGE.md, "Motion resolution"):
# the shipped 32x32 first stage (down_motion 2: one motion code per 4x4-pixel cell) against the same
# recipe with down_motion 1 (one per 2x2 cell) and with content keys for its warp (warp_keys: object,
# the same tokens), all trained FS_STEPS steps; RSVP-S2 on each at the same second-stage budget
# (scripts/compare_variants.sh's protocol); the seconds per RSVP-S2 training step on each token
# folder, measured back to back (scripts/step_time.py). Finished stages and reports are reused.
#   bash scripts/motion_resolution_ablation.sh     # after scripts/reproduce_shapes.sh (reuses its runs)
# Settings (environment): BASE (results/reproduce_shapes: the shipped first stage, its tokens and
# RSVP-S2), OUT (results/compare_dm1), KEYS_OUT (results/compare_keys), FS_STEPS (1500), FS_DIR
# (results: where the variants' first stages are trained, as first_stage_{dm1,keys}_shapes_42), as
# compare_variants.sh otherwise (the
# defaults below are reproduce_shapes.sh's), DOC (docs/FIRST_STAGE.md: its motion-resolution block).
set -euo pipefail
export BASE=${BASE:-results/reproduce_shapes} OUT=${OUT:-results/compare_dm1} DOC=${DOC:-docs/FIRST_STAGE.md}
export RES=32 NUM_TRAIN=${NUM_TRAIN:-1500} STEPS=${STEPS:-1200} BATCH=${BATCH:-16} LR=${LR:-5e-4} LONG_FRAMES=0
FS_STEPS=${FS_STEPS:-1500}; FS_DIR=${FS_DIR:-results}
source "$(dirname "${BASH_SOURCE[0]}")/lib_compare.sh"
[ -f "$BASE/validate_s2/metrics.json" ] || { echo "error: run scripts/reproduce_shapes.sh first ($BASE/validate_s2 is missing)" >&2; exit 2; }
# variant <id> <comparison folder> <first-stage overrides...>: train (unless there), compare, report, time
variant() {
  local id=$1 out=$2; shift 2
  local first_model="$FS_DIR/first_stage_${id}_shapes_42/model_last.pth"
  mkdir -p "$out"
  if [ ! -f "$first_model" ]; then  # a run already there is used as it is (it may predate later config defaults)
    timed_stage "$out/stage_times.txt" "first stage, $id" python main.py --exp first_stage \
        --config configs/first_stage/warp_shapes32.yaml --id "$id" --device "$DEVICE" --auto_resume \
        results_dir="$FS_DIR" train.max_steps="$FS_STEPS" "$@"
  fi
  FIRST_MODEL="$first_model" OUT="$out" VARIANTS=s2 bash scripts/compare_variants.sh
  [ -f "$out/first_stage_report32.json" ] || python scripts/first_stage_report.py --first_model "$first_model" \
      --num_clips "$NUM_VIDEOS" --cond_frames "$K" --out "$out/first_stage_report32.json" > "$out/first_stage_report32.txt"
}
step_time() {  # always measured again, all folders back to back: the ratios compare under one load
  python scripts/step_time.py --config configs/ddpm/rsvp_s2_shapes32.yaml \
      --tokens "$1/tokens_k$K" train.batch_size=$BATCH data.shapes.num_train=$NUM_TRAIN > "$1/s2_step_time.txt"
}
KEYS_OUT=${KEYS_OUT:-results/compare_keys}
variant dm1 "$OUT" model.vqvae.down_motion=1 model.perceptual.weight=0  # no VGG file offline: off either way
variant keys "$KEYS_OUT" model.vqvae.warp_keys=object
for folder in "$BASE" "$OUT" "$KEYS_OUT"; do step_time "$folder"; done
python scripts/motion_resolution_table.py --shipped "$BASE" --dm1 "$OUT" \
    --row "down_motion 2 + warp_keys: object: 8x8 motion tokens per frame=$KEYS_OUT" --doc "$DOC"
