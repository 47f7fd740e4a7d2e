#!/usr/bin/env bash
# Creates .venv and installs the project (editable) with its dev extras.
# Idempotent: skipped when pyproject.toml has not changed since the last install.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ -f "$stamp" ]]; then
  echo "python: .venv up to date"
  exit 0
fi
[[ -x .venv/bin/python ]] || { echo "python: creating .venv with $($py --version)"; "$py" -m venv .venv; }
echo "python: installing the project and its dependencies into .venv (~1 GB the first time)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q --progress-bar off -e ".[dev]"
rm -f .venv/.installed-*
touch "$stamp"
echo "python: done"
