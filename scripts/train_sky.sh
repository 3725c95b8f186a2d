#!/usr/bin/env bash
# SkyTimelapse at 256x256, the whole pipeline: first stage -> GAN -> token extraction -> RSVP DDPM
# (16 observed -> 16 predicted frames) -> validation.
#   DATA_PATH=/data/sky_timelapse bash scripts/train_sky.sh
#   DATA_PATH=/data/sky_timelapse NPROC=4 bash scripts/train_sky.sh
#   DATA_PATH=/data/sky_timelapse DRY_RUN=1 bash scripts/train_sky.sh  # print the commands only
# Re-running the same command continues where it stopped. Every setting (ID, SEED, NPROC, NET,
# STAGES, *_STEPS, *_BATCH, ...) is described in scripts/lib_pipeline.sh.
# Expected GPU memory and time per stage: docs/REAL_DATASETS.md.
set -euo pipefail
PIPELINE_DATA=sky
PIPELINE_RES=${RES:-256}
if [ "$PIPELINE_RES" != 256 ]; then
  echo "error: RES=$PIPELINE_RES: the SkyTimelapse configs are 256x256 only" >&2
  exit 2
fi
# shellcheck source=lib_pipeline.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_pipeline.sh"
run_pipeline
