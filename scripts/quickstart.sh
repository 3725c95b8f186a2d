#!/usr/bin/env bash
# The main job on the built-in data, from a fresh clone: bash scripts/quickstart.sh
# For now (foundation stage): set up the environment, inspect the built-in `shapes` dataset,
# measure its loading speed and write a preview GIF/PNG. Later stages extend this script to
# the whole pipeline (first stage, GAN, DDPM, validate).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
out=results/quickstart
mkdir -p "$out"
python -m tools.inspect_data --data shapes --split train --num_clips 16 --out "$out/shapes_preview.gif"
echo
echo "Preview written to $out/shapes_preview.gif (and .png beside it)."
