#!/usr/bin/env bash
# Builds the pinned Pulumi CLI and its Python shims from Go modules, and our own
# Python language host (tools/langhost), into .tools/bin.
# Why: the npm and curl installers download from the internet, which these
# machines cannot reach; the Go module proxy can, but it refuses Pulumi's own
# Python host module (see tools/langhost/README.md). Idempotent and fast when
# already built: a matching pulumi is kept, and the host is rebuilt only when
# its sources are newer than the binary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
bin="$root/.tools/bin"
work="$root/.tools/go-pulumi"
langhost="$here/langhost"
mkdir -p "$bin" "$work"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
want="v$PULUMI_VERSION"

build_cli() {
  cd "$work"
  # A wrapper module: pulumi's go.mod files carry replace directives, so
  # `go install ...@version` is refused.
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
  local ver="github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$want"
  echo "pulumi: building pulumi $want"
  go build -trimpath -tags osusergo,grpcnotrace -ldflags "-s -w -X $ver" -o "$bin/" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  # The program runner and the dynamic-provider shim are files of sdk/v3.
  local sdk
  sdk=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
  install -m755 "$sdk/python/cmd/pulumi-language-python-exec" \
    "$sdk/python/dist/pulumi-resource-pulumi-python" "$bin/"
}

cli_built() {
  [[ -x "$bin/pulumi" && "$("$bin/pulumi" version 2>/dev/null)" == "$want" \
     && -x "$bin/pulumi-language-python-exec" && -x "$bin/pulumi-resource-pulumi-python" ]]
}

langhost_built() {
  [[ -x "$bin/pulumi-language-python" ]] \
    && [[ -z "$(find "$langhost" -maxdepth 1 \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) \
                 -newer "$bin/pulumi-language-python" -print -quit)" ]]
}

# A pulumi already on PATH (outside .tools/bin) at the pinned version or newer
# is used as it is: linked into .tools/bin with the plugins installed beside it.
ambient_cli() {
  local found have
  found=$(PATH=$(tr ':' '\n' <<<"$PATH" | grep -vx "$bin" | paste -sd:) command -v pulumi || true)
  [[ -n "$found" ]] || return 1
  have=$("$found" version 2>/dev/null) || return 1
  [[ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" == "$want" ]] || return 1
  echo "pulumi: using $found ($have >= $want)"
  local dir f
  dir=$(dirname "$(readlink -f "$found")")
  for f in pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python; do
    [[ -x "$dir/$f" ]] && ln -sfn "$dir/$f" "$bin/$f"
  done
  return 0
}

if [[ -x "$bin/pulumi" && ! -L "$bin/pulumi" ]] && cli_built; then
  echo "pulumi: $want already built in .tools/bin"
elif ambient_cli; then
  :
else
  build_cli
fi

if [[ -L "$bin/pulumi-language-python" ]]; then
  echo "pulumi-language-python: using the one installed with $(readlink "$bin/pulumi-language-python")"
elif langhost_built; then
  echo "pulumi-language-python: up to date in .tools/bin"
else
  echo "pulumi-language-python: building tools/langhost"
  (cd "$langhost" && go build -trimpath -ldflags "-s -w" -o "$bin/pulumi-language-python" .)
fi

"$bin/pulumi" version
