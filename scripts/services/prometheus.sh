# Prometheus (with promtool) from alerts/prometheus.yml, the one Prometheus configuration:
# its rules, and its control-plane jobs pointed at `make run` (127.0.0.1:8000); plus the
# exporters this harness runs at fixed ports (itself, HAProxy, RabbitMQ), which a deployment
# registers in the catalog instead.
PROM_PORT="${COREPLANE_PROM_PORT:-59090}"

prometheus_packages() { echo prometheus; }

_prom_ok() { curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null; }

prometheus_up() {
    local dir=$VAR/prometheus
    mkdir -p "$dir/data"
    # Rule files are found relative to the configuration, as when alerts/ is copied whole.
    ln -sfn "$ROOT/alerts/rules" "$dir/rules"
    # The viewer token `make run`'s control plane wants for /metrics/backends and http_sd:
    # empty until someone puts one there (those two jobs are down until then).
    [[ -f $dir/coreplane-token ]] || (umask 077 && : >"$dir/coreplane-token")
    sh "$ROOT/scripts/prometheus-config.sh" "$ROOT/alerts/prometheus.yml" \
        127.0.0.1:8000 127.0.0.1:8000 "127.0.0.1:${AM_PORT:-59093}" "$dir/coreplane-token" \
        "prometheus=127.0.0.1:$PROM_PORT" "haproxy=127.0.0.1:${HAPROXY_METRICS_PORT:-58404}" \
        "rabbitmq=127.0.0.1:${RABBIT_PROM_PORT:-55692}" >"$dir/prometheus.yml.tmp" \
        || die "prometheus: could not render alerts/prometheus.yml"
    mv "$dir/prometheus.yml.tmp" "$dir/prometheus.yml"
    promtool check config "$dir/prometheus.yml" >/dev/null || die "prometheus: generated config is invalid"
    if ! pid_alive "$dir/prometheus.pid"; then
        say "prometheus: starting 127.0.0.1:$PROM_PORT"
        spawn "$dir/prometheus.pid" "$dir/prometheus.log" prometheus \
            --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
            --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-lifecycle \
            --storage.tsdb.retention.time=2d
    else
        curl -fsS -X POST "http://127.0.0.1:$PROM_PORT/-/reload" >/dev/null || true
    fi
    wait_until prometheus "$dir/prometheus.log" "$HEALTH_TIMEOUT" _prom_ok || die "prometheus is not healthy"
    write_env prometheus "COREPLANE_PROMETHEUS__URL=http://127.0.0.1:$PROM_PORT"
}

prometheus_down() { stop_pidfile prometheus "$VAR/prometheus/prometheus.pid"; }

prometheus_status() { _prom_ok 2>/dev/null && echo "up 127.0.0.1:$PROM_PORT" || echo down; }
