#!/usr/bin/env bash
# The browser that tests/test_browser.py drives (Playwright comes with the dev extra; its own browser
# download is not used): a Chromium from Debian's packages, installed when none is found and we may
# (root, apt-get). Otherwise say what to install and exit 0: `make test` still runs everything else,
# and the browser test fails naming what is missing. KANGAROO_LAB_CHROMIUM=/path/to/chrome skips this.
set -euo pipefail

have_chromium() {
  [ -n "${KANGAROO_LAB_CHROMIUM:-}" ] && return 0
  for name in chromium-headless-shell chromium chromium-browser google-chrome; do
    command -v "$name" >/dev/null && return 0
  done
  return 1
}

have_chromium && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "install_browser: no Chromium found; installing chromium-headless-shell and fonts-dejavu-core (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium-headless-shell fonts-dejavu-core \
    || apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
  have_chromium || { echo "install_browser: apt-get installed no Chromium" >&2; exit 1; }
else
  echo "install_browser: no Chromium found, and apt-get as root is not available here." >&2
  echo "  tests/test_browser.py will fail; the other tests and the notebooks still run." >&2
  echo "  Install one (Debian: sudo apt-get install chromium-headless-shell fonts-dejavu-core)," >&2
  echo "  or point KANGAROO_LAB_CHROMIUM at a Chromium or Chrome binary." >&2
fi
