#!/bin/sh
# The parts of the official image's entrypoint that docker-compose.yml uses:
#   - RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS (and _VHOST) name the
#     user created on first start, as default_user/default_pass in the
#     configuration (conf.d);
#   - started as root, the server runs as the rabbitmq user, its data
#     directory its own.
# Not implemented: RABBITMQ_ERLANG_COOKIE, the *_FILE variants.
set -e

if [ "$1" = rabbitmq-server ]; then
	conf=/etc/rabbitmq/conf.d/10-defaults.conf
	: >"$conf"
	[ -z "${RABBITMQ_DEFAULT_USER:-}" ] || echo "default_user = $RABBITMQ_DEFAULT_USER" >>"$conf"
	[ -z "${RABBITMQ_DEFAULT_PASS:-}" ] || echo "default_pass = $RABBITMQ_DEFAULT_PASS" >>"$conf"
	[ -z "${RABBITMQ_DEFAULT_VHOST:-}" ] || echo "default_vhost = $RABBITMQ_DEFAULT_VHOST" >>"$conf"
	if [ "$(id -u)" = 0 ]; then
		chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
		exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"
	fi
fi
exec "$@"
