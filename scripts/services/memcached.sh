# Memcached: two nodes, for consistent hashing across nodes.
read -ra MEMCACHED_PORTS <<<"${COREPLANE_MEMCACHED_PORTS:-51211 51212}"

memcached_packages() { echo memcached; }

_memcached_ok() ( exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'version\r\n' >&3 && head -c 8 <&3 | grep -q VERSION; )

memcached_up() {
    local dir port servers=""
    # Unprivileged, as Debian runs it; -u drops root before the daemon writes its pid file,
    # so the folder is nobody's.
    dir=$(user_dir nobody memcached)
    for port in "${MEMCACHED_PORTS[@]}"; do
        if ! pid_alive "$dir/$port.pid"; then
            say "memcached: starting 127.0.0.1:$port"
            memcached -d -u nobody -l 127.0.0.1 -p "$port" -U 0 -m 64 -c 1024 -P "$dir/$port.pid" \
                >>"$dir/$port.log" 2>&1 || die "memcached: failed to start on $port"
        fi
        wait_until "memcached:$port" "$dir/$port.log" "$HEALTH_TIMEOUT" _memcached_ok "$port" \
            || die "memcached on $port is not healthy"
        servers+="\"127.0.0.1:$port\","
    done
    write_env memcached "COREPLANE_MEMCACHED__SERVERS='[${servers%,}]'"
}

memcached_down() {
    local port failed=0
    for port in "${MEMCACHED_PORTS[@]}"; do
        stop_pidfile "memcached:$port" "$VAR/memcached/$port.pid" || failed=1
    done
    return "$failed"
}

memcached_status() {
    local port out=()
    for port in "${MEMCACHED_PORTS[@]}"; do
        if _memcached_ok "$port" 2>/dev/null; then out+=("$port:up"); else out+=("$port:down"); fi
    done
    echo "${out[*]}"
}
