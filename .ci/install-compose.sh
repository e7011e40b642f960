#!/usr/bin/env bash
# Builds the Docker Compose v2 CLI (docker/compose, a Go program; Debian
# bookworm packages only the old Python docker-compose 1.29) from its Go
# module into .cache/bin/docker-compose, and installs it as a Docker CLI
# plugin where every docker CLI looks for one
# (/usr/local/lib/docker/cli-plugins), so that `docker compose version`
# works exactly as a Docker user types it.
#
# Compose's go.mod has no replace directives at this pin; its excludes are
# mirrored, and any replace that appears when the pin moves is mirrored too
# (gomodbuild.sh). The version is stamped the way its Makefile does.
#
# Idempotent: nothing is built when .cache/bin/docker-compose reports the
# pin, nothing is copied when the plugin is already that binary. Built at the
# lowest priority and one package at a time, as the machine's cores are
# shared with running tests.
# Runs as root, or through sudo when not root (the plugin directory).
set -euo pipefail

COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
MOD="github.com/docker/compose/v2"
PKG="$MOD/cmd"
PLUGIN_DIR="${DOCKER_CLI_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}"

# shellcheck source=gomodbuild.sh
source "$(dirname "${BASH_SOURCE[0]}")/gomodbuild.sh"
OUT="$BIN_DIR/docker-compose"

reports_pin() { [[ -x "$1" ]] && [[ "$("$1" version --short 2>/dev/null)" == "${COMPOSE_VERSION#v}" ]]; }

if reports_pin "$OUT"; then
  echo "docker-compose ${COMPOSE_VERSION} already built at $OUT"
else
  gomod_prepare compose
  gomod_download "${MOD}@${COMPOSE_VERSION}"
  gomod_init compose "${MOD}@${COMPOSE_VERSION}"
  refuse_relative() {
    echo "compose go.mod has a relative replace ($1 => $2) that cannot be mirrored" >&2
    exit 1
  }
  gomod_mirror_replaces refuse_relative
  gomod_mirror_excludes
  go get "${PKG}@${COMPOSE_VERSION}"
  nice -n 19 go build -p 1 -trimpath -o "$OUT.tmp" \
    -ldflags "-s -w -X ${MOD}/internal.Version=${COMPOSE_VERSION}" "$PKG"
  gomod_install "$OUT"
  reports_pin "$OUT" || { echo "docker-compose does not report ${COMPOSE_VERSION} after the build" >&2; exit 1; }
fi

# The plugin is a copy, not a link: it must outlive this checkout.
if cmp -s "$OUT" "$PLUGIN_DIR/docker-compose"; then
  echo "docker compose plugin ${COMPOSE_VERSION} already installed in $PLUGIN_DIR"
  exit 0
fi
SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then SUDO=(sudo -n); fi
"${SUDO[@]}" install -D -m 0755 "$OUT" "$PLUGIN_DIR/docker-compose"
echo "docker compose plugin ${COMPOSE_VERSION} installed in $PLUGIN_DIR"
