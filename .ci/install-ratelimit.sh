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

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/bin"
BUILD_DIR="$ROOT/.cache/build/ratelimit"
OUT="$BIN_DIR/ratelimit"
STAMP="$OUT.version"

if [[ -x "$OUT" && -f "$STAMP" && "$(cat "$STAMP")" == "$RATELIMIT_VERSION" ]]; then
  echo "ratelimit ${RATELIMIT_VERSION} already installed at $OUT"
  exit 0
fi

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-buildvcs=false"
export GOWORK=off

mkdir -p "$BIN_DIR" "$BUILD_DIR"
cd "$BUILD_DIR"
start=$(date +%s)

rl_dir="$(go mod download -json "${MOD}@${RATELIMIT_VERSION}" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -f "$rl_dir/go.mod" ]] || { echo "cannot locate ratelimit go.mod" >&2; exit 1; }
rl_go="$(awk '$1=="go"{print $2; exit}' "$rl_dir/go.mod")"

rm -f go.mod go.sum
cat > go.mod <<EOF
module ratelimitbuild

go ${rl_go}
EOF

directives() { # $1 = replace|exclude: print the directive's lines, comments cut
  awk -v d="$1" '
    $0 ~ "^" d "[[:space:]]*\\(" { inblk=1; next }
    inblk && /^\)/               { inblk=0; next }
    inblk                        { print; next }
    $0 ~ "^" d "[[:space:]]"     { sub("^" d "[[:space:]]+", ""); print }
  ' "$rl_dir/go.mod" | sed 's,//.*,,'
}

directives replace | while read -r a b c d e; do
  [[ -z "${a:-}" ]] && continue
  if [[ "$b" == "=>" ]]; then old="$a"; new="$c"; newver="${d:-}"
  else old="$a@$b"; new="$d"; newver="${e:-}"; fi
  if [[ "$new" == ./* || "$new" == ../* ]]; then
    echo "ratelimit go.mod has a relative replace ($old => $new) that cannot be mirrored" >&2
    exit 1
  fi
  go mod edit -replace="${old}=${new}${newver:+@$newver}"
done
directives exclude | while read -r m v; do
  [[ -n "${m:-}" ]] && go mod edit -exclude="${m}@${v}"
done

go get "${PKG}@${RATELIMIT_VERSION}"
go build -trimpath -ldflags "-s -w" -o "$OUT.tmp" "$PKG"
mv -f "$OUT.tmp" "$OUT"
echo "$RATELIMIT_VERSION" > "$STAMP"

echo "ratelimit ${RATELIMIT_VERSION} built in $(( $(date +%s) - start ))s -> $OUT"
