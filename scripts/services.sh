#!/usr/bin/env bash
# The local real-services harness: one entry point for every service tests use.
#   scripts/services.sh up [NAME...]      install what is missing, start, wait until healthy
#   scripts/services.sh down [NAME...]    stop
#   scripts/services.sh status [NAME...]  one line per service
# Idempotent: a running service is reused. Addresses go to var/services.env.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Start order matters a little: Prometheus scrapes HAProxy and RabbitMQ.
ALL=(postgres redis memcached rabbitmq elasticsearch s3 haproxy prometheus alertmanager chromium)
# make lint checks each of these files on its own (its names come from lib.sh).
# shellcheck source=/dev/null
for svc in "${ALL[@]}"; do source "$ROOT/scripts/services/$svc.sh"; done

cmd=${1:-status}; shift || true
selected=("${@:-${ALL[@]}}")
for svc in "${selected[@]}"; do
    [[ " ${ALL[*]} " == *" $svc "* ]] || die "unknown service '$svc' (known: ${ALL[*]})"
done

write_services_env() {
    local tmp=$VAR/services.env.tmp
    {
        echo "# Written by scripts/services.sh; addresses of the local real services."
        echo "# Load with: set -a; . var/services.env; set +a"
        cat "$ENV_DIR"/*.env 2>/dev/null || true
    } >"$tmp"
    chmod 600 "$tmp"
    mv "$tmp" "$VAR/services.env"
}

case $cmd in
up)
    [[ $(id -u) == 0 ]] || die "run as root: services are installed with apt-get and run as system users"
    mkdir -p "$VAR" "$CACHE"
    pkgs=()
    for svc in "${selected[@]}"; do read -ra p <<<"$("${svc}_packages")"; pkgs+=("${p[@]}"); done
    apt_ensure "${pkgs[@]}"
    started=$SECONDS
    for svc in "${selected[@]}"; do
        t=$SECONDS
        "${svc}_up"
        say "$svc: healthy ($((SECONDS - t))s)"
    done
    write_services_env
    say "all ${#selected[@]} service(s) healthy in $((SECONDS - started))s; addresses in $VAR/services.env"
    ;;
down)
    # A service that would not stop keeps its address in var/services.env, and the run fails.
    failed=()
    for ((i = ${#selected[@]} - 1; i >= 0; i--)); do
        svc=${selected[i]}
        if "${svc}_down"; then
            rm -f "$ENV_DIR/$svc.env"
            say "$svc: stopped"
        else
            warn "$svc: could not stop it"
            failed+=("$svc")
        fi
    done
    write_services_env
    ((${#failed[@]} == 0)) || die "not stopped: ${failed[*]}"
    ;;
status)
    for svc in "${selected[@]}"; do printf '%-14s %s\n' "$svc" "$("${svc}_status" 2>/dev/null || echo down)"; done
    ;;
*) die "usage: $0 up|down|status [NAME...]" ;;
esac
