#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs everything it needs.
# torch is pinned to the CPU build first: an unpinned torch resolved with no torch installed would pull
# gigabytes of CUDA packages. Users with their own torch build can skip this script and `pip install -e .`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MODISTILL_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
stamp="$venv/.modistill-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "torch==2.13.0"
  "$venv/bin/python" -m pip install --quiet -e "$root[dev]"
  touch "$stamp"
fi
echo "$venv"
