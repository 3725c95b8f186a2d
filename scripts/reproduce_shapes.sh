#!/usr/bin/env bash
# Reproduce docs/RESULTS.md: the whole pipeline on the built-in `shapes` data at 32x32
# (4 observed -> 8 predicted frames): the first stage (configs/first_stage/warp_shapes32.yaml) and
# its checklist (scripts/first_stage_report.py), PVDM's, LVDM's and the FSQ tubelet autoencoders at
# the same step budget (configs/first_stage/{pvdm,lvdm,tubelet}_shapes32.yaml), then RSVP-S2,
# RSVP-S1, RSVP-M, PVDM and LVDM (the diffusion baselines with their own diffusion settings and with
# RSVP's) and the tubelet transformer trained at
# equal budget and validated under one protocol beside the copy-last-frame baseline, and every
# method's long rollout (4 observed -> LONG_FRAMES predicted; scripts/long_horizon.py), the
# latent-scale ablation (scripts/scale_ablation.sh) and LVDM's long-horizon ablation
# (scripts/lvdm_ablation.sh: hierarchy, perturbation, guidance);
# the 64x64, 16-frame first stage (FS64_CONFIG, FS64_STEPS; 0: none) and the 32x32 first stage with
# content keys and one motion per 2x2-pixel cell (KEYS_CONFIG, KEYS_STEPS; 0: none), each optionally
# followed by more steps from its weights at a constant 2e-4 (FS64_FINETUNE_STEPS, KEYS_FINETUNE_STEPS),
# with its checklist and a second one decoded at a warp temperature (FS64_TEMPERATURE,
# KEYS_TEMPERATURE; 1 or 0: none; auto: the highest of TEMPERATURES whose temporal-variance ratio
# reaches 0.8 on the NUM_VIDEOS test clips after the scored ones, scripts/warp_hardening.py).
#   bash scripts/reproduce_shapes.sh   # about 13 hours on 2 CPU cores, 7 of them the 64x64 stage;
#                                      # FS64_STEPS=0 KEYS_STEPS=0: about 3.5 hours (per-stage wall
#                                      # times: docs/RESULTS.md); far less on a GPU
# Settings (environment): OUT (results/reproduce_shapes), FS_STEPS, GAN_STEPS (0: no GAN fine-tune),
# FS64_STEPS (3000), FS64_CONFIG (configs/first_stage/warp_keys_fine_shapes64.yaml),
# KEYS_STEPS (6000), KEYS_CONFIG (configs/first_stage/warp_keys_fine_shapes32.yaml),
# FS64_FINETUNE_STEPS (0), FS64_TEMPERATURE (auto), KEYS_FINETUNE_STEPS (0), KEYS_TEMPERATURE (auto),
# TEMPERATURES (0.8,0.75,...,0.3),
# NUM_TRAIN, STEPS (DDPM steps per variant), NUM_VIDEOS,
# NUM_SAMPLES, LONG_FRAMES (32; 0: no long rollouts), LONG_SAMPLES (1), DEVICE, DOC (docs/RESULTS.md,
# its curves beside it as long_horizon.png), README (README.md, whose results block and
# first-stage-32/64 blocks, scripts/first_stage_table.py, are replaced; README= leaves it alone).
# The defaults are the recipes docs/RESULTS.md reports (its Command line gives the settings it was made with).
# Re-running reuses finished stages and resumes an interrupted one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib_stages.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
export OUT=${OUT:-results/reproduce_shapes}
FS_STEPS=${FS_STEPS:-1500}; GAN_STEPS=${GAN_STEPS:-0}; FS64_STEPS=${FS64_STEPS:-3000}; KEYS_STEPS=${KEYS_STEPS:-6000}; KEYS_TEMPERATURE=${KEYS_TEMPERATURE:-auto}; DEVICE=${DEVICE:-auto}
FS64_CONFIG=${FS64_CONFIG:-configs/first_stage/warp_keys_fine_shapes64.yaml}; KEYS_CONFIG=${KEYS_CONFIG:-configs/first_stage/warp_keys_fine_shapes32.yaml}
KEYS_FINETUNE_STEPS=${KEYS_FINETUNE_STEPS:-0}; FS64_FINETUNE_STEPS=${FS64_FINETUNE_STEPS:-0}; FS64_TEMPERATURE=${FS64_TEMPERATURE:-auto}
TEMPERATURES=${TEMPERATURES:-0.8,0.75,0.7,0.65,0.6,0.55,0.5,0.45,0.4,0.35,0.3}
DOC=${DOC:-docs/RESULTS.md}; README=${README-README.md}
export NUM_TRAIN=${NUM_TRAIN:-1500} STEPS=${STEPS:-1200} NUM_VIDEOS=${NUM_VIDEOS:-64} NUM_SAMPLES=${NUM_SAMPLES:-4}
export LONG_FRAMES=${LONG_FRAMES:-32} LONG_SAMPLES=${LONG_SAMPLES:-1}
export DEVICE DATA=shapes RES=32 BATCH=16 LR=5e-4 K=4
common=(--device "$DEVICE" --auto_resume results_dir="$OUT")
for block in results first-stage-32 first-stage-64; do  # fail now, not after hours of training
  if [ -n "$README" ] && ! { grep -qF "<!-- $block:start -->" "$README" && grep -qF "<!-- $block:end -->" "$README"; } 2>/dev/null; then
    echo "error: $README has no <!-- $block:start --> ... <!-- $block:end --> block to fill (README= leaves the README alone)" >&2
    exit 2
  fi
