# Debian's Chromium, driven by Playwright for Python (no browser download), and axe-core
# from the npm registry, which tests/browser/test_console_a11y.py injects into each page.
chromium_packages() { echo chromium fonts-dejavu-core; }

# Pinned: a new axe-core adds rules, and a page that passed must not start failing unasked.
AXE_VERSION=4.14.1
AXE_JS="$VAR/node/node_modules/axe-core/axe.min.js"

axe_ensure() {
    local installed="$VAR/node/node_modules/axe-core/package.json"
    if [[ -f $installed ]] && grep -q "\"version\": \"$AXE_VERSION\"" "$installed"; then
        return 0
    fi
    # The machine's Node.js brings npm; Debian's packages are the fallback on a bare Debian.
    command -v npm >/dev/null 2>&1 || apt_ensure nodejs npm
    say "installing axe-core@$AXE_VERSION from the npm registry into $VAR/node"
    mkdir -p "$VAR/node"
    npm install --prefix "$VAR/node" --no-audit --no-fund --no-save --loglevel=error \
        "axe-core@$AXE_VERSION" >&2 || die "npm install axe-core@$AXE_VERSION failed"
    [[ -f $AXE_JS ]] || die "axe-core installed without $AXE_JS"
}

chromium_up() {
    /usr/bin/chromium --version >/dev/null 2>&1 || die "chromium: /usr/bin/chromium does not run"
    axe_ensure
    write_env chromium "COREPLANE_TEST_CHROMIUM=/usr/bin/chromium" "COREPLANE_TEST_AXE=$AXE_JS"
}

chromium_down() { :; }

chromium_status() { /usr/bin/chromium --version 2>/dev/null || echo "not installed"; }
