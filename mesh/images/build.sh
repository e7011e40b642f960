#!/usr/bin/env bash
# Makes every upstream image of images.txt available to the engine, under
# exactly its pinned name: an image already present is left alone, one a
# registry has is pulled, and only one that neither has (a machine without a
# registry, like ours) is built here as a local stand-in from its folder
# (README.md says what each honours of the official image).
#
# The stand-ins build on debian:12.11-slim, itself a Debian bookworm minbase
# root file system from debootstrap (cached in .cache/images, so once per
# machine) imported into the engine. Binaries come from `make deps`:
# consul, envoy and jaeger from .cache/bin, Go from the host's toolchain.
#
# Usage: mesh/images/build.sh       (make images; needs a running engine)
# Env:   DOCKER (default docker), PULL_TIMEOUT (default 120 s per image)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE="$ROOT/.cache/images"
BIN="$ROOT/.cache/bin"
DOCKER=${DOCKER:-docker}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian

say() { printf 'images: %-28s %s\n' "$1" "$2"; }
die() { printf 'images: ERROR: %s\n' "$*" >&2; exit 1; }

"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers (.ci/dockerd.sh start)"

present() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# rootfs_tar DIGEST: the debootstrapped root file system with debian/rootfs
# added, as a tar, built once per machine (debootstrap fetches ~90 packages
# from the Debian archive) and once per change of debian/.
rootfs_tar() {
	local tar="$CACHE/debian-$SUITE-minbase-$1.tar" dir="$CACHE/debootstrap-$SUITE"
	if [ -s "$tar" ]; then
		echo "$tar"
		return
	fi
	command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (.ci/install-docker.sh)"
	mkdir -p "$CACHE"
	if [ ! -x "$dir/usr/bin/apt-get" ]; then
		local start=$SECONDS
		rm -rf "$dir.partial"
		nice -n 10 debootstrap --variant=minbase "$SUITE" "$dir.partial" "$MIRROR" >&2 ||
			die "debootstrap failed; its log: $dir.partial/debootstrap/debootstrap.log"
		mv "$dir.partial" "$dir"
		say debootstrap "$SUITE minbase in $((SECONDS - start))s" >&2
	fi
	# What Debian's official images add (debian/rootfs), then the image is
	# cleaned of what debootstrap leaves behind.
	cp -a "$HERE/debian/rootfs/." "$dir/"
	rm -f "$dir/etc/apt/sources.list"
	rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/*.log "$dir/debootstrap"
	tar --numeric-owner --xattrs -C "$dir" \
		--exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./tmp/*' \
		-cf "$tar.partial" .
	mv "$tar.partial" "$tar"
	echo "$tar"
}

# context FOLDER [PATH NAME]...: the folder's files, plus each file or
# directory PATH (a binary, a toolchain) as NAME, as one tar on stdout.
context() {
	local args=(-C "$HERE/$1" .)
	shift
	while [ $# -gt 0 ]; do
		local base
		base=$(basename "$1")
		args+=(--transform "s,^$base\(/\|\$\),$2\1," -C "$(dirname "$1")" "$base")
		shift 2
	done
	tar --numeric-owner -cf - "${args[@]}"
}

# docker_build IMAGE INPUTS: builds the context on stdin, labelled with the
# digest of its inputs; the log in .run/images.
docker_build() {
	local log="$ROOT/.run/images/${1//[\/:]/_}.log"
	mkdir -p "$ROOT/.run/images"
	if ! "$DOCKER" build --label "$INPUTS_LABEL=$2" -t "$1" - >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		die "building $1 failed; its log: $log"
	fi
}

# The certificate authorities this host adds to Debian's (a TLS-inspecting
# egress proxy's, say): the stand-ins that fetch over HTTPS while our
# images build (golang: the module proxy; node: the npm registry) trust
# them too. Usually none.
HOST_CAS=/usr/local/share/ca-certificates
if [ ! -d "$HOST_CAS" ]; then
	HOST_CAS=$(mktemp -d)
	trap 'rm -rf "$HOST_CAS"' EXIT
fi

need_version() { # what, have, want
	[[ "$2" == *"$3"* ]] || die "$1 is '$2', the image is pinned to $3 (make deps)"
}

# inputs FOLDER: a digest of everything its stand-in is built from (the
# folder, the base image, the binaries and certificates it copies), kept in
# a label, so that a stand-in whose inputs changed is built again.
INPUTS_LABEL=org.portico.mesh-images.inputs
inputs() {
	{
		(cd "$HERE/$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
		case "$1" in
		debian) echo "$SUITE $MIRROR" ;;
		*) inputs debian ;;
		esac
		case "$1" in
		golang) go env GOVERSION GOROOT ;;
		consul) sha256sum <"$BIN/consul" ;;
		envoy) sha256sum <"$(readlink -f "$BIN/envoy")" ;;
		jaeger) sha256sum <"$BIN/jaeger" ;;
		esac
		case "$1" in
		golang | node) find "$HOST_CAS" -type f -print0 | sort -z | xargs -0r sha256sum ;;
		esac
	} | sha256sum | cut -c1-16
}

build() {
	local image=$1 folder=$2 digest=$3 start=$SECONDS
	case "$folder" in
	debian)
		"$DOCKER" import --change 'CMD ["bash"]' \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change "LABEL $INPUTS_LABEL=$digest" \
			"$(rootfs_tar "$digest")" "$image" >/dev/null
		;;
	golang)
		need_version "the host's Go" "$(go env GOVERSION) " "go${image#*:} "
		context golang "$(go env GOROOT)" go "$HOST_CAS" ca-certificates | docker_build "$image" "$digest"
		;;
	node)
		context node "$HOST_CAS" ca-certificates | docker_build "$image" "$digest"
		;;
	consul)
		need_version .cache/bin/consul "$("$BIN/consul" version | head -n1) " "v${image#*:} "
		context consul "$BIN/consul" consul | docker_build "$image" "$digest"
		;;
	envoy)
		local envoy
		envoy=$(readlink -f "$BIN/envoy")
		need_version .cache/bin/envoy "$("$envoy" --version)" "/${image#*:v}/"
		context envoy "$envoy" envoy | docker_build "$image" "$digest"
		;;
	jaeger)
		# Jaeger v2's images are tagged 2.N.x; the Go module of the same
		# release is v1.(N+63).x (2.0.0 = v1.63.0, 2.13.0 = v1.76.0).
		local tag=${image#*:} minor module
		minor=$(cut -d. -f2 <<<"$tag")
		module="v1.$((minor + 63)).$(cut -d. -f3 <<<"$tag")"
		need_version .cache/bin/jaeger "$("$BIN/jaeger" version 2>/dev/null)" "\"gitVersion\":\"$module\""
		context jaeger "$BIN/jaeger" jaeger | docker_build "$image" "$digest"
		;;
	*)
		context "$folder" | docker_build "$image" "$digest"
		;;
	esac
	say "$image" "built ($folder) in $((SECONDS - start))s"
}

# images.txt in order: debian:12.11-slim, the others' base, comes first.
missing=()
while read -r image folder; do
	case "$image" in '' | '#'*) continue ;; esac
	digest=
	[ "$folder" = - ] || digest=$(inputs "$folder")
	if present "$image"; then
		have=$("$DOCKER" image inspect -f "{{index .Config.Labels \"$INPUTS_LABEL\"}}" "$image")
		# No label: the upstream image itself (pulled or loaded).
		if [ -z "$have" ] || [ "$have" = "$digest" ]; then
			say "$image" "present"
			continue
		fi
		say "$image" "stand-in out of date: building again"
	elif timeout "${PULL_TIMEOUT:-120}" "$DOCKER" pull -q "$image" >/dev/null 2>&1; then
		say "$image" "pulled"
		continue
	elif [ "$folder" = - ]; then
		missing+=("$image")
		say "$image" "MISSING: no registry, no local build (mesh/images/README.md)"
		continue
	fi
	build "$image" "$folder" "$digest"
done <"$HERE/images.txt"
[ "${#missing[@]}" -eq 0 ] || say "not available" "${missing[*]}"
