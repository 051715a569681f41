#!/usr/bin/env bash
# The browser tests (tests/test_docs.py, tests/test_page.py) drive Debian's chromium. Installs it when it is missing and this
# run may (Linux, as root); otherwise says how, and the browser test fails with the same advice.
set -uo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ]; then
  echo "chromium is missing: install Debian's package (sudo apt-get install chromium) for the browser tests" >&2
  exit 0
fi
echo "installing Debian's chromium for the browser tests (log: /tmp/chromium-install.log)"
if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    >/tmp/chromium-install.log 2>&1; then
  echo "installing chromium failed:" >&2
  tail -n 20 /tmp/chromium-install.log >&2
fi
exit 0
