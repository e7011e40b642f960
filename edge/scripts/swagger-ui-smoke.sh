#!/usr/bin/env bash
# Loads the edge's Swagger UI in headless Chromium and checks that it
# rendered the merged document with every expected service.
#
#   edge/scripts/swagger-ui-smoke.sh http://127.0.0.1:8090/docs/ users products
#
# Needs Debian's chromium (apt-get install chromium). Exits non-zero, with
# the reason, when the page does not list an operation of each service.
set -euo pipefail
URL=${1:?usage: swagger-ui-smoke.sh DOCS_URL SERVICE...}
shift
[ "$#" -gt 0 ] || set -- users products
CHROMIUM=${CHROMIUM:-chromium}
command -v "$CHROMIUM" >/dev/null 2>&1 || { echo "swagger-ui-smoke: $CHROMIUM not found (apt-get install chromium)" >&2; exit 1; }

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The background-networking flags keep Chromium from calling out of this
# closed network at start.
dom=$(timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--user-data-dir="$profile" --virtual-time-budget=10000 --dump-dom "$URL" 2>/dev/null)

grep -q 'class="title">Portico API' <<<"$dom" || { echo "swagger-ui-smoke: the page shows no Portico API title" >&2; exit 1; }
for service in "$@"; do
	if ! grep -q "data-path=\"/api/$service/" <<<"$dom"; then
		echo "swagger-ui-smoke: no operation of $service on the page" >&2
		exit 1
	fi
done
ops=$(grep -o 'opblock-summary-method">[A-Z]*' <<<"$dom" | wc -l)
echo "swagger-ui-smoke: $URL lists $ops operations of: $*"
