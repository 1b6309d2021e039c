# Alertmanager (with amtool), single node with clustering off, run with alerts/alertmanager.yml:
# every alert goes to the control plane's webhook. The shipped receiver URL is already the
# address `make run` serves on (127.0.0.1:8000), so the file is copied as it is; what is
# per machine is the bearer token, kept in var/secrets/alertmanager-webhook and written as
# coreplane-webhook.token beside the copy, where the shipped file reads it. A `make run` that
# should take these alerts sets COREPLANE_WEBHOOKS__ALERTMANAGER_TOKEN to it (README).
AM_PORT="${COREPLANE_AM_PORT:-59093}"

alertmanager_packages() { echo prometheus-alertmanager; }

_am_ok() { curl -fsS "http://127.0.0.1:$AM_PORT/-/ready" >/dev/null; }

alertmanager_up() {
    local dir=$VAR/alertmanager token
    mkdir -p "$dir/data"
    token=$(secret_file "$VAR/secrets/alertmanager-webhook")
    (umask 077 && printf '%s\n' "$token" >"$dir/coreplane-webhook.token")
    cp "$ROOT/alerts/alertmanager.yml" "$dir/alertmanager.yml"
    amtool check-config "$dir/alertmanager.yml" >/dev/null || die "alertmanager: alerts/alertmanager.yml is invalid"
    if ! pid_alive "$dir/alertmanager.pid"; then
        say "alertmanager: starting 127.0.0.1:$AM_PORT"
        spawn "$dir/alertmanager.pid" "$dir/alertmanager.log" prometheus-alertmanager \
            --config.file="$dir/alertmanager.yml" --storage.path="$dir/data" \
            --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address=
    else
        curl -fsS -X POST "http://127.0.0.1:$AM_PORT/-/reload" >/dev/null \
            || die "alertmanager: the running one refused the configuration"
    fi
    wait_until alertmanager "$dir/alertmanager.log" "$HEALTH_TIMEOUT" _am_ok || die "alertmanager is not healthy"
    write_env alertmanager "COREPLANE_ALERTMANAGER__URL=http://127.0.0.1:$AM_PORT"
}

alertmanager_down() { stop_pidfile alertmanager "$VAR/alertmanager/alertmanager.pid"; }

alertmanager_status() { _am_ok 2>/dev/null && echo "up 127.0.0.1:$AM_PORT" || echo down; }
