#!/usr/bin/env bash
# LVDM's long-horizon ablation at the comparison's budget (docs/LVDM.md): beside the autoregressive
# model of scripts/compare_variants.sh, the same model trained without conditional latent
# perturbation, and the hierarchy (a keyframe model KEY_STRIDE latent frames apart and an
# interpolation model); scripts/lvdm_ablation.py then validates autoregressive vs hierarchical,
# with and without perturbation, with and without guidance, 4 -> LONG_FRAMES frames.
#   OUT=results/reproduce_shapes RES=32 LVDM_FIRST_MODEL=... bash scripts/lvdm_ablation.sh   # after compare_variants.sh
# Settings (environment): as compare_variants.sh, plus LVDM_NET (lvdm: LVDM's own diffusion
# settings; lvdm_v: v prediction, cosine), KEY_STRIDE (4), GUIDANCE (2.0; 1: no guided rows).
# Writes $OUT/lvdm_ablation/{ablation.json,ablation.png} and $OUT/lvdm_ablation.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib_compare.sh"
: "${LVDM_FIRST_MODEL:?set LVDM_FIRST_MODEL to an LVDM autoencoder checkpoint}"
LVDM_NET=${LVDM_NET:-lvdm}; KEY_STRIDE=${KEY_STRIDE:-4}; GUIDANCE=${GUIDANCE:-2.0}; LONG_FRAMES=${LONG_FRAMES:-32}
ar="$OUT/runs/ddpm_cmp_${LVDM_NET}_${DATA}_42/model_last.pth"
[ -f "$ar" ] || { echo "error: $ar is missing: run scripts/compare_variants.sh with LVDM_FIRST_MODEL first" >&2; exit 2; }
diffusion=(); [ "$LVDM_NET" = lvdm_v ] && diffusion=(model.diffusion.prediction=v model.diffusion.schedule=cosine)
train() {  # train NAME ID overrides...: one more LVDM second stage at the comparison's budget
  local name=$1 id=$2; shift 2
  timed_stage "$OUT/stage_times.txt" "train $name" python main.py --exp ddpm --config "configs/ddpm/lvdm_${DATA}${RES}.yaml" \
      --first_model "$LVDM_FIRST_MODEL" --id "$id" "${budget[@]}" model.cond_frames=$K "${diffusion[@]}" "$@"
}
run() { echo "$OUT/runs/ddpm_$1_${DATA}_42/model_last.pth"; }
train "LVDM, no perturbation" "cmp_${LVDM_NET}_noperturb" model.lvdm.max_perturb=0 model.lvdm.sample_perturb=0
train "LVDM interpolator" "cmp_${LVDM_NET}_interp" model.lvdm.role=interpolate model.lvdm.key_stride=$KEY_STRIDE model.lvdm.cond_prob=0.9
train "LVDM keyframes" "cmp_${LVDM_NET}_keys" model.lvdm.key_stride=$KEY_STRIDE \
    model.lvdm.interpolator="$(run "cmp_${LVDM_NET}_interp")"
python scripts/lvdm_ablation.py --ar "$ar" --no_perturb "$(run "cmp_${LVDM_NET}_noperturb")" \
    --hierarchy "$(run "cmp_${LVDM_NET}_keys")" --guidance "$GUIDANCE" --pred_frames "$LONG_FRAMES" \
    --num_videos "$NUM_VIDEOS" --num_samples "$LONG_SAMPLES" --sampler dpm --steps "$SAMPLE_STEPS" \
    --metrics psnr,ssim,st_lpips --device "$DEVICE" --out "$OUT/lvdm_ablation" | tee "$OUT/lvdm_ablation.txt"
