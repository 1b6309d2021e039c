#!/usr/bin/env bash
# `make bench [BENCH=name]`: start the real services, run the side-by-side benchmarks.
set -euo pipefail
LOG_TAG=bench
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
bash scripts/install-python.sh dev
bash scripts/services.sh up
# The exporters agent_footprint measures the agent against, only when that bench runs.
if (($# == 0)) || [[ " $* " == *" agent_footprint "* ]]; then
    bash scripts/bench-exporters.sh
fi
.venv/bin/python -m bench "$@"
