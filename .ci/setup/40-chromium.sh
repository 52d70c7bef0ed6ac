#!/usr/bin/env bash
# Headless Chromium for the web monitor's browser tests (tests/monitor/test_browser.py): Debian's chromium and
# its chromedriver, so that Selenium is given the driver's path and downloads nothing at run time (CI has no
# internet beyond the package registries). Selenium itself comes with the project's test extra.
set -euo pipefail
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
chromium_version=$(chromium --version)
driver_version=$(chromedriver --version)
echo "$chromium_version"
echo "$driver_version"
