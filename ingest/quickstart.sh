#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, ingest the sample documents into the embedded
# database, and answer a question about them. Works offline, with or without downloaded models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup-venv
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" GRADIO_ANALYTICS_ENABLED=False
.venv/bin/python -m askany.main --ingest ingest/samples --no-progress
.venv/bin/python -m askany.main --query-text "${1:-如何滚动重启 Deployment？}"
