# The real-data pipeline shared by scripts/train_ucf101.sh and scripts/train_sky.sh (sourced, not run):
#   first stage -> GAN fine-tune -> token extraction (prediction pairs) -> DDPM from tokens -> validate.
# The caller sets PIPELINE_DATA (ucf101 | sky) and PIPELINE_RES (64 | 256), then calls run_pipeline.
# Every stage continues where a previous run of the same command stopped: training stages with
# --auto_resume (a finished run resumes to "nothing to do"), extraction skips finished shards,
# validation is skipped when its metrics.json is newer than the DDPM checkpoint.
# Settings (environment), all optional except DATA_PATH:
#   DATA_PATH        dataset root (required; layouts: README.md, section "Datasets")
#   ID               run name (main); run folders: results/{exp}_{ID}_{RES}_{data}_{SEED} (DDPM and
#                    validation: {exp}_{NET}_{ID}_{RES}_...), tokens: results/tokens_..._k{K}_c{CLIPS_PER_VIDEO}
#   SEED             (42)
#   RESULTS          results folder (default: results/ in the repository; a relative path is taken
#                    from the folder the script is started in)
#   NPROC            processes (GPUs) for the training stages; > 1 runs them under torchrun (1)
#   NET              second-stage network: s2 | s1 | m (s2)
#   STAGES           stages to run, in order (first_stage gan extract ddpm validate)
#   FIRST_STEPS GAN_STEPS DDPM_STEPS      train.max_steps overrides (default: the configs')
#   FIRST_BATCH GAN_BATCH DDPM_BATCH      per-process batch overrides (default: the configs')
#   FIRST_ARGS GAN_ARGS EXTRACT_ARGS DDPM_ARGS VALIDATE_ARGS   extra arguments per stage (key=value
#                    overrides, flags; split at spaces)
#   CLIPS_PER_VIDEO  training clips extracted per video (8)   EXTRACT_BATCH (32 at 64x64, 8 at 256x256)
#   WORKERS          data-loading workers for extraction and validation (8)
#   NUM_VIDEOS (256) NUM_SAMPLES (4) SAMPLE_STEPS (the config's)   validation
#   DRY_RUN=1        print the commands ("+ ..." lines) without running anything
# Expected GPU memory and time per stage: docs/REAL_DATASETS.md.

# shellcheck source=lib_stages.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib_stages.sh"

pipeline_die() {
  echo "error: $*" >&2
  exit 2
}

pipeline_note() {
  echo "[pipeline] $*" >&2
}

# Print a command as one shell-quoted "+ ..." line, then run it (unless DRY_RUN=1).
pipeline_run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [ "${DRY_RUN:-0}" != 1 ]; then
    "$@"
  fi
}

# A training command: python, or torchrun with NPROC processes on this node.
pipeline_train() {
  if [ "$NPROC" -gt 1 ]; then
    pipeline_run torchrun --standalone --nproc_per_node "$NPROC" "$@"
  else
    pipeline_run python "$@"
  fi
}

# A value a config file sets, its base files merged (schema defaults are not applied, so that
# no model code is imported: fast): pipeline_config_value CONFIG KEY
pipeline_config_value() {
  python - "$1" "$2" <<'EOF'
import sys
from omegaconf import OmegaConf
from tools.config import RunConfig, build_config
path, key = sys.argv[1:3]
value = OmegaConf.select(build_config(RunConfig(), path, []), key)
if value is None:
    sys.exit(f"{path} does not set {key}")
print(value)
EOF
}

pipeline_is_uint() {
  case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac
}

