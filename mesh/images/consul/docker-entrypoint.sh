#!/bin/sh
# The parts of the official image's entrypoint that docker-compose.yml uses:
#   - flags alone, or a consul subcommand, run consul with them;
#   - `consul agent` gets -data-dir=/consul/data -config-dir=/consul/config;
#   - an agent started as root runs as the consul user, its data dir its own.
# Not implemented: CONSUL_BIND_INTERFACE, CONSUL_CLIENT_INTERFACE,
# CONSUL_LOCAL_CONFIG, CONSUL_ALLOW_PRIVILEGED_PORTS.
set -e

if [ "${1#-}" != "$1" ]; then
	set -- consul agent "$@"
elif [ "$1" != consul ] && consul "$1" --help >/dev/null 2>&1; then
	set -- consul "$@"
fi

if [ "$1" = consul ] && [ "$2" = agent ]; then
	shift 2
	set -- consul agent -data-dir=/consul/data -config-dir=/consul/config "$@"
	if [ "$(id -u)" = 0 ]; then
		chown -R consul:consul /consul/data /consul/config
		exec setpriv --reuid=consul --regid=consul --init-groups "$@"
	fi
fi
exec "$@"
