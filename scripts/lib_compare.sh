# The settings every second-stage comparison script shares (sourced, not run): the defaults of the
# environment variables compare_variants.sh documents, and `budget`, the one training budget
# (steps, batch, learning rate, training clips, checkpoints) every method gets.
source "$(dirname "${BASH_SOURCE[0]}")/lib_stages.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
DATA=${DATA:-shapes}; RES=${RES:-64}; STEPS=${STEPS:-2000}; BATCH=${BATCH:-16}; NUM_TRAIN=${NUM_TRAIN:-2000}
NUM_VIDEOS=${NUM_VIDEOS:-64}; NUM_SAMPLES=${NUM_SAMPLES:-4}; SAMPLE_STEPS=${SAMPLE_STEPS:-20}
METRICS=${METRICS:-psnr,ssim,lpips,st_lpips,fvd,kvd}; LONG_FRAMES=${LONG_FRAMES:-0}; LONG_SAMPLES=${LONG_SAMPLES:-1}
OUT=${OUT:-results/compare_${DATA}}; K=${K:-4}; DEVICE=${DEVICE:-auto}
budget=(--device "$DEVICE" --auto_resume results_dir="$OUT/runs" train.max_steps=$STEPS train.batch_size=$BATCH
        data.shapes.num_train=$NUM_TRAIN train.sample_every=$STEPS train.ckpt_every=250)
[ -n "${LR:-}" ] && budget+=(train.optim.lr="$LR")
mkdir -p "$OUT"