# Checks the settings, resolves paths, sets up Python and fills in every default.
pipeline_setup() {
  local repo_root
  repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [ -z "${DATA_PATH:-}" ]; then
    pipeline_die "DATA_PATH is not set: point it to the ${PIPELINE_DATA} dataset root, e.g.
  DATA_PATH=/data/${PIPELINE_DATA} bash $0
(expected layouts: README.md, section \"Datasets\")"
  fi
  if [ ! -d "$DATA_PATH" ]; then
    pipeline_die "DATA_PATH=$DATA_PATH is not a directory (it must be the ${PIPELINE_DATA} dataset root; see README.md, section \"Datasets\")"
  fi
  DATA_PATH="$(cd "$DATA_PATH" && pwd)"  # absolute: the commands run from the repository root
  if [ -n "${RESULTS:-}" ] && [ "${RESULTS#/}" = "$RESULTS" ]; then
    RESULTS="$PWD/$RESULTS"
  fi
  ID=${ID:-main}; SEED=${SEED:-42}; RESULTS=${RESULTS:-results}; NPROC=${NPROC:-1}; NET=${NET:-s2}
  STAGES=${STAGES:-first_stage gan extract ddpm validate}
  CLIPS_PER_VIDEO=${CLIPS_PER_VIDEO:-8}; WORKERS=${WORKERS:-8}
  NUM_VIDEOS=${NUM_VIDEOS:-256}; NUM_SAMPLES=${NUM_SAMPLES:-4}
  if [ "$PIPELINE_RES" = 64 ]; then EXTRACT_BATCH=${EXTRACT_BATCH:-32}; else EXTRACT_BATCH=${EXTRACT_BATCH:-8}; fi
  local name
  for name in SEED NPROC CLIPS_PER_VIDEO WORKERS NUM_VIDEOS NUM_SAMPLES EXTRACT_BATCH FIRST_STEPS GAN_STEPS \
              DDPM_STEPS FIRST_BATCH GAN_BATCH DDPM_BATCH SAMPLE_STEPS; do
    if [ -n "${!name:-}" ] && ! pipeline_is_uint "${!name}"; then
      pipeline_die "$name=${!name} is not a whole number"
    fi
  done
  [ "$NPROC" -ge 1 ] || pipeline_die "NPROC must be at least 1"
  case "$NET" in s2 | s1 | m) ;; *) pipeline_die "NET=$NET: expected s2, s1 or m" ;; esac
  local stage
  for stage in $STAGES; do
    case "$stage" in first_stage | gan | extract | ddpm | validate) ;;
      *) pipeline_die "STAGES: unknown stage '$stage' (known: first_stage gan extract ddpm validate)" ;;
    esac
  done

  if [ "${DRY_RUN:-0}" = 1 ]; then
    # Print only: no installs; Python is still needed to read the DDPM config.
    cd "$repo_root"
    if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then
      # shellcheck disable=SC1091
      source .venv/bin/activate
    fi
  else
    # shellcheck source=setup_env.sh
    source "$repo_root/scripts/setup_env.sh"
  fi

  local suffix  # the config names: moso_ucf101_64, moso_sky256, rsvp_s2_ucf101_256, ...
  case "$PIPELINE_DATA" in
    ucf101) suffix=ucf101_${PIPELINE_RES} ;;
    sky) suffix=sky${PIPELINE_RES} ;;
    *) pipeline_die "unknown PIPELINE_DATA=$PIPELINE_DATA" ;;
  esac
  FIRST_CONFIG=configs/first_stage/moso_${suffix}.yaml
  GAN_CONFIG=configs/first_stage/moso_${suffix}_gan.yaml
  DDPM_CONFIG=configs/ddpm/rsvp_${NET}_${suffix}.yaml
  local config
  for config in "$FIRST_CONFIG" "$GAN_CONFIG" "$DDPM_CONFIG"; do
    [ -f "$config" ] || pipeline_die "config $config not found"
  done
  # The observed frames of the DDPM config decide the prediction pairs to extract.
  COND_FRAMES=$(pipeline_config_value "$DDPM_CONFIG" model.cond_frames) ||
    pipeline_die "could not read model.cond_frames from $DDPM_CONFIG"

  # One run id per resolution, so that 64x64 and 256x256 runs never share a folder.
  RUN_ID=${ID}_${PIPELINE_RES}
  FIRST_DIR=$RESULTS/first_stage_${RUN_ID}_${PIPELINE_DATA}_${SEED}
  GAN_DIR=$RESULTS/gan_${RUN_ID}_${PIPELINE_DATA}_${SEED}
  TOKENS_DIR=$RESULTS/tokens_${RUN_ID}_${PIPELINE_DATA}_${SEED}_k${COND_FRAMES}_c${CLIPS_PER_VIDEO}
  DDPM_DIR=$RESULTS/ddpm_${NET}_${RUN_ID}_${PIPELINE_DATA}_${SEED}
  VALIDATE_DIR=$RESULTS/validate_${NET}_${RUN_ID}_${PIPELINE_DATA}_${SEED}
}

