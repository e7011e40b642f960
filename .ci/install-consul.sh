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

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/bin"
BUILD_DIR="$ROOT/.cache/build/consul"
OUT="$BIN_DIR/consul"

if [[ -x "$OUT" ]] && "$OUT" version 2>/dev/null | head -n1 | grep -qx "Consul ${CONSUL_VERSION}"; then
  echo "consul ${CONSUL_VERSION} already installed at $OUT"
  exit 0
fi

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-buildvcs=false"
# The build must never touch the repository's own go.mod/go.sum.
export GOWORK=off

mkdir -p "$BIN_DIR" "$BUILD_DIR"
cd "$BUILD_DIR"

start=$(date +%s)

# Fetch Consul's module first so we can read its go.mod.
consul_dir="$(go mod download -json "github.com/hashicorp/consul@${CONSUL_VERSION}" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
consul_info="$(go mod download -json "github.com/hashicorp/consul@${CONSUL_VERSION}" |
  sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p')"
[[ -f "$consul_dir/go.mod" ]] || { echo "cannot locate consul go.mod" >&2; exit 1; }
consul_go="$(awk '$1=="go"{print $2; exit}' "$consul_dir/go.mod")"

# Start from a clean throwaway module every time the binary has to be built.
rm -f go.mod go.sum
cat > go.mod <<EOF
module consulbuild

go ${consul_go}

require github.com/hashicorp/consul ${CONSUL_VERSION}
EOF

# Mirror Consul's replaces: relative ./<dir> replaces of its nested modules are
# turned into requirements of the versions Consul's go.mod lists; any other
# (non-relative) replace is copied as it is.
awk '
  /^replace[[:space:]]*\(/ { inblk=1; next }
  inblk && /^\)/          { inblk=0; next }
  inblk                   { print; next }
  /^replace[[:space:]]/   { sub(/^replace[[:space:]]+/, ""); print }
' "$consul_dir/go.mod" | sed 's,//.*,,' | while read -r old arrow new newver; do
  [[ -z "${old:-}" || "$arrow" != "=>" ]] && continue
  # The "old" side may carry a version: "mod v1.2.3 => ..."
  old_ver=""
  if [[ "$new" == "=>" ]]; then old_ver="$arrow"; arrow="$new"; new="$newver"; newver=""; fi
  if [[ "$new" == ./* || "$new" == ../* ]]; then
    ver="$(awk -v m="$old" '$1==m && $2 ~ /^v/ {print $2; exit}' "$consul_dir/go.mod")"
    [[ -n "$ver" ]] || { echo "no version of $old in consul go.mod" >&2; exit 1; }
    go mod edit -require="${old}@${ver}"
  else
    go mod edit -replace="${old}${old_ver:+@$old_ver}=${new}${newver:+@$newver}"
  fi
done

# Mirror Consul's exclude directives.
awk '
  /^exclude[[:space:]]*\(/ { inblk=1; next }
  inblk && /^\)/          { inblk=0; next }
  inblk                   { print; next }
  /^exclude[[:space:]]/   { sub(/^exclude[[:space:]]+/, ""); print }
' "$consul_dir/go.mod" | sed 's,//.*,,' | while read -r mod ver; do
  [[ -n "${mod:-}" ]] && go mod edit -exclude="${mod}@${ver}"
done

# Resolve the build list for the consul main package (adds go.sum entries).
go get "github.com/hashicorp/consul@${CONSUL_VERSION}"

git_commit="$(sed -n 's/.*"Hash":"\([0-9a-f]*\)".*/\1/p' "$consul_info")"
build_date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$consul_info")"

go build -trimpath -o "$OUT.tmp" \
  -ldflags "-s -w -X github.com/hashicorp/consul/version.GitCommit=${git_commit:0:8} -X github.com/hashicorp/consul/version.BuildDate=${build_date}" \
  github.com/hashicorp/consul
mv -f "$OUT.tmp" "$OUT"

"$OUT" version
echo "consul built in $(( $(date +%s) - start ))s -> $OUT"
