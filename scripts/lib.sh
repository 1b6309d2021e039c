# Shared helpers of the local real-services harness. Sourced, not run.
# Every service listens on loopback only; its data lives under $VAR (git-ignored).

ROOT="${COREPLANE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
VAR="${COREPLANE_VAR:-$ROOT/var}"
CACHE="${COREPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coreplane}"
# Builds that service users must be able to read go here (~/.cache may be root-only).
# shellcheck disable=SC2034  # used by the files that source this one, as is HEALTH_TIMEOUT
OPT="${COREPLANE_OPT:-/opt/coreplane}"
ENV_DIR="$VAR/services.d"
# shellcheck disable=SC2034
HEALTH_TIMEOUT="${COREPLANE_HEALTH_TIMEOUT:-120}"

say()  { printf '\033[1m[%s]\033[0m %s\n' "${LOG_TAG:-services}" "$*" >&2; }
warn() { printf '\033[33m[%s]\033[0m %s\n' "${LOG_TAG:-services}" "$*" >&2; }
die()  { printf '\033[31m[%s] error:\033[0m %s\n' "${LOG_TAG:-services}" "$*" >&2; exit 1; }

# A random secret for a local service; kept under var/ so restarts reuse it.
secret_file() {  # secret_file PATH [BYTES] -> prints the secret (hex), creating it once
    local path=$1 bytes=${2:-18}
    if [[ ! -s $path ]]; then
        mkdir -p "$(dirname "$path")"
        (umask 077; head -c "$bytes" /dev/urandom | od -An -tx1 | tr -d ' \n' >"$path")
    fi
    cat "$path"
}

# apt packages, installed together in one call when any is missing.
APT_UPDATED=0
apt_ensure() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    say "installing Debian packages: ${missing[*]}"
    if ((!APT_UPDATED)); then
        apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    # Debian's maintainer scripts try to start services; there is no init here, which is fine.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$CACHE/apt.log" 2>&1 || { tail -20 "$CACHE/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
}

port_open() {  # port_open PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pid_alive() {  # pid_alive PIDFILE
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Wait until a command succeeds; on timeout show the log's tail and fail naming the service.
wait_until() {  # wait_until NAME LOGFILE TIMEOUT CMD...
    local name=$1 log=$2 timeout=$3; shift 3
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            warn "$name did not become healthy within ${timeout}s; last lines of $log:"
            [[ -f $log ]] && tail -n 30 "$log" >&2
            return 1
        fi
        sleep 0.5
    done
}

# Wait up to TIMEOUT seconds for a process to exit; fails if it is still there.
_gone() {  # _gone PID TIMEOUT
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# Fails (the pid file kept) when the process outlives SIGKILL, e.g. one we may not signal:
# `services.sh down` must not call such a service stopped.
stop_pidfile() {  # stop_pidfile NAME PIDFILE [TIMEOUT]
    local name=$1 pidfile=$2 timeout=${3:-30} pid
    pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true  # it may have exited meanwhile: _gone decides
    if ! _gone "$pid" "$timeout"; then
        warn "$name (pid $pid) ignored SIGTERM for ${timeout}s; killing it"
        kill -9 "$pid" 2>/dev/null || true
        _gone "$pid" 5 || { warn "$name (pid $pid) is still running"; return 1; }
    fi
    rm -f "$pidfile"
}

# Start a foreground program detached from this shell, recording its pid.
spawn() {  # spawn PIDFILE LOGFILE [runuser -u USER --] CMD...
    local pidfile=$1 log=$2; shift 2
    setsid nohup "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

# A folder the service user owns. When that user cannot reach $VAR (a clone under a
# root-only home), the data lives under /var/lib/coreplane and var/ holds a link to it.
user_dir() {  # user_dir USER NAME -> prints the path
    local user=$1 name=$2
    local dir="$VAR/$name"
    mkdir -p "$VAR"
    if ! runuser -u "$user" -- test -x "$VAR" 2>/dev/null; then
        local key
        key=$(printf '%s' "$VAR" | sha1sum | cut -c1-12)
        local real="/var/lib/coreplane/$key/$name"
        mkdir -p "$real"
        chmod 755 /var/lib/coreplane "/var/lib/coreplane/$key"
        [[ -L $dir ]] || { rm -rf "$dir"; ln -s "$real" "$dir"; }
        dir=$real
    fi
    mkdir -p "$dir"
    chown -R "$user": "$dir"
    echo "$dir"
}

ensure_system_user() {  # ensure_system_user NAME
    id -u "$1" >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin "$1"
}

write_env() {  # write_env SERVICE LINE... : the service's addresses for var/services.env
    local svc=$1; shift
    mkdir -p "$ENV_DIR"
    printf '%s\n' "$@" >"$ENV_DIR/$svc.env"
}
