#!/usr/bin/env bash
# The course's one entry point for a terminal:
#   bash scripts/course.sh run    set up, then execute every notebook in order (headless)
#   bash scripts/course.sh test   set up, then run the unit tests and nbval over every notebook
#   bash scripts/course.sh lab    set up, then open JupyterLab on notebooks/
#   bash scripts/course.sh setup  set up only
# Set-up creates (or reuses) a virtual environment at $MLCAK_VENV (default ~/.cache/mlcak/venv)
# and installs this checkout into it with `pip install -e ".[dev]"`; it is skipped when nothing
# changed since the last install. Needs only python3 (3.10+) with venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MLCAK_VENV:-$HOME/.cache/mlcak/venv}"
PYTHON="${PYTHON:-python3}"

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[mlcak] creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp_file="$VENV/.mlcak-install-stamp"
  local stamp
  stamp="$(cd "$ROOT" && cat pyproject.toml | sha256sum | cut -c1-16) $ROOT"
  if [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp" ] || ! "$VENV/bin/python" -c "import mlcak_lib" 2>/dev/null; then
    echo "[mlcak] installing the course (pip install -e .[dev]); the first time downloads PyTorch (a few minutes)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e "$ROOT[dev]"
    echo "$stamp" > "$stamp_file"
  fi
  # Register the environment's kernel as python3 for nbclient / nbval / JupyterLab.
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
}

cmd="${1:-help}"
shift || true
case "$cmd" in
  setup) setup ;;
  run)   setup; cd "$ROOT"; "$VENV/bin/python" -m mlcak_lib.course run "$@" ;;
  test)  setup; cd "$ROOT"; "$VENV/bin/python" -m pytest "$@" ;;
  lab)   setup; cd "$ROOT"; "$VENV/bin/jupyter" lab notebooks "$@" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
