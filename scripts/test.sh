#!/usr/bin/env bash
# Sets up the environment (if needed) and runs the whole test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup_env.sh" | tail -n 1)"
cd "$root"
set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when no test was collected: that is a failure, never a pass.
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
