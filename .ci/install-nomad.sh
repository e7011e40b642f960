#!/usr/bin/env bash
# Builds Nomad from its Go module (no prebuilt download) into .cache/bin/nomad.
# The nomad/ tests run `nomad fmt`, `nomad job validate` and `nomad job run
# -output` on the Nomad job specifications with it.
#
# Nomad's go.mod replaces its API module with the relative path ./api, which
# is not part of the github.com/hashicorp/nomad module zip (nested modules are
# cut out of it). The throwaway module therefore requires the API module at
# the pseudo-version of the same commit as the release tag instead; that
# pseudo-version is not in the checksum database, hence GONOSUMDB for it. Its
# other (non-relative) replaces, among them the Nomad fork of HCL1 that the
# job parser needs, only take effect in the main module, so they are mirrored.
# The version string is compiled in (version/version.go), so `nomad version`
# reports the release without ldflags; GitCommit is set for completeness.
#
# Idempotent: does nothing when .cache/bin/nomad already reports the pin.
# Built at the lowest priority and one package at a time (-p 1), since the
# machine's two cores are shared with running tests: about 12 min wall clock
# there (downloads included), 7 min of user CPU.
set -euo pipefail

NOMAD_VERSION="${NOMAD_VERSION:-v1.11.1}"
# github.com/hashicorp/nomad/api at the commit tagged v1.11.1.
NOMAD_API_VERSION="${NOMAD_API_VERSION:-v0.0.0-20251209201056-5b76eb053561}"

# shellcheck source=gomodbuild.sh
source "$(dirname "${BASH_SOURCE[0]}")/gomodbuild.sh"
OUT="$BIN_DIR/nomad"

if [[ -x "$OUT" ]] && "$OUT" version 2>/dev/null | head -n1 | grep -q "^Nomad ${NOMAD_VERSION}\( \|$\)"; then
  echo "nomad ${NOMAD_VERSION} already installed at $OUT"
  exit 0
fi

export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/hashicorp/nomad/api"
gomod_prepare nomad
gomod_download "github.com/hashicorp/nomad@${NOMAD_VERSION}"
gomod_init nomad "github.com/hashicorp/nomad@${NOMAD_VERSION}" "github.com/hashicorp/nomad/api@${NOMAD_API_VERSION}"

# The relative replace (./api) is stood in for by the requirement above.
skip_relative() { :; }
gomod_mirror_replaces skip_relative
grep -q 'github.com/hashicorp/hcl => ' go.mod || { echo "nomad's hcl replace was not mirrored" >&2; exit 1; }

# Resolve the build list for the nomad main package (adds go.sum entries).
go get "github.com/hashicorp/nomad@${NOMAD_VERSION}" "github.com/hashicorp/nomad/api@${NOMAD_API_VERSION}"

nice -n 19 go build -p 1 -trimpath -o "$OUT.tmp" \
  -ldflags "-s -w -X github.com/hashicorp/nomad/version.GitCommit=${MOD_HASH:0:8}" \
  github.com/hashicorp/nomad
gomod_install "$OUT"
"$OUT" version
