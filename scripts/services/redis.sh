# Redis: a primary, two replicas, and three Sentinels watching them (the failover yardstick).
read -ra REDIS_PORTS <<<"${COREPLANE_REDIS_PORTS:-56379 56380 56381}"  # first is the primary
read -ra SENTINEL_PORTS <<<"${COREPLANE_SENTINEL_PORTS:-56390 56391 56392}"
SENTINEL_MASTER=coreplane

redis_packages() { echo redis-server redis-sentinel redis-tools; }

_redis_ping() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }
_replica_synced() { redis-cli -h 127.0.0.1 -p "$1" info replication | grep -q 'master_link_status:up'; }

redis_up() {
    local dir=$VAR/redis port conf primary=${REDIS_PORTS[0]}
    mkdir -p "$dir"
    for port in "${REDIS_PORTS[@]}"; do
        mkdir -p "$dir/$port"
        _redis_ping "$port" && continue
        conf=$dir/$port/redis.conf
        # The role is only set on first start: after a failover, the config Redis rewrote wins.
        if [[ ! -f $conf ]]; then
            {
                echo "bind 127.0.0.1"
                echo "port $port"
                echo "dir $dir/$port"
                echo "pidfile $dir/$port/redis.pid"
                echo "logfile $dir/$port/redis.log"
                echo "daemonize yes"
                echo "save ''"
                echo "appendonly no"
                echo "protected-mode yes"
                [[ $port != "$primary" ]] && echo "replicaof 127.0.0.1 $primary"
            } >"$conf"
        fi
        say "redis: starting 127.0.0.1:$port"
        redis-server "$conf" || die "redis: failed to start on $port"
    done
    for port in "${REDIS_PORTS[@]}"; do
        wait_until "redis:$port" "$dir/$port/redis.log" "$HEALTH_TIMEOUT" _redis_ping "$port" \
            || die "redis on $port is not healthy"
    done
    for port in "${REDIS_PORTS[@]:1}"; do
        wait_until "redis replica $port" "$dir/$port/redis.log" "$HEALTH_TIMEOUT" _replica_synced "$port" \
            || die "redis replica on $port did not sync with its primary"
    done
    for port in "${SENTINEL_PORTS[@]}"; do
        mkdir -p "$dir/sentinel-$port"
        _redis_ping "$port" && continue
        conf=$dir/sentinel-$port/sentinel.conf
        if [[ ! -f $conf ]]; then
            cat >"$conf" <<CONF
bind 127.0.0.1
port $port
dir $dir/sentinel-$port
pidfile $dir/sentinel-$port/sentinel.pid
logfile $dir/sentinel-$port/sentinel.log
daemonize yes
sentinel monitor $SENTINEL_MASTER 127.0.0.1 $primary 2
sentinel down-after-milliseconds $SENTINEL_MASTER 3000
sentinel failover-timeout $SENTINEL_MASTER 10000
sentinel parallel-syncs $SENTINEL_MASTER 1
CONF
        fi
        say "redis-sentinel: starting 127.0.0.1:$port"
        redis-sentinel "$conf" || die "redis-sentinel: failed to start on $port"
    done
    for port in "${SENTINEL_PORTS[@]}"; do
        wait_until "sentinel:$port" "$dir/sentinel-$port/sentinel.log" "$HEALTH_TIMEOUT" _redis_ping "$port" \
            || die "redis-sentinel on $port is not healthy"
    done
    local replicas sentinels
    replicas=$(printf '"redis://127.0.0.1:%s/0",' "${REDIS_PORTS[@]:1}")
    sentinels=$(printf '"127.0.0.1:%s",' "${SENTINEL_PORTS[@]}")
    write_env redis \
        "COREPLANE_REDIS__URL=redis://127.0.0.1:$primary/0" \
        "COREPLANE_REDIS__REPLICA_URLS='[${replicas%,}]'" \
        "COREPLANE_REDIS__SENTINEL_ADDRS='[${sentinels%,}]'" \
        "COREPLANE_REDIS__SENTINEL_MASTER=$SENTINEL_MASTER"
}

redis_down() {
    local dir=$VAR/redis port failed=0
    for port in "${SENTINEL_PORTS[@]}"; do
        stop_pidfile "sentinel:$port" "$dir/sentinel-$port/sentinel.pid" || failed=1
    done
    for port in "${REDIS_PORTS[@]}"; do
        stop_pidfile "redis:$port" "$dir/$port/redis.pid" || failed=1
    done
    return "$failed"
}

redis_status() {
    local port out=()
    for port in "${REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do
        _redis_ping "$port" 2>/dev/null && out+=("$port:up") || out+=("$port:down")
    done
    echo "${out[*]}"
}
