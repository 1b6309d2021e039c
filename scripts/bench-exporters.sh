#!/usr/bin/env bash
# The Debian Prometheus exporters that bench/agent.py (agent_footprint) measures the agent
# against. Installed only; the bench starts them itself, on loopback ports it picks.
set -euo pipefail
LOG_TAG=bench
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root: the exporters are installed with apt-get"
mkdir -p "$CACHE"
EXPORTERS=(prometheus-redis-exporter prometheus-postgres-exporter
           prometheus-elasticsearch-exporter prometheus-node-exporter)
apt_ensure "${EXPORTERS[@]}"
# On a host that runs systemd the packages enable and start their units on every address
# (:9100 for node); the bench needs none of them running, and nothing should listen beyond
# loopback after it.
if [[ -d /run/systemd/system ]]; then
    systemctl disable --now "${EXPORTERS[@]}" >/dev/null 2>&1 || true
fi
