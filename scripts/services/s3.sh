# S3-compatible object server: SeaweedFS (master + volume + filer + S3 gateway in one
# `weed server`), built from the Go module proxy; see docs/backends.md for the choice.
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6   # weed 4.53; must match seaweedfs/go.mod
S3_PORT="${COREPLANE_S3_PORT:-28333}"
WEED_MASTER_PORT="${COREPLANE_WEED_MASTER_PORT:-29333}"
WEED_VOLUME_PORT="${COREPLANE_WEED_VOLUME_PORT:-28080}"
WEED_FILER_PORT="${COREPLANE_WEED_FILER_PORT:-28888}"
WEED_BIN="$CACHE/bin/weed-4.53-${SEAWEEDFS_VERSION##*-}"

s3_packages() { echo curl; }

s3_install() {
    [[ -x $WEED_BIN ]] && return 0
    export PATH="$PATH:/usr/local/go/bin"
    command -v go >/dev/null || die "s3: Go is needed to build SeaweedFS (apt-get install golang, or /usr/local/go)"
    local build=$CACHE/seaweedfs-build
    mkdir -p "$build" "$(dirname "$WEED_BIN")"
    cp "$ROOT/scripts/seaweedfs/go.mod" "$ROOT/scripts/seaweedfs/go.sum" "$ROOT/scripts/seaweedfs/tools.go" "$build/"
    say "s3: building SeaweedFS $SEAWEEDFS_VERSION from the Go module proxy (first run only; several minutes)"
    (cd "$build" && GOFLAGS=-mod=mod go build -trimpath -o "$WEED_BIN.tmp" github.com/seaweedfs/seaweedfs/weed) \
        >"$CACHE/seaweedfs-build.log" 2>&1 \
        || { tail -20 "$CACHE/seaweedfs-build.log" >&2; die "s3: SeaweedFS build failed"; }
    mv "$WEED_BIN.tmp" "$WEED_BIN"
}

_s3_ok() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/" | grep -qE '^(200|403)$'; }

s3_up() {
    s3_install
    local dir=$VAR/s3 access secret
    mkdir -p "$dir/data"
    access=coreplane
    secret=$(secret_file "$VAR/secrets/s3")
    (umask 077; cat >"$dir/s3.json" <<CONF
{"identities": [{"name": "coreplane",
  "credentials": [{"accessKey": "$access", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
CONF
    )
    if ! pid_alive "$dir/weed.pid"; then
        say "s3: starting SeaweedFS S3 gateway on 127.0.0.1:$S3_PORT"
        # The key-encryption key for SSE-S3 (256 bits, hex); without it SSE-S3 is off.
        WEED_S3_SSE_KEK=$(secret_file "$VAR/secrets/s3-kek" 32) spawn "$dir/weed.pid" "$dir/weed.log" "$WEED_BIN" server \
            -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
            -master.port="$WEED_MASTER_PORT" -master.port.grpc=$((WEED_MASTER_PORT + 10000)) \
            -master.volumeSizeLimitMB=256 \
            -volume.port="$WEED_VOLUME_PORT" -volume.port.grpc=$((WEED_VOLUME_PORT + 10000)) \
            -volume.max=0 \
            -filer -filer.port="$WEED_FILER_PORT" -filer.port.grpc=$((WEED_FILER_PORT + 10000)) \
            -s3 -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + 10000)) -s3.config="$dir/s3.json"
    fi
    wait_until s3 "$dir/weed.log" "$HEALTH_TIMEOUT" _s3_ok || die "s3 (SeaweedFS) is not healthy"
    write_env s3 \
        "COREPLANE_S3__ENDPOINT=127.0.0.1:$S3_PORT" \
        "COREPLANE_S3__ACCESS_KEY=$access" \
        "COREPLANE_S3__SECRET_KEY=$secret"
}

s3_down() { stop_pidfile s3 "$VAR/s3/weed.pid" 30; }

s3_status() { _s3_ok 2>/dev/null && echo "up 127.0.0.1:$S3_PORT (SeaweedFS 4.53)" || echo down; }
