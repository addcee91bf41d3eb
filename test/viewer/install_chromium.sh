#!/bin/sh
# Headless Chromium for the browser viewer tests (test/viewer); `make test` runs this first.
# Idempotent and quiet: does nothing when /usr/bin/chromium exists. Debian/Ubuntu (apt) only; needs
# root or password-less sudo. Where it cannot install, it says so and exits 0: the browser tests then skip.
set -e
[ -x /usr/bin/chromium ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: no apt-get here; install Chromium as /usr/bin/chromium to run the browser tests" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install_chromium.sh: not root and no password-less sudo; browser viewer tests will skip" >&2
        exit 0
    fi
fi
echo "installing chromium and chromium-driver (apt) for the browser viewer tests"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
