#!/bin/sh
# Prints alerts/prometheus.yml, the one Prometheus configuration, with its placeholder
# addresses filled in; nothing else changes. The local harness (scripts/services/prometheus.sh)
# and docker-compose.yml run their Prometheus from it: POSIX sh and sed only, as the
# Prometheus image has no bash.
#   prometheus-config.sh SOURCE REPLICAS CONTROL_PLANE ALERTMANAGER TOKEN_FILE [JOB=HOST:PORT...]
# REPLICAS       the control-plane replicas job `coreplane` scrapes, comma-separated host:port
# CONTROL_PLANE  one replica or their load balancer: /metrics/backends and the catalog's http_sd
# ALERTMANAGER   host:port
# TOKEN_FILE     a file holding a coreplane token with the viewer role
# JOB=HOST:PORT  an exporter at a fixed address, appended as a static job of its own (where
#                exporters are registered in the catalog, as alerts/prometheus.yml expects, none)
set -eu
[ $# -ge 5 ] || { echo "usage: $0 SOURCE REPLICAS CONTROL_PLANE ALERTMANAGER TOKEN_FILE [JOB=HOST:PORT...]" >&2; exit 2; }
source=$1 replicas=$2 control_plane=$3 alertmanager=$4 token_file=$5
shift 5

# A placeholder renamed in the source would otherwise go out unreplaced.
for placeholder in '  - job_name: coreplane$' 'coreplane.example:8000' 'alertmanager.example:9093' \
    '/etc/prometheus/coreplane-token' '^scrape_configs:'; do
    grep -q -- "$placeholder" "$source" || { echo "$0: '$placeholder' is not in $source" >&2; exit 1; }
done
# The appended jobs belong to scrape_configs, so it must stay the source's last key.
if sed '1,/^scrape_configs:/d' "$source" | grep -q '^[a-z]'; then
    echo "$0: scrape_configs is not the last key of $source" >&2
    exit 1
fi

targets=$(printf '%s' "$replicas" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')
# Comments keep the placeholders: they explain them.
sed -e '/^[[:space:]]*#/b' \
    -e "/^  - job_name: coreplane\$/,/targets:/ s|\"coreplane.example:8000\"|$targets|" \
    -e "s|coreplane.example:8000|$control_plane|g" \
    -e "s|alertmanager.example:9093|$alertmanager|g" \
    -e "s|/etc/prometheus/coreplane-token|$token_file|g" "$source"
for job in "$@"; do
    printf '\n  - job_name: %s\n    static_configs:\n      - targets: ["%s"]\n' "${job%%=*}" "${job#*=}"
done
