#!/usr/bin/env bash
# `make bench [BENCH=name]`: start the real services, run the side-by-side benchmarks.
set -euo pipefail
LOG_TAG=bench
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
bash scripts/install-python.sh dev
bash scripts/services.sh up
.venv/bin/python -m bench "$@"
