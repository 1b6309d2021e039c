#!/usr/bin/env bash
# `make run`: the control plane, console and a local agent on embedded defaults (SQLite).
# Backends started by scripts/services.sh (var/services.env) are picked up when present.
# Ctrl-C stops both processes.
set -euo pipefail
LOG_TAG=run
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# The store holds password hashes and the cookie key, var/ the admin and agent tokens:
# everything made from here on is this user's only (var/ 0700 when created here; one
# that exists keeps its mode, as services run as other users may need to cross it).
[[ -d $VAR ]] || (umask 077 && mkdir -p "$VAR")
bash scripts/install-python.sh run
umask 077
chmod -f 600 "$VAR/admin-token" "$VAR/migrate.log" "$VAR/agent-register.log" || true

if [[ -f $VAR/services.env ]]; then
    say "using the backends in var/services.env"
    set -a
    # shellcheck source=/dev/null  # written by scripts/services.sh up
    source "$VAR/services.env"
    set +a
fi
export COREPLANE_SERVER__PORT="${PORT:-${COREPLANE_SERVER__PORT:-8000}}"
export COREPLANE_SERVER__HOST="${COREPLANE_SERVER__HOST:-127.0.0.1}"
url="http://$COREPLANE_SERVER__HOST:$COREPLANE_SERVER__PORT/"
export COREPLANE_AGENT__CONTROL_PLANE_URL="${COREPLANE_AGENT__CONTROL_PLANE_URL:-${url%/}}"

# The admin credential: the environment's, else one kept (0600) under var/.
if [[ -z ${COREPLANE_ADMIN_TOKEN:-} ]]; then
    COREPLANE_ADMIN_TOKEN=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')
    token_file=$VAR/admin-token
    if [[ -s $token_file ]]; then COREPLANE_ADMIN_TOKEN=$(cat "$token_file"); else
        (umask 077; echo "$COREPLANE_ADMIN_TOKEN" >"$token_file"); fi
    export COREPLANE_ADMIN_TOKEN
    token_hint="var/admin-token"
else
    token_hint="COREPLANE_ADMIN_TOKEN"
fi

port_open "$COREPLANE_SERVER__PORT" && die "port $COREPLANE_SERVER__PORT is taken: choose another with make run PORT=NNNN"

.venv/bin/coreplane migrate >"$VAR/migrate.log" 2>&1 || { cat "$VAR/migrate.log" >&2; die "migration failed"; }

pids=()
cleanup() {
    trap - INT TERM EXIT
    ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null
    wait 2>/dev/null
    say "stopped"
}
trap cleanup INT TERM EXIT

.venv/bin/coreplane serve & pids+=($!)
wait_until "coreplane serve" /dev/null 60 curl -fsS "${url}readyz" || die "the control plane did not become ready"
# The agent registers once with the admin token, then runs with only its own token file:
# the admin credential never sits in a long-running agent's environment.
.venv/bin/coreplane agent --register >"$VAR/agent-register.log" 2>&1 \
    || { cat "$VAR/agent-register.log" >&2; die "the agent could not register"; }
env -u COREPLANE_ADMIN_TOKEN .venv/bin/coreplane agent & pids+=($!)

say "console: $url  (log in with the admin token in $token_hint)"
say "press Ctrl-C to stop"
wait -n "${pids[@]}" || true
