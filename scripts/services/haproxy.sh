# HAProxy 2.6: a default instance with its Prometheus exporter and an admin runtime socket.
# scripts/haproxy-instance.sh starts further instances from any config.
HAPROXY_METRICS_PORT="${COREPLANE_HAPROXY_METRICS_PORT:-58404}"

haproxy_packages() { echo haproxy socat; }

haproxy_up() {
    local dir=$VAR/haproxy/default sock
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<CONF
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend monitoring
    bind 127.0.0.1:$HAPROXY_METRICS_PORT
    http-request use-service prometheus-exporter if { path /metrics }
    stats enable
    stats uri /stats
    stats refresh 10s
CONF
    sock=$(bash "$ROOT/scripts/haproxy-instance.sh" start default "$dir/haproxy.cfg") || die "haproxy did not start"
    write_env haproxy \
        "COREPLANE_HAPROXY__SOCKET=$sock" \
        "COREPLANE_HAPROXY__METRICS_URL=http://127.0.0.1:$HAPROXY_METRICS_PORT/metrics"
}

haproxy_down() {
    local inst failed=0
    for inst in "$VAR"/haproxy/*/; do
        [[ -d $inst ]] || continue  # the unmatched glob itself
        bash "$ROOT/scripts/haproxy-instance.sh" stop "$(basename "$inst")" || failed=1
    done
    return "$failed"
}

haproxy_status() { bash "$ROOT/scripts/haproxy-instance.sh" status default 2>/dev/null || true; }
