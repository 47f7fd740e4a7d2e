#!/usr/bin/env bash
# Builds the pinned Pulumi CLI, its Python language host, the Python shims and
# the pulumi-command provider from Go modules into .tools/bin.
# Why: the npm and curl installers download from the internet, which these
# machines cannot reach; the Go module proxy can. Idempotent: a matching
# .tools/bin/pulumi is kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
bin="$root/.tools/bin"
work="$root/.tools/go-pulumi"
mkdir -p "$bin" "$work"

want="v$PULUMI_VERSION"
if [[ -x "$bin/pulumi" && "$("$bin/pulumi" version 2>/dev/null)" == "$want" \
      && -x "$bin/pulumi-language-python" ]]; then
  echo "pulumi: $want already built in .tools/bin"
  exit 0
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
cd "$work"
cat > go.mod <<MOD
module example.invalid/transit-pulumi-toolchain

go $GO_MIN_VERSION

require (
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)

tool (
	github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
)

// Copied from pulumi's own go.mod files: replaces in dependencies are ignored.
replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
replace golang.org/x/text => golang.org/x/text v0.39.0
MOD
echo "pulumi: resolving Go modules for $want (first run downloads ~1 GB, then builds ~10 min on 2 cores)"
go mod tidy
ver="github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$want"
echo "pulumi: building pulumi and pulumi-language-python"
go build -trimpath -tags osusergo,grpcnotrace -ldflags "-s -w -X $ver" -o "$bin/" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
sdk=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m755 "$sdk/python/cmd/pulumi-language-python-exec" \
  "$sdk/python/dist/pulumi-resource-pulumi-python" "$bin/"

"$bin/pulumi" version
