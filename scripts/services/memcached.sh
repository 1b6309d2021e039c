# Memcached: two nodes, for consistent hashing across nodes.
MEMCACHED_PORTS=(${COREPLANE_MEMCACHED_PORTS:-51211 51212})

memcached_packages() { echo memcached; }

_memcached_ok() ( exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'version\r\n' >&3 && head -c 8 <&3 | grep -q VERSION; )

memcached_up() {
    local dir=$VAR/memcached port servers=""
    mkdir -p "$dir"
    for port in "${MEMCACHED_PORTS[@]}"; do
        if ! pid_alive "$dir/$port.pid"; then
            say "memcached: starting 127.0.0.1:$port"
            memcached -d -u root -l 127.0.0.1 -p "$port" -U 0 -m 64 -c 1024 -P "$dir/$port.pid" \
                >>"$dir/$port.log" 2>&1 || die "memcached: failed to start on $port"
        fi
        wait_until "memcached:$port" "$dir/$port.log" "$HEALTH_TIMEOUT" _memcached_ok "$port" \
            || die "memcached on $port is not healthy"
        servers+="\"127.0.0.1:$port\","
    done
    write_env memcached "COREPLANE_MEMCACHED__SERVERS='[${servers%,}]'"
}

memcached_down() {
    local port
    for port in "${MEMCACHED_PORTS[@]}"; do stop_pidfile "memcached:$port" "$VAR/memcached/$port.pid"; done
}

memcached_status() {
    local port out=()
    for port in "${MEMCACHED_PORTS[@]}"; do
        _memcached_ok "$port" 2>/dev/null && out+=("$port:up") || out+=("$port:down")
    done
    echo "${out[*]}"
}
