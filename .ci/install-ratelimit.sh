#!/usr/bin/env bash
# Builds envoyproxy/ratelimit (the Envoy global rate limit service) from its Go
# module inside a throwaway module, into .cache/bin/ratelimit.
#
# ratelimit publishes no release tags after v1.4.0, so it is pinned to a
# pseudo-version of its main branch. Its go.mod at that commit has no
# replace/exclude directives; any that appear (if the pin moves) are mirrored
# (non-relative replaces verbatim, exclude as is).
#
# Idempotent: the pinned version is recorded in .cache/bin/ratelimit.version;
# nothing is done when it matches and the binary exists.
set -euo pipefail

RATELIMIT_VERSION="${RATELIMIT_VERSION:-v1.4.1-0.20260122083618-3fb702589d36}"
MOD="github.com/envoyproxy/ratelimit"
PKG="$MOD/src/service_cmd"

# shellcheck source=gomodbuild.sh
source "$(dirname "${BASH_SOURCE[0]}")/gomodbuild.sh"
OUT="$BIN_DIR/ratelimit"
STAMP="$OUT.version"

if [[ -x "$OUT" && -f "$STAMP" && "$(cat "$STAMP")" == "$RATELIMIT_VERSION" ]]; then
  echo "ratelimit ${RATELIMIT_VERSION} already installed at $OUT"
  exit 0
fi

gomod_prepare ratelimit
gomod_download "${MOD}@${RATELIMIT_VERSION}"
gomod_init ratelimit

refuse_relative() {
  echo "ratelimit go.mod has a relative replace ($1 => $2) that cannot be mirrored" >&2
  exit 1
}
gomod_mirror_replaces refuse_relative
gomod_mirror_excludes

go get "${PKG}@${RATELIMIT_VERSION}"
go build -trimpath -ldflags "-s -w" -o "$OUT.tmp" "$PKG"
gomod_install "$OUT"
echo "$RATELIMIT_VERSION" > "$STAMP"
