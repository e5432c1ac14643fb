#!/usr/bin/env bash
# Generates the Go stubs from the project's .proto into ./gen and builds ./bin/jacclient offline.
#
# Offline with Debian's packages: the modules go.mod requires are vendored as links into /usr/share/gocode/src
# (golang-google-grpc-dev and friends) with a vendor/modules.txt, and the build runs with -mod=vendor and
# GOPROXY=off, so nothing is fetched. With network access, `go mod tidy && go build` works without this script's
# vendor step. The stubs are not committed: the .proto is the only source, and a contract change (a new RPC)
# reaches this client the next time it is built.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_root="${1:-$here/../../src/Protos}"
gocode=/usr/share/gocode/src
cd "$here"

rm -rf gen
mkdir -p gen
protoc -I"$proto_root" \
  --go_out=gen --go_opt=paths=source_relative \
  --go-grpc_out=gen --go-grpc_opt=paths=source_relative \
  jacservice/v1/jacservice.proto

rm -rf vendor
mkdir -p vendor
# Each "path version" line inside go.mod's require blocks.
modules=$(awk '/^require \(/ {inside=1; next} inside && /^\)/ {inside=0} inside && NF >= 2 {print $1, $2}' go.mod)
while read -r path version; do
  [ -d "$gocode/$path" ] || { echo "missing $gocode/$path: run scripts/install-test-deps.sh (Debian Go packages)" >&2; exit 1; }
  mkdir -p "vendor/$(dirname "$path")"
  ln -s "$gocode/$path" "vendor/$path"
  go_version=$(awk '$1 == "go" {print $2; exit}' "$gocode/$path/go.mod" 2>/dev/null || true)
  {
    echo "# $path $version"
    echo "## explicit${go_version:+; go $go_version}"
    # The module's packages: folders with non-test Go files, outside testdata.
    (cd vendor && find -L "$path" -name '*.go' ! -name '*_test.go' ! -path '*/testdata/*' -printf '%h\n' | sort -u)
  } >> vendor/modules.txt
done <<< "$modules"

mkdir -p bin
GOFLAGS=-mod=vendor GOPROXY=off go build -o bin/jacclient .
echo "built $here/bin/jacclient"
