#!/usr/bin/env bash
# The main job on the built-in data, from a fresh clone:   bash scripts/quickstart.sh
#
# set-up -> first stage (VQ-VAE) [-> GAN fine-tune] -> token extraction -> RSVP-S2 DDPM -> validate,
# on the built-in `shapes` data at 32x32 (4 observed -> 8 predicted frames), sized to finish in
# about a quarter of an hour on 2 CPU cores (uses the GPU when there is one). It ends with a
# summary: where the GIFs and metrics.json are, and the model beside the copy-last-frame baseline.
#
# Re-running continues: finished stages are reused, an interrupted one resumes from its last
# checkpoint. Settings (environment): OUT (results/quickstart), FS_STEPS, GAN_STEPS, NUM_TOKENS,
# DDPM_STEPS, NUM_VIDEOS, NUM_SAMPLES, DEVICE (auto|cpu|cuda). Changing a step count of a
# finished stage continues it to the new count. GAN_STEPS=0 (the default) skips the GAN fine-tune:
# within a quarter hour of CPU it lowers PSNR more than it sharpens (docs/FIRST_STAGE.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib_stages.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"

OUT=${OUT:-results/quickstart}
FS_STEPS=${FS_STEPS:-600}; GAN_STEPS=${GAN_STEPS:-0}; NUM_TOKENS=${NUM_TOKENS:-768}
DDPM_STEPS=${DDPM_STEPS:-450}; NUM_VIDEOS=${NUM_VIDEOS:-32}; NUM_SAMPLES=${NUM_SAMPLES:-2}
DEVICE=${DEVICE:-auto}; K=4
ID=quickstart; SEED=42
first_stage_dir="$OUT/first_stage_${ID}_shapes_${SEED}"
gan_dir="$OUT/gan_${ID}_shapes_${SEED}"
ddpm_dir="$OUT/ddpm_${ID}_shapes_${SEED}"
tokens="$OUT/tokens_k$K"
validate_dir="$OUT/validate"
common=(--id "$ID" --seed "$SEED" --device "$DEVICE" --auto_resume results_dir="$OUT")
mkdir -p "$OUT"
start=$SECONDS
stage() { printf '\n=== [%s, %dm%02ds so far] %s\n' "$(date +%H:%M:%S)" $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$*"; }

stage "1/5 first stage: scene/object/motion VQ-VAE ($FS_STEPS steps)"
python main.py --exp first_stage --config configs/first_stage/warp_shapes32.yaml "${common[@]}" \
    train.max_steps="$FS_STEPS" train.sample_every=250 train.ckpt_every=250
first_model="$first_stage_dir/model_last.pth"

if [ "$GAN_STEPS" -gt 0 ]; then
  stage "2/5 GAN fine-tune ($GAN_STEPS steps)"
  python main.py --exp gan --config configs/first_stage/warp_shapes32_gan.yaml "${common[@]}" \
      --first_stage_folder "$first_stage_dir" train.max_steps="$GAN_STEPS" train.sample_every="$GAN_STEPS" \
      train.ckpt_every=50 model.gan.start_step=25
  first_model="$gan_dir/model_last.pth"
else
  stage "2/5 GAN fine-tune skipped (GAN_STEPS=0)"
fi

stage "3/5 extract tokens: $NUM_TOKENS training clips as ($K observed, 8 future) frame pairs"
python main.py --exp extract --first_model "$first_model" --device "$DEVICE" --out "$tokens" \
    model.cond_frames=$K model.splits=[train] data.shapes.num_train="$NUM_TOKENS"

stage "4/5 RSVP-S2 latent DDPM from the tokens ($DDPM_STEPS steps)"
python train.py --config configs/ddpm/rsvp_s2_shapes32.yaml --tokens "$tokens" "${common[@]}" \
    train.max_steps="$DDPM_STEPS" train.batch_size=16 train.sample_every="$DDPM_STEPS" train.ckpt_every=200 \
    train.optim.lr=5e-4 data.shapes.num_train="$NUM_TOKENS"

stage "5/5 validate: $NUM_VIDEOS test videos x $NUM_SAMPLES samples"
ckpt="$ddpm_dir/model_last.pth"
if validation_is_current "$validate_dir" "$ckpt"; then
  echo "reusing $validate_dir (newer than $ckpt)"
else
  python validate.py --ckpt "$ckpt" --out "$validate_dir" --num_videos "$NUM_VIDEOS" \
      --num_samples "$NUM_SAMPLES" --sampler dpm --steps 20 --seed 0 --device "$DEVICE"
fi

python scripts/readme_figure.py "$validate_dir" --out "$OUT/overview.gif"

stage "done"
python scripts/results_table.py "RSVP-S2 (quickstart)=$validate_dir/metrics.json"
cat <<EOF
Predicted videos (observed | truth | prediction): $validate_dir/videos/*.gif  (a few in $OUT/overview.gif)
Overview grid: $validate_dir/grid.png      Metrics: $validate_dir/metrics.json
Training logs: $first_stage_dir, $ddpm_dir (tensorboard --logdir $OUT)
Total time: $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s (without the set-up)
This is a quarter-hour CPU run that checks the whole pipeline; for numbers that compare the
models see scripts/reproduce_shapes.sh and docs/RESULTS.md.
EOF
