# Training and scoring first stages (sourced by scripts/reproduce_shapes.sh and
# scripts/check_first_stage.sh, after lib_stages.sh, not run).
# Reads: OUT (runs and reports go under it), DEVICE, NUM_VIDEOS (clips per checklist; the warp
# temperature is chosen on the NUM_VIDEOS test clips after the scored ones), K (observed frames of
# the ceiling and copy-last rows), TEMPERATURES (the warp temperatures swept).
# Appends to: first_runs (run folders, for the training-budget table), reports (--attach flags of
# scripts/write_results.py).
first_runs=(); reports=()

# first_stage STAGE CONFIG ID STEPS [main.py args...]: a first stage trained as
# $OUT/first_stage_ID_shapes_42 (its wall time under STAGE), listed in first_runs
first_stage() {
  local stage=$1 config=$2 id=$3 steps=$4
  shift 4
  timed_stage "$OUT/stage_times.txt" "$stage" python main.py --exp first_stage \
      --config "$config" --device "$DEVICE" --auto_resume results_dir="$OUT" --id "$id" "$@" train.max_steps="$steps"
  first_runs+=("$OUT/first_stage_${id}_shapes_42")
}

# checklist MODEL REPORT TITLE ROWS LABEL [first_stage_report.py flags...]: MODEL's checklist
# ($OUT/REPORT.{json,txt}), attached under TITLE to reports and listed as LABEL in the array ROWS
# (a table of first stages scored alike, scripts/first_stage_table.py); reused while newer than MODEL.
# ROWS is passed by name: it must not be the name of a local of the caller (rows, run, label, ...).
checklist() {
  local model=$1 report=$2 title=$3 label=$5
  local -n table_rows=$4
  shift 5
  if is_current "$OUT/$report.json" "$model"; then
    echo "reusing $OUT/$report.txt (newer than $model)"
  else
    python scripts/first_stage_report.py --first_model "$model" --num_clips "$NUM_VIDEOS" --cond_frames "$K" "$@" \
        --out "$OUT/$report.json" | tee "$OUT/$report.txt"
  fi
  reports+=(--attach "$title (scripts/first_stage_report.py${*:+ $*})=$OUT/$report.txt")
  table_rows+=("$label=$OUT/$report.json")
}

# checked_first_stage TITLE CONFIG ID STEPS FINETUNE_STEPS TEMPERATURE REPORT ROWS [overrides...]: a
# first stage trained for STEPS (with the key=value overrides), then (FINETUNE_STEPS > 0) that many
# more from its weights at a constant 2e-4 as a run of its own (ID_ft; docs/FIRST_STAGE.md), with its
# checklist ($OUT/REPORT) and, unless TEMPERATURE is 1 or 0, a second one of the same weights
# decoded with both warps' softmax sharpened (model.vqvae.warp_temperature: copies, not blends;
# $OUT/REPORT_t). TEMPERATURE auto: swept on the NUM_VIDEOS test clips after the scored ones
# ($OUT/REPORT_sweep.{txt,json}), never on the scored ones. Sets checked_run (the run scored) and
# checked_temperature (the temperature decoded at, 1 for none).
checked_first_stage() {
  local title=$1 config=$2 id=$3 steps=$4 finetune=$5 temperature=$6 report=$7 rows=$8
  shift 8
  local label overrides="$*"
  # key: value, as a LABEL=FILE argument of first_stage_table.py cannot hold '='
  label="$(basename "$config" .yaml)${overrides:+ (${overrides//=/: })}, $steps steps"
  first_stage "$title" "$config" "$id" "$steps" "$@"
  local run="$OUT/first_stage_${id}_shapes_42"
  if [ "$finetune" -gt 0 ]; then
    title="$title, then $finetune steps at a constant 2e-4"
    first_stage "$title" "$config" "${id}_ft" "$finetune" --first_stage_folder "$run" "$@" \
        train.optim.lr=2e-4 train.optim.warmup_steps=0 train.optim.schedule=constant
    run="$OUT/first_stage_${id}_ft_shapes_42"
    label="$label + $finetune at 2e-4"
  fi
  checklist "$run/model_last.pth" "$report" "$title" "$rows" "$label"
  local chosen="" sweep="$OUT/${report}_sweep" clips="test clips $NUM_VIDEOS-$((2 * NUM_VIDEOS - 1))"
  if [ "$temperature" = auto ]; then
    if is_current "$sweep.json" "$run/model_last.pth"; then
      echo "reusing $sweep.txt (newer than $run/model_last.pth)"
    else
      python scripts/warp_hardening.py --first_model "$run/model_last.pth" --num_clips "$NUM_VIDEOS" \
          --first_clip "$NUM_VIDEOS" --temperatures "$TEMPERATURES" --choose_ratio 0.8 \
          --choice_out "$sweep.json" | tee "$sweep.txt"
    fi
    reports+=(--attach "$title: its warp temperature, swept on $clips (scripts/warp_hardening.py)=$sweep.txt")
    temperature=$(python -c 'import json, sys; print(format(json.load(open(sys.argv[1]))["temperature"], "g"))' "$sweep.json")
    chosen=", chosen on $clips"
  fi
  if [ "$temperature" != 1 ] && [ "$temperature" != 0 ]; then
    checklist "$run/model_last.pth" "${report}_t" "The same first stage decoded at warp temperature $temperature$chosen" \
        "$rows" "the same, decoded at warp temperature $temperature$chosen" --warp_temperature "$temperature"
  fi
  checked_run=$run
  checked_temperature=$temperature
  [ "$temperature" != 0 ] || checked_temperature=1
}
