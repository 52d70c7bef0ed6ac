#!/usr/bin/env bash
# Stop the dockerd that 10-docker.sh started (by its PID file, never by name), then drop the bind mount of the
# root network namespace that dockerd leaves under its exec root, so the CI state folder can be removed.
D="$CI_STATE/docker"
[ -f "$D/dockerd.pid" ] || exit 0
pid=$(cat "$D/dockerd.pid")
kill "$pid" 2>/dev/null || true
for _ in $(seq 80); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
done
if mountpoint -q "$D/exec/netns/default" 2>/dev/null; then umount "$D/exec/netns/default" || true; fi
rm -f "$D/dockerd.pid"
