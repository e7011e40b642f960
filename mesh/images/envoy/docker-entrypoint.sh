#!/bin/sh
# As the official image's: flags alone run envoy with them.
set -e
if [ "${1#-}" != "$1" ]; then
	set -- envoy "$@"
fi
exec "$@"
