#!/usr/bin/env bash
# `make lint`'s dependency audit: pip-audit over every pinned package in constraints.txt.
# A finding fails it, unless scripts/audit-ignore.txt lists its id with the reason (one
# "ID  reason" a line). Where PyPI's vulnerability data cannot be reached, it fails too and
# says so: an audit that could not look is not a pass.
set -euo pipefail
LOG_TAG=audit
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

PIP_AUDIT_VERSION=2.10.1
tool="$VAR/audit-venv"
if [[ ! -x $tool/bin/pip-audit ]] || ! "$tool/bin/pip-audit" --version | grep -q "$PIP_AUDIT_VERSION"; then
    say "installing pip-audit $PIP_AUDIT_VERSION into var/audit-venv (kept apart from .venv)"
    python3 -m venv "$tool"
    "$tool/bin/pip" install -q --disable-pip-version-check "pip-audit==$PIP_AUDIT_VERSION" \
        || die "could not install pip-audit"
fi

ignores=()
if [[ -f scripts/audit-ignore.txt ]]; then
    while read -r id _reason; do
        [[ -z $id || $id == \#* ]] || ignores+=(--ignore-vuln "$id")
    done <scripts/audit-ignore.txt
fi

report="$VAR/pip-audit.txt"
set +e
"$tool/bin/pip-audit" -r constraints.txt --no-deps --disable-pip --progress-spinner off \
    "${ignores[@]}" >"$report" 2>&1
rc=$?
set -e
if grep -q "could not be audited" "$report"; then
    unaudited=$(grep -c "could not be audited" "$report")
    die "pip-audit could not get vulnerability data for $unaudited of the pinned packages (PyPI's JSON API or OSV unreachable from here): they are NOT audited. Report: var/pip-audit.txt"
fi
cat "$report"
((rc == 0)) || die "pip-audit found known vulnerabilities: upgrade the pin in constraints.txt, or justify the id in scripts/audit-ignore.txt"
say "no known vulnerabilities in constraints.txt"
