# Small helpers shared by the pipeline scripts (sourced, not run).

# is_current FILE CKPT: FILE exists and is newer than CKPT, so computing it from CKPT again would
# write the same thing. FILE must be the one its script writes last: an interrupted run never counts.
is_current() {
  [ -f "$1" ] && [ "$1" -nt "$2" ]
}

# validation_is_current DIR CKPT: DIR/metrics.json is current for CKPT.
validation_is_current() {
  is_current "$1/metrics.json" "$2"
}

# timed_stage FILE NAME command...: run the command, then append "NAME <seconds>" to FILE, or
# "NAME <seconds> exit=<status>" when it stopped early (a signal, an error), so that the run that
# later resumes it is credited with both (scripts/write_results.py); returns the command's status.
timed_stage() {
  local file=$1 name=$2 t0=$SECONDS status=0
  shift 2
  "$@" || status=$?
  local line="$name $((SECONDS - t0))"
  [ "$status" -eq 0 ] || line+=" exit=$status"
  echo "$line" >> "$file"
  return "$status"
}

# validate_stage TIMES NAME DIR CKPT [validate.py flags...]: validate.py CKPT into DIR under the
# shared protocol (dpm sampler, $SAMPLE_STEPS steps, seed 0, $DEVICE, $METRICS), unless DIR is newer
# than CKPT; the time goes to TIMES as "validate NAME".
validate_stage() {
  local times=$1 name=$2 dir=$3 ckpt=$4
  shift 4
  if validation_is_current "$dir" "$ckpt"; then
    echo "reusing $dir (newer than $ckpt)"
  else
    timed_stage "$times" "validate $name" python validate.py --ckpt "$ckpt" --out "$dir" --sampler dpm \
        --steps "$SAMPLE_STEPS" --seed 0 --device "$DEVICE" --metrics "$METRICS" "$@"
  fi
}
