#!/usr/bin/env bash
# One warp first stage trained and scored the way scripts/reproduce_shapes.sh scores its own:
# the issue-12 checklist on test clips 0..NUM_VIDEOS-1 (scripts/first_stage_report.py); the warp
# temperature chosen by rule on the next NUM_VIDEOS test clips (the highest of TEMPERATURES whose
# temporal-variance ratio reaches 0.8, scripts/warp_hardening.py); the checklist at that
# temperature; and, when the test split has 4 x NUM_VIDEOS clips, the chosen temperature and its
# neighbours in TEMPERATURES on each NUM_VIDEOS-clip set and on all of them
# (scripts/temperature_transfer.py). An ablation of the recipe is the same config with overrides.
#   bash scripts/check_first_stage.sh CONFIG ID STEPS [key=value ...]
#   # L1 on frame differences on the keyed 32x32 recipe (docs/FIRST_STAGE.md; about 1.3 h on 2 CPU cores):
#   bash scripts/check_first_stage.sh configs/first_stage/warp_keys_fine_shapes32.yaml keystl1 6000 model.temporal_l1_weight=1.0
#   # the 64x64 recipe over a 6000-step schedule (about 14 h on 2 CPU cores: a GPU run):
#   bash scripts/check_first_stage.sh configs/first_stage/warp_keys_fine_shapes64.yaml long64 6000
# Settings (environment): OUT (results), NUM_VIDEOS (64), K (4), TEMPERATURES (0.8,0.75,...,0.3),
# DEVICE (auto), DOC (none: a Markdown file whose blocks BLOCKS-curves, BLOCKS-sweep,
# BLOCKS-reports and BLOCKS-transfer get the held-out curves, the sweep, the checklists and the
# transfer table; checked before training), BLOCKS (ID). Writes under OUT: first_stage_ID_shapes_42
# (the run; --auto_resume continues it), ID_report.{json,txt}, ID_report_sweep.{json,txt},
# ID_report_t.{json,txt}, ID_transfer.txt and ID_table.md (the checklists side by side).
# Re-running reuses the finished run and every report newer than its checkpoint.
set -euo pipefail
if [ "$#" -lt 3 ] || ! [[ "$3" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash scripts/check_first_stage.sh CONFIG ID STEPS [key=value ...] (STEPS a positive integer)" >&2
  exit 2
fi
config=$1 id=$2 steps=$3
shift 3
if [ ! -f "$config" ]; then
  echo "error: config file not found: $config" >&2
  exit 2
fi
if ! [[ "$id" =~ ^[A-Za-z0-9_-]+$ ]]; then
  echo "error: ID must be letters, digits, '_' or '-', got '$id'" >&2
  exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib_stages.sh"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
DOC=${DOC:-}; BLOCKS=${BLOCKS:-$id}
if [ -n "$DOC" ]; then  # fail now, not after the training
  for block in curves sweep reports transfer; do
    python scripts/doc_block.py --check "$DOC" "$BLOCKS-$block" || exit 2
  done
fi
export OUT=${OUT:-results} NUM_VIDEOS=${NUM_VIDEOS:-64} K=${K:-4} DEVICE=${DEVICE:-auto}
TEMPERATURES=${TEMPERATURES:-0.8,0.75,0.7,0.65,0.6,0.55,0.5,0.45,0.4,0.35,0.3}
mkdir -p "$OUT"
source "$(dirname "${BASH_SOURCE[0]}")/lib_first_stage.sh"
table_rows_all=()
checked_first_stage "First stage $id ($config${*:+ $*})" "$config" "$id" "$steps" 0 auto "${id}_report" table_rows_all "$@"
python scripts/first_stage_table.py "${table_rows_all[@]}" > "$OUT/${id}_table.md"
# the chosen temperature and its neighbours in TEMPERATURES
around=$(python -c 'import sys
temps = [float(t) for t in sys.argv[1].split(",")]
chosen = float(sys.argv[2])
i = min(range(len(temps)), key=lambda j: abs(temps[j] - chosen))
print(",".join(format(t, "g") for t in temps[max(i - 1, 0):i + 2] if t != 1))' "$TEMPERATURES" "$checked_temperature")
transfer="$OUT/${id}_transfer.txt"
if is_current "$transfer" "$checked_run/model_last.pth"; then
  echo "reusing $transfer (newer than $checked_run/model_last.pth)"
elif [ -n "$around" ]; then
  # exit 2 (one line) when the test split has fewer than 4 sets of clips: the rest still stands
  python scripts/temperature_transfer.py --first_model "$checked_run/model_last.pth" --temperatures "$around" \
      --set_size "$NUM_VIDEOS" --num_sets 4 | tee "$transfer.partial" && mv "$transfer.partial" "$transfer"
fi
if [ -n "$DOC" ]; then
  python scripts/first_stage_curves.py "$id=$checked_run" --doc "$DOC" --block "$BLOCKS-curves" > /dev/null
  python scripts/doc_block.py "$DOC" "$BLOCKS-sweep" "$OUT/${id}_report_sweep.txt"
  python scripts/doc_block.py "$DOC" "$BLOCKS-reports" "$OUT/${id}_table.md"
  if [ -f "$transfer" ]; then python scripts/doc_block.py "$DOC" "$BLOCKS-transfer" "$transfer"; fi
fi
echo "== $id: checklists ($OUT/${id}_table.md)"
cat "$OUT/${id}_table.md"
