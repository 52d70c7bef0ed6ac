#!/usr/bin/env bash
# Docker engine for the Docker app drop and container image tests: Debian's docker.io (20.10), started by hand
# (no systemd here) on the default socket so that docker.from_env() finds it. It must not touch the host's
# network: no docker0 bridge, no iptables/NAT rules, no IP forwarding -- containers use --network none or host.
# Its state lives under $CI_STATE/docker; its PID goes to $CI_PIDS and 10-docker.down.sh stops it.
set -euo pipefail
apt-get install -y -qq --no-install-recommends docker.io busybox-static >/dev/null
D="$CI_STATE/docker"
mkdir -p "$D"
if docker info >/dev/null 2>&1; then
    echo "a Docker engine already answers on the default socket; using it"
    exit 0
fi
setsid dockerd --storage-driver=overlay2 --data-root="$D/data" --exec-root="$D/exec" --pidfile="$D/dockerd.pid" \
    --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    >"$D/dockerd.log" 2>&1 </dev/null &
echo $! >>"$CI_PIDS"
for _ in $(seq 240); do
    docker info >/dev/null 2>&1 && break
    sleep 0.25
done
docker info --format 'dockerd {{.ServerVersion}}, storage {{.Driver}}, cgroup v{{.CgroupVersion}}'
