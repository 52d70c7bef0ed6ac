#!/usr/bin/env bash
# A Debian base image with Python 3 and venv, for building the project's Dockerfile (--build-arg
# BASE=dropflow-ci/python-base:local). No container registry is reachable, so it is made with debootstrap from
# the machine's own apt mirror and imported (about a minute). Skipped when the image already exists.
set -euo pipefail
IMAGE=dropflow-ci/python-base:local
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE already exists"
    exit 0
fi
apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
# The first Debian mirror apt is configured with (deb822 sources, else a classic sources.list).
MIRROR=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}' || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
ROOTFS="$CI_STATE/python-base-rootfs"
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$ROOTFS" "$MIRROR" >"$CI_STATE/debootstrap.log"
tar -C "$ROOTFS" -c . | docker import - "$IMAGE" >/dev/null
rm -rf "$ROOTFS"
docker run --rm --network none "$IMAGE" python3 -c 'import sys, venv; print("base image python", sys.version.split()[0])'
