# Sourced by the install scripts that build a program from its Go module
# (Consul, Nomad, envoyproxy/ratelimit) into .cache/bin: the module is
# required by a throwaway module of its own, so the build never touches the
# repository's go.mod, and the directives of the program's go.mod that only
# take effect in a main module (replace, exclude) are mirrored there.
#
#   gomod_prepare NAME      Go environment; cd to .cache/build/NAME; sets
#                           BIN_DIR, BUILD_DIR and the start time
#   gomod_download MOD@VER  sets MOD_DIR (module source), MOD_INFO (.info
#                           file) and MOD_HASH (commit)
#   gomod_init NAME [REQUIREMENT...]
#                           a fresh go.mod at MOD_DIR's go version
#   gomod_mirror_replaces ON_RELATIVE
#                           mirrors MOD_DIR's replaces; a relative one
#                           (./api: nested modules are cut out of the
#                           module zip) is handed to the function
#                           ON_RELATIVE with the module path and version
#   gomod_mirror_excludes   mirrors MOD_DIR's excludes
#   gomod_install OUT       moves OUT.tmp to OUT and says how long it took

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/bin"

gomod_prepare() {
	export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
	export GOFLAGS="-buildvcs=false"
	# The build must never touch the repository's own go.mod/go.sum.
	export GOWORK=off
	BUILD_DIR="$ROOT/.cache/build/$1"
	mkdir -p "$BIN_DIR" "$BUILD_DIR"
	cd "$BUILD_DIR"
	GOMOD_START=$(date +%s)
}

gomod_download() {
	local json
	json="$(go mod download -json "$1")"
	MOD_DIR="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")"
	MOD_INFO="$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p' <<<"$json")"
	MOD_HASH="$(sed -n 's/.*"Hash":[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$MOD_INFO")"
	[[ -f "$MOD_DIR/go.mod" ]] || { echo "cannot locate the go.mod of $1" >&2; exit 1; }
}

gomod_init() {
	local name="$1" req
	shift
	rm -f go.mod go.sum
	printf 'module %sbuild\n\ngo %s\n' "$name" "$(awk '$1=="go"{print $2; exit}' "$MOD_DIR/go.mod")" >go.mod
	for req in "$@"; do
		go mod edit -require="$req"
	done
}

# gomod_directives replace|exclude prints the directive's lines, comments cut.
gomod_directives() {
	awk -v d="$1" '
		$0 ~ "^" d "[[:space:]]*\\(" { inblk=1; next }
		inblk && /^\)/               { inblk=0; next }
		inblk                        { print; next }
		$0 ~ "^" d "[[:space:]]"     { sub("^" d "[[:space:]]+", ""); print }
	' "$MOD_DIR/go.mod" | sed 's,//.*,,'
}

gomod_mirror_replaces() {
	local on_relative="$1" a b c d e old new newver
	while read -r a b c d e; do
		[[ -z "${a:-}" ]] && continue
		# "old => new [ver]" or "old oldver => new [ver]"
		if [[ "$b" == "=>" ]]; then old="$a" new="$c" newver="${d:-}"
		else old="$a@$b" new="$d" newver="${e:-}"; fi
		if [[ "$new" == ./* || "$new" == ../* ]]; then
			"$on_relative" "${old%@*}" "$new"
		else
			go mod edit -replace="${old}=${new}${newver:+@$newver}"
		fi
	done < <(gomod_directives replace)
}

gomod_mirror_excludes() {
	local m v
	while read -r m v; do
		[[ -n "${m:-}" ]] && go mod edit -exclude="${m}@${v}"
	done < <(gomod_directives exclude)
}

gomod_install() {
	mv -f "$1.tmp" "$1"
	echo "$(basename "$1") built in $(($(date +%s) - GOMOD_START))s -> $1"
}
