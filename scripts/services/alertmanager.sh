# Alertmanager (with amtool), single node: clustering off.
AM_PORT="${COREPLANE_AM_PORT:-59093}"

alertmanager_packages() { echo prometheus-alertmanager; }

_am_ok() { curl -fsS "http://127.0.0.1:$AM_PORT/-/ready" >/dev/null; }

alertmanager_up() {
    local dir=$VAR/alertmanager
    mkdir -p "$dir/data"
    # Until alerts/alertmanager.yml routes to the control plane, alerts go nowhere.
    cat >"$dir/alertmanager.yml" <<CONF
route:
  receiver: blackhole
  group_by: [alertname]
receivers:
  - name: blackhole
CONF
    amtool check-config "$dir/alertmanager.yml" >/dev/null || die "alertmanager: generated config is invalid"
    if ! pid_alive "$dir/alertmanager.pid"; then
        say "alertmanager: starting 127.0.0.1:$AM_PORT"
        spawn "$dir/alertmanager.pid" "$dir/alertmanager.log" prometheus-alertmanager \
            --config.file="$dir/alertmanager.yml" --storage.path="$dir/data" \
            --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address=
    fi
    wait_until alertmanager "$dir/alertmanager.log" "$HEALTH_TIMEOUT" _am_ok || die "alertmanager is not healthy"
    write_env alertmanager "COREPLANE_ALERTMANAGER__URL=http://127.0.0.1:$AM_PORT"
}

alertmanager_down() { stop_pidfile alertmanager "$VAR/alertmanager/alertmanager.pid"; }

alertmanager_status() { _am_ok 2>/dev/null && echo "up 127.0.0.1:$AM_PORT" || echo down; }
