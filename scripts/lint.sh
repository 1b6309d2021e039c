#!/usr/bin/env bash
# The static checks `make lint` and `make test` both run (pip-audit, which needs the
# vulnerability database online, is `make lint`'s alone: scripts/audit.sh).
set -euo pipefail
LOG_TAG='lint'
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

say "ruff check and ruff format --check"
.venv/bin/ruff check --quiet . || die "ruff check found problems (make format fixes most)"
.venv/bin/ruff format --check --quiet . || die "ruff format would change files: run make format"
say "lint-imports: DESIGN.md §2's import direction ([tool.importlinter] in pyproject.toml)"
.venv/bin/lint-imports --no-cache >/dev/null || { .venv/bin/lint-imports --no-cache; die "an import goes against the layers (docs/architecture.md)"; }
say "mypy controlplane agents console"
.venv/bin/mypy controlplane agents console || die "mypy found type errors"
say "shellcheck (settings: .shellcheckrc)"
mapfile -t scripts < <(git ls-files '*.sh')
.venv/bin/shellcheck "${scripts[@]}" .ci/run || die "shellcheck found problems"
