#!/usr/bin/env bash
# Runs every static check; all of them run even when one fails, then the
# script exits non-zero if any failed, naming which.
#   1. gofmt -l on tracked + untracked (not ignored) Go files
#   2. go vet ./...
#   3. golangci-lint run ./...   (config: .golangci.yml)
#   4. actionlint on .github/workflows/*.yml
# Tools come from .cache/bin (`make deps` / .ci/deps.sh installs them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN="$ROOT/.cache/bin"

failed=()
section() { printf '\n==> %s\n' "$*"; }

need() {
	[ -x "$BIN/$1" ] && return 0
	echo "lint: $BIN/$1 not found: run 'make deps' (.ci/deps.sh) first" >&2
	exit 2
}
need golangci-lint
need actionlint

# Go files git knows about or would add (.gitignore'd ones such as .cache/ are
# skipped), that still exist in the work tree.
go_files=()
while IFS= read -r -d '' f; do
	[ -f "$f" ] && go_files+=("$f")
done < <(git ls-files -z --cached --others --exclude-standard -- '*.go' | sort -zu)

section "gofmt -l (${#go_files[@]} files)"
if [ "${#go_files[@]}" -gt 0 ]; then
	if ! unformatted=$(gofmt -l "${go_files[@]}" 2>&1); then
		printf '%s\n' "$unformatted"
		failed+=("gofmt (error)")
	elif [ -n "$unformatted" ]; then
		echo "not gofmt'ed (run: gofmt -w FILE):"
		sed 's/^/  /' <<<"$unformatted"
		failed+=("gofmt")
	else
		echo "ok"
	fi
else
	echo "no Go files"
fi

has_packages() { [ -n "$(go list ./... 2>/dev/null | head -n1)" ]; }

section "go vet ./..."
if [ "${#go_files[@]}" -eq 0 ] && ! has_packages; then
	echo "no Go packages"
elif go vet ./... && go vet -tags composerun ./e2e/compose/ && go vet -tags nomadrun ./e2e/nomad/; then
	echo "ok"
else
	failed+=("go vet")
fi

section "golangci-lint run ./... ($("$BIN/golangci-lint" version --short 2>/dev/null))"
if [ "${#go_files[@]}" -eq 0 ] && ! has_packages; then
	echo "no Go packages"
elif "$BIN/golangci-lint" run ./...; then
	echo "ok"
else
	failed+=("golangci-lint")
fi

section "actionlint ($("$BIN/actionlint" -version 2>/dev/null | head -n1))"
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob
if [ "${#workflows[@]}" -eq 0 ]; then
	echo "no workflows"
elif "$BIN/actionlint" "${workflows[@]}"; then
	echo "ok"
else
	failed+=("actionlint")
fi

echo
if [ "${#failed[@]}" -gt 0 ]; then
	echo "lint: FAILED: ${failed[*]}"
	exit 1
fi
echo "lint: all checks passed"
