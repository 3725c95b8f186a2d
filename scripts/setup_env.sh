# Sourced by test.sh and quickstart.sh: make sure a Python environment with requirements.txt exists.
# - Inside an active virtual environment (VIRTUAL_ENV set), that one is used.
# - Otherwise .venv/ in the repository is created (once) and activated.
# The install is skipped when requirements.txt has not changed since the last one.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
PYTHON="${PYTHON:-python3}"

if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating virtual environment .venv"
    "$PYTHON" -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi

stamp="$VIRTUAL_ENV/.rsvp-requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing requirements.txt into $VIRTUAL_ENV"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -r requirements.txt
  echo "$want" > "$stamp"
else
  echo "[setup] requirements already installed in $VIRTUAL_ENV"
fi
