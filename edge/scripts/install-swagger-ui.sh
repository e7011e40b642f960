#!/usr/bin/env bash
# Installs the Swagger UI assets the edge serves at /docs/: the npm
# package swagger-ui-dist at the version pinned in edge/apidocs/serve.go
# (SwaggerUIVersion), into <repo>/.cache/swagger-ui-dist/<version>
# (git-ignored; never commit the assets). npm checks the package's
# integrity against the registry. Idempotent: nothing is fetched when the
# version is already installed.
#
# Needs: npm. Usage: edge/scripts/install-swagger-ui.sh [dest-root]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERSION=$(sed -n 's/^const SwaggerUIVersion = "\(.*\)"$/\1/p' "$ROOT/edge/apidocs/serve.go")
[ -n "$VERSION" ] || { echo "install-swagger-ui: SwaggerUIVersion not found in edge/apidocs/serve.go" >&2; exit 1; }
DEST_ROOT=${1:-$ROOT/.cache/swagger-ui-dist}
DEST=$DEST_ROOT/$VERSION
FILES=(swagger-ui.css swagger-ui-bundle.js swagger-ui-standalone-preset.js favicon-32x32.png favicon-16x16.png LICENSE)

if [ -f "$DEST/.complete" ]; then
	echo "swagger-ui-dist $VERSION already present ($DEST)"
	exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install-swagger-ui: npm not found (apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null)
tar -xzf "$tmp/swagger-ui-dist-$VERSION.tgz" -C "$tmp"
mkdir -p "$DEST_ROOT"
rm -rf "$DEST.partial"
mkdir "$DEST.partial"
for f in "${FILES[@]}"; do
	cp "$tmp/package/$f" "$DEST.partial/$f"
done
touch "$DEST.partial/.complete"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "swagger-ui-dist $VERSION installed ($DEST)"
