# Sourced by test.sh and quickstart.sh: make sure a Python environment with the requirements exists.
# - Inside an active virtual environment (VIRTUAL_ENV set), that one is used.
# - Otherwise .venv/ in the repository is created (once) and activated.
# - RSVP_REQUIREMENTS names the file to install (default requirements.txt; test.sh: requirements-dev.txt,
#   which includes it). The install is skipped when the files have not changed since the last one.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS="${RSVP_REQUIREMENTS:-requirements.txt}"

if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating virtual environment .venv"
    "$PYTHON" -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi

stamp="$VIRTUAL_ENV/.rsvp-requirements.sha256"
# The stamp records every requirements file installed so far, so switching files never skips one.
want="$(cat requirements*.txt | sha256sum | cut -d' ' -f1) $REQUIREMENTS"
if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
  echo "[setup] installing $REQUIREMENTS into $VIRTUAL_ENV"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -r "$REQUIREMENTS"
  echo "$want" >> "$stamp"
else
  echo "[setup] requirements already installed in $VIRTUAL_ENV"
fi
