#!/bin/sh
# The parts of the official image's entrypoint (and build) that
# docker-compose.yml uses:
#   - flags alone, or a *.conf, run redis-server with them;
#   - started as root, redis-server runs as the redis user, /data its own;
#   - protected mode is off: the official image compiles that default in,
#     so other containers reach a server without a password. Here it is a
#     flag, added unless a config file is given.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
	case "${2:-}" in
	*.conf) ;;
	*) shift; set -- redis-server --protected-mode no "$@" ;;
	esac
	if [ "$(id -u)" = 0 ]; then
		find . \! -user redis -exec chown redis '{}' +
		exec setpriv --reuid=redis --regid=redis --init-groups "$@"
	fi
fi
exec "$@"
