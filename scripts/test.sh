#!/usr/bin/env bash
# `make test`: install what the tests need, start every real service, run the whole suite.
# Exits non-zero on any failure and when no test ran.
set -euo pipefail
LOG_TAG='test'
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
started=$SECONDS

bash scripts/install-python.sh dev
bash scripts/lint.sh

bash scripts/services.sh up
say "services ready after $((SECONDS - started))s"

mkdir -p "$VAR/test-results"
set +e
.venv/bin/python -m pytest -p no:cacheprovider --junitxml="$VAR/test-results/junit.xml" "$@"
rc=$?
set -e
case $rc in
0) say "all tests passed in $((SECONDS - started))s (services status: scripts/services.sh status)" ;;
5) die "pytest collected no tests: that is a failure" ;;
*) die "tests failed (pytest exit $rc) after $((SECONDS - started))s" ;;
esac
