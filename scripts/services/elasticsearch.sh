# Elasticsearch from the integ-test-zip distribution on Maven Central (no bundled JDK,
# core modules plus x-pack-core and x-pack-security; see docs/backends.md). Security is
# on (basic auth for the `elastic` user, password under var/secrets), TLS off on
# loopback. It refuses root, so it runs as the `coreplane` system user.
ES_VERSION="${COREPLANE_ES_VERSION:-8.19.21}"
ES_PORT="${COREPLANE_ES_PORT:-59200}"
ES_TRANSPORT_PORT="${COREPLANE_ES_TRANSPORT_PORT:-59300}"
ES_JAVA_HOME_DEFAULT=/usr/lib/jvm/java-17-openjdk-amd64
ES_HOME="$OPT/elasticsearch-$ES_VERSION"

elasticsearch_packages() { echo openjdk-17-jre-headless maven unzip curl; }

elasticsearch_install() {
    [[ -x $ES_HOME/bin/elasticsearch ]] && return 0
    local zip="$CACHE/elasticsearch-$ES_VERSION.zip"
    if [[ ! -s $zip ]]; then
        say "elasticsearch: fetching integ-test-zip $ES_VERSION from Maven Central (~100 MB, cached in $CACHE)"
        mvn -q -B dependency:copy \
            -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
            -DoutputDirectory="$CACHE" >"$CACHE/mvn-es.log" 2>&1 \
            || { tail -20 "$CACHE/mvn-es.log" >&2; die "elasticsearch: Maven download failed"; }
    fi
    say "elasticsearch: unpacking into $ES_HOME"
    mkdir -p "$OPT"
    rm -rf "$ES_HOME.tmp" && mkdir -p "$ES_HOME.tmp"
    unzip -q "$zip" -d "$ES_HOME.tmp" || die "elasticsearch: unzip failed"
    mv "$ES_HOME.tmp/elasticsearch-$ES_VERSION" "$ES_HOME" && rm -rf "$ES_HOME.tmp"
    chmod -R a+rX "$ES_HOME"
}

_es_ok() { curl -fsS -u "elastic:$(cat "$VAR/secrets/elasticsearch")" "http://127.0.0.1:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null; }

elasticsearch_up() {
    elasticsearch_install
    ensure_system_user coreplane
    local dir pw
    dir=$(user_dir coreplane elasticsearch)
    pw=$(secret_file "$VAR/secrets/elasticsearch")
    local es_env=(env ES_PATH_CONF="$dir/config" ES_JAVA_HOME="${COREPLANE_ES_JAVA_HOME:-$ES_JAVA_HOME_DEFAULT}")
    if ! pid_alive "$dir/es.pid"; then
        mkdir -p "$dir/config" "$dir/data" "$dir/logs"
        cp -r "$ES_HOME/config/." "$dir/config/"
        cat >"$dir/config/elasticsearch.yml" <<CONF
cluster.name: coreplane
node.name: coreplane-1
path.data: $dir/data
path.logs: $dir/logs
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
discovery.type: single-node
action.destructive_requires_name: true
cluster.routing.allocation.disk.threshold_enabled: false
xpack.security.enabled: true
xpack.security.autoconfiguration.enabled: false
xpack.security.enrollment.enabled: false
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
CONF
        chown -R coreplane: "$dir"
        # The `elastic` superuser's first password comes from the keystore.
        runuser -u coreplane -- "${es_env[@]}" "$ES_HOME/bin/elasticsearch-keystore" create >/dev/null 2>&1 || true
        printf '%s' "$pw" | runuser -u coreplane -- "${es_env[@]}" \
            "$ES_HOME/bin/elasticsearch-keystore" add -x -f bootstrap.password >/dev/null \
            || die "elasticsearch: could not write the keystore"
        say "elasticsearch: starting $ES_VERSION on 127.0.0.1:$ES_PORT"
        runuser -u coreplane -- "${es_env[@]}" ES_JAVA_OPTS="-Xms512m -Xmx512m" \
            "$ES_HOME/bin/elasticsearch" -d -p "$dir/es.pid" >"$dir/logs/startup.log" 2>&1 \
            || { tail -30 "$dir/logs/startup.log" >&2; die "elasticsearch: failed to start"; }
    fi
    wait_until elasticsearch "$dir/logs/coreplane.log" "$HEALTH_TIMEOUT" _es_ok \
        || die "elasticsearch is not healthy"
    write_env elasticsearch \
        "COREPLANE_ELASTICSEARCH__URL=http://127.0.0.1:$ES_PORT" \
        "COREPLANE_ELASTICSEARCH__USERNAME=elastic" \
        "COREPLANE_ELASTICSEARCH__PASSWORD=$pw"
}

elasticsearch_down() { stop_pidfile elasticsearch "$VAR/elasticsearch/es.pid" 60; }

elasticsearch_status() { _es_ok 2>/dev/null && echo "up 127.0.0.1:$ES_PORT ($ES_VERSION)" || echo down; }
