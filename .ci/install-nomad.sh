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

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/bin"
BUILD_DIR="$ROOT/.cache/build/nomad"
OUT="$BIN_DIR/nomad"

if [[ -x "$OUT" ]] && "$OUT" version 2>/dev/null | head -n1 | grep -q "^Nomad ${NOMAD_VERSION}\( \|$\)"; then
  echo "nomad ${NOMAD_VERSION} already installed at $OUT"
  exit 0
fi

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-buildvcs=false"
# The build must never touch the repository's own go.mod/go.sum.
export GOWORK=off
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/hashicorp/nomad/api"

mkdir -p "$BIN_DIR" "$BUILD_DIR"
cd "$BUILD_DIR"

start=$(date +%s)

nomad_json="$(go mod download -json "github.com/hashicorp/nomad@${NOMAD_VERSION}")"
nomad_dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$nomad_json")"
nomad_commit="$(sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]*\)",\{0,1\}$/\1/p' <<<"$nomad_json")"
[[ -f "$nomad_dir/go.mod" ]] || { echo "cannot locate nomad go.mod" >&2; exit 1; }
nomad_go="$(awk '$1=="go"{print $2; exit}' "$nomad_dir/go.mod")"

# Start from a clean throwaway module every time the binary has to be built.
rm -f go.mod go.sum
cat > go.mod <<EOF
module nomadbuild

go ${nomad_go}

require (
	github.com/hashicorp/nomad ${NOMAD_VERSION}
	github.com/hashicorp/nomad/api ${NOMAD_API_VERSION}
)
EOF

# Mirror Nomad's replaces, except the relative ones (./api), which the
# requirement above stands in for.
awk '
  /^replace[[:space:]]*\(/ { inblk=1; next }
  inblk && /^\)/          { inblk=0; next }
  inblk                   { print; next }
  /^replace[[:space:]]/   { sub(/^replace[[:space:]]+/, ""); print }
' "$nomad_dir/go.mod" | sed 's,//.*,,' | while read -r old arrow new newver; do
  [[ -z "${old:-}" || "$arrow" != "=>" ]] && continue
  [[ "$new" == ./* || "$new" == ../* ]] && continue
  go mod edit -replace="${old}=${new}${newver:+@$newver}"
done
grep -q 'github.com/hashicorp/hcl => ' go.mod || { echo "nomad's hcl replace was not mirrored" >&2; exit 1; }

# Resolve the build list for the nomad main package (adds go.sum entries).
go get "github.com/hashicorp/nomad@${NOMAD_VERSION}" "github.com/hashicorp/nomad/api@${NOMAD_API_VERSION}"

nice -n 19 go build -p 1 -trimpath -o "$OUT.tmp" \
  -ldflags "-s -w -X github.com/hashicorp/nomad/version.GitCommit=${nomad_commit:0:8}" \
  github.com/hashicorp/nomad
mv -f "$OUT.tmp" "$OUT"

"$OUT" version
echo "nomad built in $(( $(date +%s) - start ))s -> $OUT"
