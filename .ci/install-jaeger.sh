#!/usr/bin/env bash
# Builds Jaeger v2 (cmd/jaeger: an OpenTelemetry Collector distribution with
# Jaeger's storage and query extensions) from its Go module into
# .cache/bin/jaeger. It is the trace backend of `make up` and of the tracing
# e2e suite: OTLP in (gRPC and HTTP), an in-memory store, the query API out.
#
# The module zip carries no UI assets (they are built by npm in the release
# pipeline), so the query extension serves the API but no UI: see README
# "Tracing" for reading a trace through the API.
#
# Jaeger's go.mod has one replace (Shopify/sarama), which only takes effect
# in the main module, so it is mirrored. The version is not compiled in but
# set by -ldflags (internal/version), so `jaeger version` reports the pin.
#
# Idempotent: does nothing when .cache/bin/jaeger already reports the pin.
# Built at the lowest priority, since the machine's cores are shared with
# running tests: about 3-6 min wall clock.
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"

# shellcheck source=gomodbuild.sh
source "$(dirname "${BASH_SOURCE[0]}")/gomodbuild.sh"
OUT="$BIN_DIR/jaeger"

if [[ -x "$OUT" ]] && "$OUT" version 2>/dev/null | grep -q "\"gitVersion\": *\"${JAEGER_VERSION}\""; then
  echo "jaeger ${JAEGER_VERSION} already installed at $OUT"
  exit 0
fi

gomod_prepare jaeger
gomod_download "github.com/jaegertracing/jaeger@${JAEGER_VERSION}"
gomod_init jaeger "github.com/jaegertracing/jaeger@${JAEGER_VERSION}"
no_relative() { echo "unexpected relative replace of $1 in jaeger's go.mod" >&2; exit 1; }
gomod_mirror_replaces no_relative
gomod_mirror_excludes

# Resolve the build list for the jaeger main package (adds go.sum entries).
go get "github.com/jaegertracing/jaeger/cmd/jaeger@${JAEGER_VERSION}"

build_date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$MOD_INFO")"
v=github.com/jaegertracing/jaeger/internal/version
nice -n 19 go build -trimpath -o "$OUT.tmp" \
  -ldflags "-s -w -X $v.latestVersion=${JAEGER_VERSION} -X $v.commitSHA=${MOD_HASH} -X $v.date=${build_date}" \
  github.com/jaegertracing/jaeger/cmd/jaeger
gomod_install "$OUT"
"$OUT" version
