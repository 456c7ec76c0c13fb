#!/usr/bin/env bash
# The test command from the README: sets up .venv when needed, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup-venv --browser
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
