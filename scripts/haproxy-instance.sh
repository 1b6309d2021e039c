#!/usr/bin/env bash
# Start, stop or query one HAProxy instance from a given config, with an admin runtime
# socket at var/haproxy/NAME/admin.sock (tests and the control plane drive it there).
#   scripts/haproxy-instance.sh start NAME CONFIG
#   scripts/haproxy-instance.sh stop NAME
#   scripts/haproxy-instance.sh status NAME
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cmd=${1:-} name=${2:-}
[[ -n $cmd && -n $name ]] || die "usage: $0 start NAME CONFIG | stop NAME | status NAME"
dir=$VAR/haproxy/$name
sock=$dir/admin.sock pidfile=$dir/haproxy.pid

_answers() { echo "show info" | socat -t 2 - "UNIX-CONNECT:$sock" | grep -q '^Name: HAProxy'; }

case $cmd in
start)
    config=$(realpath "${3:?CONFIG is required}")
    mkdir -p "$dir"
    if pid_alive "$pidfile" && _answers; then
        echo "$sock"; exit 0
    fi
    # A second global section, merged by HAProxy with the config's own.
    cat >"$dir/runtime.cfg" <<CONF
global
    stats socket $sock mode 600 level admin expose-fd listeners
    stats timeout 30s
    log stderr format short local0 notice
CONF
    haproxy -c -q -f "$dir/runtime.cfg" -f "$config" || die "haproxy: config $config is invalid"
    haproxy -D -p "$pidfile" -f "$dir/runtime.cfg" -f "$config" >>"$dir/haproxy.log" 2>&1 \
        || { tail -20 "$dir/haproxy.log" >&2; die "haproxy $name: failed to start"; }
    wait_until "haproxy $name" "$dir/haproxy.log" "$HEALTH_TIMEOUT" _answers || die "haproxy $name is not healthy"
    echo "$sock"
    ;;
stop)
    stop_pidfile "haproxy $name" "$pidfile"
    rm -f "$sock"
    ;;
status)
    if pid_alive "$pidfile" && _answers; then echo "up $sock"; else echo down; exit 1; fi
    ;;
*) die "unknown command $cmd" ;;
esac
