# RabbitMQ with the management and prometheus plugins, run as the rabbitmq user.
RABBIT_PORT="${COREPLANE_RABBIT_PORT:-55672}"
RABBIT_MGMT_PORT="${COREPLANE_RABBIT_MGMT_PORT:-55673}"
RABBIT_PROM_PORT="${COREPLANE_RABBIT_PROM_PORT:-55692}"
RABBIT_DIST_PORT="${COREPLANE_RABBIT_DIST_PORT:-55674}"
RABBIT_EPMD_PORT="${COREPLANE_RABBIT_EPMD_PORT:-54369}"
RABBIT_NODE=coreplane@localhost

rabbitmq_packages() { echo rabbitmq-server; }

# Sets RABBIT_ARGV: the command line that runs PROGRAM as the rabbitmq user for this node,
# an array so that no path or value is split on spaces.
_rabbit_argv() {  # _rabbit_argv DIR PROGRAM ARGS...
    local dir=$1; shift
    RABBIT_ARGV=(runuser -u rabbitmq -- env HOME="$dir" RABBITMQ_NODENAME="$RABBIT_NODE"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$RABBIT_PORT"
        RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" ERL_EPMD_PORT="$RABBIT_EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
        RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log"
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid" RABBITMQ_LOGS="$dir/log/rabbit.log" "$@")
}

_rabbitmqctl() {  # _rabbitmqctl DIR ARGS...
    local dir=$1; shift
    _rabbit_argv "$dir" /usr/lib/rabbitmq/bin/rabbitmqctl -q "$@"
    "${RABBIT_ARGV[@]}"
}

_epmd() {  # _epmd ARGS... : the epmd of this node's port
    runuser -u rabbitmq -- env ERL_EPMD_PORT="$RABBIT_EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 epmd "$@"
}

# The node would start epmd itself, and epmd outlives it. Started here instead, with a
# marker, so that rabbitmq_down stops the epmd this harness started and no other.
_epmd_up() {  # _epmd_up DIR
    local marker=$1/epmd.started
    port_open "$RABBIT_EPMD_PORT" && return 0
    _epmd -daemon || die "rabbitmq: epmd did not start on $RABBIT_EPMD_PORT"
    touch "$marker"
    wait_until epmd /dev/null 10 port_open "$RABBIT_EPMD_PORT" || die "rabbitmq: epmd is not listening"
}

_epmd_down() {  # _epmd_down DIR
    local marker=$1/epmd.started
    [[ -f $marker ]] || return 0
    if port_open "$RABBIT_EPMD_PORT"; then
        _epmd -kill >/dev/null || { warn "rabbitmq: epmd on $RABBIT_EPMD_PORT would not stop"; return 1; }
    fi
    rm -f "$marker"
}

_rabbit_mgmt_ok() { curl -fsS -u "$1" "http://127.0.0.1:$RABBIT_MGMT_PORT/api/overview" >/dev/null; }

rabbitmq_up() {
    local dir pw
    dir=$(user_dir rabbitmq rabbitmq)
    pw=$(secret_file "$VAR/secrets/rabbitmq")
    mkdir -p "$dir/log" "$dir/mnesia"
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$RABBIT_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $RABBIT_MGMT_PORT
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = $RABBIT_PROM_PORT
loopback_users = none
log.file.level = warning
CONF
    echo '[rabbitmq_management,rabbitmq_prometheus].' >"$dir/enabled_plugins"
    chown -R rabbitmq: "$dir"
    _epmd_up "$dir"  # first: rabbitmqctl would start one too
    if ! _rabbitmqctl "$dir" status >/dev/null 2>&1; then
        say "rabbitmq: starting 127.0.0.1:$RABBIT_PORT (management :$RABBIT_MGMT_PORT)"
        _rabbit_argv "$dir" /usr/lib/rabbitmq/bin/rabbitmq-server
        spawn "$dir/launcher.pid" "$dir/log/console.log" "${RABBIT_ARGV[@]}"
        wait_until rabbitmq "$dir/log/console.log" "$HEALTH_TIMEOUT" \
            _rabbitmqctl "$dir" await_startup --timeout 5 || die "rabbitmq is not healthy"
    fi
    if ! _rabbitmqctl "$dir" list_users | grep -q '^coreplane'; then
        _rabbitmqctl "$dir" add_user coreplane "$pw" >/dev/null
        _rabbitmqctl "$dir" set_user_tags coreplane administrator >/dev/null
        _rabbitmqctl "$dir" set_permissions -p / coreplane '.*' '.*' '.*' >/dev/null
    fi
    wait_until "rabbitmq management" "$dir/log/rabbit.log" "$HEALTH_TIMEOUT" \
        _rabbit_mgmt_ok "coreplane:$pw" || die "rabbitmq management API is not healthy"
    write_env rabbitmq \
        "COREPLANE_RABBITMQ__URL=amqp://coreplane:$pw@127.0.0.1:$RABBIT_PORT/%2F" \
        "COREPLANE_RABBITMQ__MANAGEMENT_URL=http://coreplane:$pw@127.0.0.1:$RABBIT_MGMT_PORT" \
        "COREPLANE_RABBITMQ__PROMETHEUS_URL=http://127.0.0.1:$RABBIT_PROM_PORT/metrics"
}

rabbitmq_down() {
    local dir=$VAR/rabbitmq
    [[ -d $dir ]] || return 0
    # A node that is not running refuses the shutdown too: the checks below decide.
    _rabbitmqctl "$dir" shutdown >/dev/null 2>&1 || true
    stop_pidfile rabbitmq "$dir/launcher.pid" 10 || return 1
    if _rabbitmqctl "$dir" status >/dev/null 2>&1; then
        warn "rabbitmq: the node still answers"
        return 1
    fi
    _epmd_down "$dir"
}

rabbitmq_status() {
    port_open "$RABBIT_PORT" && port_open "$RABBIT_MGMT_PORT" \
        && echo "up 127.0.0.1:$RABBIT_PORT (management :$RABBIT_MGMT_PORT)" || echo down
}
