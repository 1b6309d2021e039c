# Debian's Chromium, driven by Playwright for Python (no browser download).
chromium_packages() { echo chromium fonts-dejavu-core; }

chromium_up() {
    /usr/bin/chromium --version >/dev/null 2>&1 || die "chromium: /usr/bin/chromium does not run"
    write_env chromium "COREPLANE_TEST_CHROMIUM=/usr/bin/chromium"
}

chromium_down() { :; }

chromium_status() { /usr/bin/chromium --version 2>/dev/null || echo "not installed"; }
