#!/usr/bin/env bash
# Installs schemathesis (PyPI) into a private venv, .cache/venv/schemathesis,
# for the contract run through the ingress (e2e/contract). The test finds the
# `st` command at .cache/venv/schemathesis/bin/st.
#
# Idempotent: does nothing when the venv's schemathesis already reports the
# pin.
set -euo pipefail

SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.cache/venv/schemathesis"

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true
}

if [[ -x "$VENV/bin/st" && "$(installed_version)" == "$SCHEMATHESIS_VERSION" ]]; then
  echo "schemathesis ${SCHEMATHESIS_VERSION} already installed at $VENV"
  exit 0
fi

mkdir -p "$(dirname "$VENV")"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "schemathesis==${SCHEMATHESIS_VERSION}"

got="$(installed_version)"
if [[ "$got" != "$SCHEMATHESIS_VERSION" ]]; then
  echo "installed schemathesis reports '$got', expected $SCHEMATHESIS_VERSION" >&2
  exit 1
fi
echo "schemathesis ${SCHEMATHESIS_VERSION} installed at $VENV"
