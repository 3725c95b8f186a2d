# Small helpers shared by the pipeline scripts (sourced, not run).

# validation_is_current DIR CKPT: DIR/metrics.json exists and is newer than CKPT, so validating
# CKPT again would write the same thing.
validation_is_current() {
  [ -f "$1/metrics.json" ] && [ "$1/metrics.json" -nt "$2" ]
}

# timed_stage FILE NAME command...: run the command, then append "NAME <seconds>" to FILE.
timed_stage() {
  local file=$1 name=$2 t0=$SECONDS
  shift 2
  "$@"
  echo "$name $((SECONDS - t0))" >> "$file"
}
