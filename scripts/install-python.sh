#!/usr/bin/env bash
# Create .venv and install coreplane with the given extras, pinned by constraints.txt.
#   scripts/install-python.sh run   -> server + agent (what `make run` needs)
#   scripts/install-python.sh dev   -> server + agent + test tools
# Re-runs only when pyproject.toml or constraints.txt changed.
set -euo pipefail
LOG_TAG=install
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

profile=${1:-dev}
case $profile in
run) extras="server,agent,tasks,cache,messaging" ;;
dev) extras="server,agent,tasks,cache,messaging,dev" ;;
*) die "usage: $0 run|dev" ;;
esac

cd "$ROOT"
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11+ is needed; $PYTHON is $("$PYTHON" --version 2>&1)"

stamp=.venv/.installed-$profile
if [[ -f $stamp && $stamp -nt pyproject.toml && $stamp -nt constraints.txt ]]; then
    exit 0
fi
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv || die "could not create .venv (on Debian: apt-get install python3-venv)"
fi
say "installing coreplane[$extras] into .venv (pinned by constraints.txt)"
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip >/dev/null
mkdir -p "$VAR"
PIP_CONSTRAINT="$ROOT/constraints.txt" .venv/bin/python -m pip install --disable-pip-version-check \
    -c constraints.txt -e ".[$extras]" >"$VAR/pip-install.log" 2>&1 \
    || { tail -30 "$VAR/pip-install.log" >&2; die "pip install failed (full log: var/pip-install.log)"; }
touch "$stamp"
