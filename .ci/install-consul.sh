#!/usr/bin/env bash
# Builds Consul from its Go module (no prebuilt download) into .cache/bin/consul.
#
# Consul's own go.mod replaces its nested modules (api, sdk, envoyextensions,
# proto-public, troubleshoot) with relative paths (./api ...). Those
# directories are NOT part of the github.com/hashicorp/consul module zip
# (nested modules are cut out of it), so the replaces cannot be mirrored
# verbatim. Instead the throwaway module requires the released versions of
# those modules that Consul's go.mod itself lists, and mirrors Consul's
# `exclude` block (go-msgpack v1.1.5/v1.1.6), which only takes effect in the
# main module. The version string comes from version/VERSION (go:embed), so
# `consul version` reports the right release without ldflags; GitCommit and
# BuildDate are filled in from the module's .info for completeness.
#
# Idempotent: does nothing when .cache/bin/consul already reports the pin.
# Takes ~4-5 min of CPU on 2 cores (more when other builds run alongside).
set -euo pipefail

CONSUL_VERSION="${CONSUL_VERSION:-v1.22.5}"

# shellcheck source=gomodbuild.sh
source "$(dirname "${BASH_SOURCE[0]}")/gomodbuild.sh"
OUT="$BIN_DIR/consul"

if [[ -x "$OUT" ]] && "$OUT" version 2>/dev/null | head -n1 | grep -qx "Consul ${CONSUL_VERSION}"; then
  echo "consul ${CONSUL_VERSION} already installed at $OUT"
  exit 0
fi

gomod_prepare consul
gomod_download "github.com/hashicorp/consul@${CONSUL_VERSION}"
gomod_init consul "github.com/hashicorp/consul@${CONSUL_VERSION}"

# A relative replace of a nested module (./api ...) becomes a requirement
# of the version Consul's go.mod lists.
require_listed_version() {
  local ver
  ver="$(awk -v m="$1" '$1==m && $2 ~ /^v/ {print $2; exit}' "$MOD_DIR/go.mod")"
  [[ -n "$ver" ]] || { echo "no version of $1 in consul go.mod" >&2; exit 1; }
  go mod edit -require="$1@${ver}"
}
gomod_mirror_replaces require_listed_version
gomod_mirror_excludes

# Resolve the build list for the consul main package (adds go.sum entries).
go get "github.com/hashicorp/consul@${CONSUL_VERSION}"

build_date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$MOD_INFO")"
go build -trimpath -o "$OUT.tmp" \
  -ldflags "-s -w -X github.com/hashicorp/consul/version.GitCommit=${MOD_HASH:0:8} -X github.com/hashicorp/consul/version.BuildDate=${build_date}" \
  github.com/hashicorp/consul
gomod_install "$OUT"
"$OUT" version
