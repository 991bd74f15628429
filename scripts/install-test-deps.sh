#!/usr/bin/env bash
# Install the system packages the test suite needs, on Debian/Ubuntu. Idempotent: what is
# already there is skipped, and `apt-get update` runs at most once, only when something is missing.
#   chromium    headless browser for tests/service/test_web_page.py (Playwright drives /usr/bin/chromium)
#   prometheus  promtool/prometheus for the metrics tests
# Run as root (or with sudo available). The Python side (pip install playwright) is separate:
# Playwright's own browser download is not used; the tests launch the Debian chromium.
set -euo pipefail

packages=()
if [ -x /usr/bin/chromium ]; then
    echo "chromium: already installed ($(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium))"
else
    packages+=(chromium)
fi
if command -v prometheus >/dev/null 2>&1; then
    echo "prometheus: already installed ($(command -v prometheus))"
else
    packages+=(prometheus)
fi

if [ ${#packages[@]} -eq 0 ]; then
    echo "nothing to install"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "error: need root (or sudo) to install: ${packages[*]}" >&2
        exit 1
    fi
fi

echo "installing: ${packages[*]}"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
