#!/usr/bin/env bash
# Base system packages: Python headers and a compiler for packages that build from source (pymetis has
# wheels, but a missing wheel must not break CI), procps for the tests' process checks, iproute2 for the
# multi-host tests (network namespaces), curl for the README's REST walkthrough.
set -euo pipefail
if command -v apt-get >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv python3-dev build-essential procps iproute2 \
        curl >/dev/null
fi
