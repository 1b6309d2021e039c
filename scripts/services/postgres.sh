# PostgreSQL 15: its own cluster under var/, run as the postgres user.
PG_PORT="${COREPLANE_PG_PORT:-55432}"
PG_BIN=/usr/lib/postgresql/15/bin

postgres_packages() { echo postgresql-15 postgresql-contrib; }

postgres_up() {
    local dir data run pw
    dir=$(user_dir postgres postgres)
    data=$dir/data run=$dir/run
    pw=$(secret_file "$VAR/secrets/postgres")
    if [[ ! -s $data/PG_VERSION ]]; then
        say "postgres: initdb in $data"
        local pwfile=$dir/.pwfile
        (umask 077; echo "$pw" >"$pwfile"); chown postgres: "$pwfile"
        runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || { tail -20 "$dir/initdb.log" >&2; die "postgres: initdb failed"; }
        rm -f "$pwfile"
    fi
    mkdir -p "$run"; chown postgres: "$run"
    if ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        say "postgres: starting on 127.0.0.1:$PG_PORT"
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $run -c max_connections=200 \
                -c shared_buffers=256MB -c fsync=on -c log_min_messages=warning" >/dev/null \
            || { tail -20 "$dir/postgres.log" >&2; die "postgres: failed to start"; }
    fi
    wait_until postgres "$dir/postgres.log" "$HEALTH_TIMEOUT" \
        runuser -u postgres -- "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" || die "postgres is not healthy"
    local psql=(runuser -u postgres -- psql -h "$run" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
    if [[ $("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='coreplane'") != 1 ]]; then
        "${psql[@]}" -c "CREATE ROLE coreplane LOGIN SUPERUSER PASSWORD '$pw'" >/dev/null
        "${psql[@]}" -c "CREATE DATABASE coreplane OWNER coreplane" >/dev/null
    fi
    write_env postgres \
        "COREPLANE_POSTGRES__URL=postgresql+psycopg://coreplane:$pw@127.0.0.1:$PG_PORT/coreplane"
}

postgres_down() {
    local data=$VAR/postgres/data
    [[ -d $data ]] || return 0
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 && return 0
    # pg_ctl also fails when no server runs, which is stopped as well.
    ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

postgres_status() {
    runuser -u postgres -- "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null \
        && echo "up 127.0.0.1:$PG_PORT" || echo down
}