pipeline_wants() {
  case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

run_pipeline() {
  pipeline_setup
  local dry=""
  [ "${DRY_RUN:-0}" = 1 ] && dry=" (dry run: commands are printed, not run)"
  pipeline_note "${PIPELINE_DATA} ${PIPELINE_RES}x${PIPELINE_RES} from $DATA_PATH; run id $RUN_ID, seed $SEED," \
                "$NPROC process(es); stages: $STAGES$dry"
  local common=(--data "$PIPELINE_DATA" --data_path "$DATA_PATH" --seed "$SEED")
  # *_ARGS: several arguments split at spaces, never glob-expanded (overrides such as x=[1,2]).
  local first_args gan_args extract_args ddpm_args validate_args
  read -r -a first_args <<< "${FIRST_ARGS:-}"
  read -r -a gan_args <<< "${GAN_ARGS:-}"
  read -r -a extract_args <<< "${EXTRACT_ARGS:-}"
  read -r -a ddpm_args <<< "${DDPM_ARGS:-}"
  read -r -a validate_args <<< "${VALIDATE_ARGS:-}"

  if pipeline_wants first_stage; then
    pipeline_note "stage 1/5: first stage (VQ-VAE) -> $FIRST_DIR"
    pipeline_train main.py --exp first_stage --config "$FIRST_CONFIG" "${common[@]}" --id "$RUN_ID" \
      --auto_resume "results_dir=$RESULTS" ${FIRST_STEPS:+"train.max_steps=$FIRST_STEPS"} \
      ${FIRST_BATCH:+--batch_size "$FIRST_BATCH"} "${first_args[@]}"
  fi
  if pipeline_wants gan; then
    pipeline_note "stage 2/5: GAN fine-tune of $FIRST_DIR -> $GAN_DIR"
    pipeline_train main.py --exp gan --config "$GAN_CONFIG" "${common[@]}" --id "$RUN_ID" \
      --first_stage_folder "$FIRST_DIR" --auto_resume "results_dir=$RESULTS" \
      ${GAN_STEPS:+"train.max_steps=$GAN_STEPS"} ${GAN_BATCH:+--batch_size "$GAN_BATCH"} "${gan_args[@]}"
  fi
  if pipeline_wants extract; then
    # One process: extraction is forward-only and resumes by shard.
    pipeline_note "stage 3/5: prediction pairs (model.cond_frames=$COND_FRAMES) from $GAN_DIR -> $TOKENS_DIR"
    pipeline_run python main.py --exp extract --first_model "$GAN_DIR/model_last.pth" "${common[@]}" \
      --out "$TOKENS_DIR" "model.cond_frames=$COND_FRAMES" "model.clips_per_video=$CLIPS_PER_VIDEO" \
      "train.batch_size=$EXTRACT_BATCH" "data.num_workers=$WORKERS" "${extract_args[@]}"
  fi
  if pipeline_wants ddpm; then
    # train.py takes --first_model and the data from the token folder's metadata.
    pipeline_note "stage 4/5: RSVP-$(echo "$NET" | tr a-z A-Z) from $TOKENS_DIR -> $DDPM_DIR"
    pipeline_train train.py --config "$DDPM_CONFIG" --tokens "$TOKENS_DIR" --id "${NET}_${RUN_ID}" --seed "$SEED" \
      --auto_resume "results_dir=$RESULTS" ${DDPM_STEPS:+"train.max_steps=$DDPM_STEPS"} \
      ${DDPM_BATCH:+--batch_size "$DDPM_BATCH"} "${ddpm_args[@]}"
  fi
  if pipeline_wants validate; then
    local ckpt=$DDPM_DIR/model_last.pth
    if validation_is_current "$VALIDATE_DIR" "$ckpt"; then
      pipeline_note "stage 5/5: $VALIDATE_DIR/metrics.json is newer than $ckpt: skipped (delete it to re-validate)"
    else
      pipeline_note "stage 5/5: validate $ckpt -> $VALIDATE_DIR"
      pipeline_run python validate.py --ckpt "$ckpt" --data_path "$DATA_PATH" --num_videos "$NUM_VIDEOS" \
        --num_samples "$NUM_SAMPLES" ${SAMPLE_STEPS:+--steps "$SAMPLE_STEPS"} --seed 0 \
        --num_workers "$WORKERS" --out "$VALIDATE_DIR" "${validate_args[@]}"
    fi
  fi
  pipeline_note "done$dry"
}
