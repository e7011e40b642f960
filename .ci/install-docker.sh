#!/usr/bin/env bash
# Installs the Docker engine and what the local images and Nomad's bridge
# networking need, from Debian's archive:
#
#   docker.io                    dockerd, containerd, runc and the docker CLI
#                                (bookworm: 20.10); .ci/dockerd.sh starts it
#                                when nothing runs it
#   debootstrap                  the Debian root file system the local images
#                                are built on (mesh/images/build.sh)
#   containernetworking-plugins  CNI plugins, for Nomad's bridge networking
#
# The Compose v2 CLI is not packaged in bookworm: .ci/install-compose.sh.
# Idempotent: a dpkg look-up per package when all are present. Installing
# never starts the packaged docker service (policy-rc.d, as .ci/deps.sh).
# Runs as root, or through sudo when not root.
set -euo pipefail

PACKAGES=(docker.io debootstrap containernetworking-plugins)
export DEBIAN_FRONTEND=noninteractive

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive); fi

pkg_version() { # prints the installed version, or nothing
	dpkg-query -W -f='${db:Status-Abbrev}|${Version}' "$1" 2>/dev/null |
		awk -F'|' '$1 ~ /^ii/ { print $2 }'
}

missing=()
for p in "${PACKAGES[@]}"; do
	[ -n "$(pkg_version "$p")" ] || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
	echo "installing Debian packages: ${missing[*]}"
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\n# added by portico .ci/install-docker.sh during apt-get install\nexit 101\n' |
			"${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
		"${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
		trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	"${SUDO[@]}" apt-get update -qq
	"${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" >/dev/null
fi

for p in "${PACKAGES[@]}"; do
	v=$(pkg_version "$p")
	[ -n "$v" ] || { echo "$p did not install" >&2; exit 1; }
	if [[ " ${missing[*]} " == *" $p "* ]]; then echo "$p installed ($v)"; else echo "$p already present ($v)"; fi
done
