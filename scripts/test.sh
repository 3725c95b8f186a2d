#!/usr/bin/env bash
# Run the test suite: bash scripts/test.sh [pytest args]
#   bash scripts/test.sh              # fast default suite (slow tests skipped)
#   bash scripts/test.sh -m slow      # only the slow tests
#   bash scripts/test.sh -m ""        # everything
# Installs requirements-dev.txt (requirements.txt plus the test-only packages) when needed.
set -euo pipefail
RSVP_REQUIREMENTS=requirements-dev.txt source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python -m pytest "$@"
