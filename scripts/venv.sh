#!/usr/bin/env bash
# Create .venv with Python 3.11+ and install a requirements file into it; a no-op when nothing changed.
# Usage: scripts/venv.sh requirements.txt|requirements-dev.txt
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REQ=${1:-requirements.txt}
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
cd "$ROOT"

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv separately (python3-venv); install it when we may.
    rm -rf "$VENV"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "==> installing python3-venv"
      apt-get update -qq && apt-get install -y -qq python3-venv python3-dev build-essential >/dev/null
      "$PYTHON" -m venv "$VENV"
    else
      echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv) and retry" >&2
      exit 1
    fi
  fi
fi
stamp="$VENV/.installed-$(basename "$REQ")"
digest=$(cat "$REQ" requirements.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "==> installing $REQ into $VENV"
  # (pip's stderr is filtered of one harmless warning some mirrors print per package)
  "$VENV/bin/python" -m pip install -q -r "$REQ" 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$digest" > "$stamp"
fi
