#!/usr/bin/env bash
# UCF-101, the whole pipeline: first stage -> GAN -> token extraction -> RSVP DDPM -> validation.
#   DATA_PATH=/data/UCF-101 bash scripts/train_ucf101.sh            # 64x64, 4 observed -> 16 predicted
#   DATA_PATH=/data/UCF-101 RES=256 NPROC=4 bash scripts/train_ucf101.sh
#   DATA_PATH=/data/UCF-101 DRY_RUN=1 bash scripts/train_ucf101.sh  # print the commands only
# Re-running the same command continues where it stopped. RES=64|256 (64); every other setting
# (ID, SEED, NPROC, NET, STAGES, *_STEPS, *_BATCH, ...) is described in scripts/lib_pipeline.sh.
# Expected GPU memory and time per stage: docs/REAL_DATASETS.md.
set -euo pipefail
PIPELINE_DATA=ucf101
PIPELINE_RES=${RES:-64}
case "$PIPELINE_RES" in
  64 | 256) ;;
  *) echo "error: RES=$PIPELINE_RES: UCF-101 configs exist for RES=64 and RES=256" >&2; exit 2 ;;
esac
# shellcheck source=lib_pipeline.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_pipeline.sh"
run_pipeline