done
mkdir -p "$OUT"
source "$(dirname "${BASH_SOURCE[0]}")/lib_first_stage.sh"
first_stage "first stage" configs/first_stage/warp_shapes32.yaml reproduce "$FS_STEPS"
export FIRST_MODEL="$OUT/first_stage_reproduce_shapes_42/model_last.pth"
base_label="warp_shapes32, $FS_STEPS steps (the predictors' first stage)"
if [ "$GAN_STEPS" -gt 0 ]; then
  timed_stage "$OUT/stage_times.txt" "GAN fine-tune" python main.py --exp gan --config configs/first_stage/warp_shapes32_gan.yaml \
      "${common[@]}" --id reproduce --first_stage_folder "$OUT/first_stage_reproduce_shapes_42" train.max_steps="$GAN_STEPS" train.ckpt_every=100
  first_runs+=("$OUT/gan_reproduce_shapes_42")
  FIRST_MODEL="$OUT/gan_reproduce_shapes_42/model_last.pth"
  base_label="$base_label, then $GAN_STEPS GAN steps"
fi
rows32=(); rows64=()
checklist "$FIRST_MODEL" first_stage_report32 "First stage at 32x32, 8 frames" rows32 "$base_label"
if [ "$FS64_STEPS" -gt 0 ]; then
  checked_first_stage "First stage at 64x64, 16 frames ($FS64_CONFIG)" "$FS64_CONFIG" reproduce64 "$FS64_STEPS" \
      "$FS64_FINETUNE_STEPS" "$FS64_TEMPERATURE" first_stage_report64 rows64
fi
if [ "$KEYS_STEPS" -gt 0 ]; then
  checked_first_stage "First stage at 32x32, 8 frames, with content keys and one motion per 2x2-pixel cell ($KEYS_CONFIG)" \
      "$KEYS_CONFIG" reproduce_keys "$KEYS_STEPS" "$KEYS_FINETUNE_STEPS" "$KEYS_TEMPERATURE" first_stage_report32_keys rows32
fi
first_stage "first stage PVDM" configs/first_stage/pvdm_shapes32.yaml reproduce_pvdm "$FS_STEPS"
export PVDM_FIRST_MODEL="$OUT/first_stage_reproduce_pvdm_shapes_42/model_last.pth"
first_stage "first stage LVDM" configs/first_stage/lvdm_shapes32.yaml reproduce_lvdm "$FS_STEPS"
export LVDM_FIRST_MODEL="$OUT/first_stage_reproduce_lvdm_shapes_42/model_last.pth"
first_stage "first stage tubelet" configs/first_stage/tubelet_shapes32.yaml reproduce_tubelet "$FS_STEPS"
export TUBELET_FIRST_MODEL="$OUT/first_stage_reproduce_tubelet_shapes_42/model_last.pth"
bash scripts/compare_variants.sh
bash scripts/scale_ablation.sh
reports+=(--attach "Latent scale: measured on all codes or on the motion codes only (scripts/scale_ablation.sh)=$OUT/scale_ablation.md")
if [ "$LONG_FRAMES" -gt 0 ]; then
  bash scripts/lvdm_ablation.sh
  cp "$OUT/lvdm_ablation/ablation.png" "$(dirname "$DOC")/lvdm_ablation.png"
  reports+=(--attach "LVDM ablation: $K observed -> $LONG_FRAMES predicted frames (scripts/lvdm_ablation.sh)=$OUT/lvdm_ablation.txt")
  cp "$OUT/long_horizon.png" "$(dirname "$DOC")/long_horizon.png"
  reports+=(--attach "Long horizon: $K observed -> $LONG_FRAMES predicted frames (scripts/long_horizon.py)=$OUT/long_horizon.txt")
fi
python scripts/write_results.py "RSVP-S2=$OUT/validate_s2/metrics.json" "RSVP-S1=$OUT/validate_s1/metrics.json" \
    "RSVP-M=$OUT/validate_m/metrics.json" "PVDM=$OUT/validate_pvdm/metrics.json" \
    "PVDM (v, cosine)=$OUT/validate_pvdm_v/metrics.json" "LVDM=$OUT/validate_lvdm/metrics.json" \
    "LVDM (v, cosine)=$OUT/validate_lvdm_v/metrics.json" "Tubelet transformer=$OUT/validate_tubelet/metrics.json" --out "$DOC" --stage_times "$OUT/stage_times.txt" \
    --first_stage "${first_runs[@]}" "${reports[@]}" ${README:+--readme "$README"} \
    --command "FS_STEPS=$FS_STEPS GAN_STEPS=$GAN_STEPS FS64_STEPS=$FS64_STEPS FS64_CONFIG=$FS64_CONFIG FS64_FINETUNE_STEPS=$FS64_FINETUNE_STEPS FS64_TEMPERATURE=$FS64_TEMPERATURE KEYS_STEPS=$KEYS_STEPS KEYS_CONFIG=$KEYS_CONFIG KEYS_FINETUNE_STEPS=$KEYS_FINETUNE_STEPS KEYS_TEMPERATURE=$KEYS_TEMPERATURE TEMPERATURES=$TEMPERATURES NUM_TRAIN=$NUM_TRAIN STEPS=$STEPS NUM_VIDEOS=$NUM_VIDEOS NUM_SAMPLES=$NUM_SAMPLES LONG_FRAMES=$LONG_FRAMES LONG_SAMPLES=$LONG_SAMPLES bash scripts/reproduce_shapes.sh"
if [ -n "$README" ]; then  # the first stages' checklists side by side, one table per resolution
  python scripts/first_stage_table.py "${rows32[@]}" --doc "$README" --block first-stage-32
  if [ "${#rows64[@]}" -gt 0 ]; then
    python scripts/first_stage_table.py "${rows64[@]}" --doc "$README" --block first-stage-64
  fi
fi
