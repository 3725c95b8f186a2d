#!/usr/bin/env bash
# Run the test suite: bash scripts/test.sh [pytest args]
#   bash scripts/test.sh              # fast default suite (slow tests skipped)
#   bash scripts/test.sh -m slow      # only the slow tests
#   bash scripts/test.sh -m ""        # everything
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python -m pytest "$@"
