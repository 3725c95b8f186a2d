#!/usr/bin/env bash
# What four times the motion tokens buys and costs (docs/FIRST_STAGE.md, "Motion resolution"):
# the shipped 32x32 first stage (down_motion 2: one motion code per 4x4-pixel cell) against the same
# recipe with down_motion 1 (one per 2x2 cell), both trained FS_STEPS steps; RSVP-S2 on each at the
# same second-stage budget (scripts/compare_variants.sh's protocol); the seconds per RSVP-S2
# training step on each token folder, measured back to back (scripts/step_time.py).
#   bash scripts/motion_resolution_ablation.sh     # after scripts/reproduce_shapes.sh (reuses its runs)
# Settings (environment): BASE (results/reproduce_shapes: the shipped first stage, its tokens and
# RSVP-S2), OUT (results/compare_dm1), FS_STEPS (1500), FS_DIR (results: where the down_motion 1
# first stage is trained, as first_stage_dm1_shapes_42), as compare_variants.sh otherwise (the
# defaults below are reproduce_shapes.sh's), DOC (docs/FIRST_STAGE.md: its motion-resolution block).
set -euo pipefail
export BASE=${BASE:-results/reproduce_shapes} OUT=${OUT:-results/compare_dm1} DOC=${DOC:-docs/FIRST_STAGE.md}
export RES=32 NUM_TRAIN=${NUM_TRAIN:-1500} STEPS=${STEPS:-1200} BATCH=${BATCH:-16} LR=${LR:-5e-4} LONG_FRAMES=0
FS_STEPS=${FS_STEPS:-1500}; FS_DIR=${FS_DIR:-results}
source "$(dirname "${BASH_SOURCE[0]}")/lib_compare.sh"
[ -f "$BASE/validate_s2/metrics.json" ] || { echo "error: run scripts/reproduce_shapes.sh first ($BASE/validate_s2 is missing)" >&2; exit 2; }
export FIRST_MODEL="$FS_DIR/first_stage_dm1_shapes_42/model_last.pth"
if [ ! -f "$FIRST_MODEL" ]; then  # a run already there is used as it is (it may predate later config defaults)
  timed_stage "$OUT/stage_times.txt" "first stage, down_motion 1" python main.py --exp first_stage \
      --config configs/first_stage/warp_shapes32.yaml --id dm1 --device "$DEVICE" --auto_resume results_dir="$FS_DIR" \
      train.max_steps="$FS_STEPS" model.vqvae.down_motion=1 model.perceptual.weight=0  # no VGG file offline: off either way
fi
VARIANTS=s2 bash scripts/compare_variants.sh
python scripts/first_stage_report.py --first_model "$FIRST_MODEL" --num_clips "$NUM_VIDEOS" --cond_frames "$K" \
    --out "$OUT/first_stage_report32.json" > "$OUT/first_stage_report32.txt"
for folder in "$BASE" "$OUT"; do
  python scripts/step_time.py --config configs/ddpm/rsvp_s2_shapes32.yaml --tokens "$folder/tokens_k$K" \
      train.batch_size=$BATCH data.shapes.num_train=$NUM_TRAIN > "$folder/s2_step_time.txt"
done
python scripts/motion_resolution_table.py --shipped "$BASE" --dm1 "$OUT" --doc "$DOC"
