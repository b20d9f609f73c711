#!/usr/bin/env bash
# Sets up the environment (if needed) and runs the main job: `modistill demo`. Extra arguments go to it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup_env.sh" | tail -n 1)"
cd "$root"
exec "$venv/bin/modistill" demo "$@"
