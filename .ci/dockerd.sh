#!/usr/bin/env bash
# Makes sure a Docker engine answers, starting Debian's dockerd only when none
# does, and stops only an engine it started itself.
#
#   .ci/dockerd.sh start   use the engine of DOCKER_HOST or of the default
#                          socket; when none answers (and DOCKER_HOST is
#                          unset), start dockerd with the system defaults
#                          (socket /var/run/docker.sock, data /var/lib/docker)
#                          in the background, its log in .run/docker/dockerd.log
#   .ci/dockerd.sh stop    stop that dockerd, if this script started it
#                          (recorded in .run/docker/started); else nothing
#
# The system defaults, not a private socket under .run/: the images built
# for docker-compose.yml (mesh/images) outlive a checkout and every worktree
# reuses them, and `docker compose ps` works afterwards exactly as typed.
# Machines without systemd (ours) have no service to start it; with systemd,
# the docker service is normally running and this script only checks it.
# Needs: root (dockerd), .ci/install-docker.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.run/docker"
MARK="$STATE/started"
PIDFILE=/var/run/docker.pid
DOCKER=${DOCKER:-docker}

answers() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start() {
	if answers; then
		echo "dockerd.sh: engine already running ($("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null), ${DOCKER_HOST:-default socket})" >&2
		return
	fi
	[ -z "${DOCKER_HOST:-}" ] || { echo "dockerd.sh: DOCKER_HOST=$DOCKER_HOST does not answer" >&2; exit 1; }
	command -v dockerd >/dev/null 2>&1 || { echo "dockerd.sh: dockerd not found (.ci/install-docker.sh)" >&2; exit 1; }
	[ "$(id -u)" -eq 0 ] || { echo "dockerd.sh: dockerd must be started as root" >&2; exit 1; }
	mkdir -p "$STATE"
	# Its own session: it outlives the make or test that started it.
	setsid -f dockerd --pidfile "$PIDFILE" >>"$STATE/dockerd.log" 2>&1 </dev/null
	for _ in $(seq 1 120); do
		if answers; then
			tr -dc '0-9' <"$PIDFILE" >"$MARK"
			echo "dockerd.sh: started dockerd (pid $(cat "$MARK"), log $STATE/dockerd.log)" >&2
			return
		fi
		sleep 0.5
	done
	echo "dockerd.sh: dockerd did not answer within 60s; its log:" >&2
	tail -n 20 "$STATE/dockerd.log" >&2
	exit 1
}

stop() {
	[ -f "$MARK" ] || return 0
	local pid
	pid=$(cat "$MARK")
	rm -f "$MARK"
	# Only the dockerd we recorded, and only if that pid still is one.
	[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 0
	kill -TERM "$pid"
	# dockerd stops its containers first (up to their stop timeout).
	for _ in $(seq 1 120); do
		[ -d "/proc/$pid" ] || { echo "dockerd.sh: stopped dockerd (pid $pid)" >&2; return; }
		sleep 0.5
	done
	echo "dockerd.sh: dockerd (pid $pid) still running after 60s" >&2
	exit 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
