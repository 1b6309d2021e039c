# Prometheus (with promtool) scraping itself, HAProxy and RabbitMQ on loopback.
PROM_PORT="${COREPLANE_PROM_PORT:-59090}"

prometheus_packages() { echo prometheus; }

_prom_ok() { curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null; }

prometheus_up() {
    local dir=$VAR/prometheus
    mkdir -p "$dir/data"
    cat >"$dir/prometheus.yml" <<CONF
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PROM_PORT"]}]
  - job_name: haproxy
    static_configs: [{targets: ["127.0.0.1:${HAPROXY_METRICS_PORT:-58404}"]}]
  - job_name: rabbitmq
    static_configs: [{targets: ["127.0.0.1:${RABBIT_PROM_PORT:-55692}"]}]
CONF
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
