#!/usr/bin/env bash
# Builds the pinned Packer and its amazon, azure, googlecompute and qemu plugins
# from Go modules into .tools/packer, laid out the way `packer init` would, so
# templates with `required_plugins` validate and build offline.
# Why from source: Debian's Packer (1.6.6) refuses `required_plugins`, and the
# release downloads are not reachable; the Go module proxy is. Idempotent and
# seconds when done: every binary is rebuilt only when it does not report the
# pinned version. Versions and the licence choice: tools/versions.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
top="$root/.tools/packer"
bin="$top/bin"
plugins="$top/plugins"
mkdir -p "$bin" "$plugins"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 CHECKPOINT_DISABLE=1
export PACKER_PLUGIN_PATH="$plugins"
nice_go() { nice -n 10 go "$@"; }

packer_built() {
  [[ -x "$bin/packer" ]] && [[ "$("$bin/packer" version 2>/dev/null | head -n1)" == "Packer v$PACKER_VERSION" ]]
}

if packer_built; then
  echo "packer: v$PACKER_VERSION already built in .tools/packer/bin"
else
  echo "packer: building v$PACKER_VERSION (first run downloads and compiles for several minutes)"
  GOBIN="$bin" nice_go install -trimpath -ldflags "-s -w" "github.com/hashicorp/packer@v$PACKER_VERSION"
  packer_built
fi

# The file Packer looks for: NAME/packer-plugin-NAME_vVERSION_xAPI_OS_ARCH, with
# a _SHA256SUM beside it; the plugin must report VERSION itself.
plugin_dir() { echo "$plugins/github.com/hashicorp/$1"; }
plugin_file() {
  local name=$1 version=$2
  compgen -G "$(plugin_dir "$name")/packer-plugin-${name}_v${version}_x*_linux_amd64" | head -n1
}

plugin_built() {
  local name=$1 version=$2 file
  file=$(plugin_file "$name" "$version") || return 1
  [[ -x "$file" && -f "${file}_SHA256SUM" ]] || return 1
  [[ "$(sha256sum "$file" | cut -d' ' -f1)" == "$(cat "${file}_SHA256SUM")" ]] || return 1
  "$file" describe 2>/dev/null | grep -q "\"version\":\"$version\""
}

# A wrapper module per plugin: its build list is the plugin's own (MVS with one
# root), and it repeats the plugin's replace directives, which Go ignores in
# dependencies (they pin github.com/zclconf/go-cty to a fork).
build_plugin() {
  local name=$1 version=$2
  local mod="github.com/hashicorp/packer-plugin-$name"
  local work="$top/go-$name"
  mkdir -p "$work"
  echo "packer-plugin-$name: building v$version"
  (
    cd "$work"
    rm -f go.mod go.sum
    go mod init example.invalid/transit-packer-plugin-"$name" >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "$mod@v$version" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
    go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    rhs = new["Path"] + ("@" + new["Version"] if new.get("Version") else "")
    print(f"-replace={lhs}={rhs}")
' | xargs -r go mod edit
    nice_go get "$mod@v$version"
    # Releases report VERSION; a few tags still carry a "dev" prerelease marker.
    local out="$work/packer-plugin-$name"
    nice_go build -trimpath -ldflags "-s -w -X $mod/version.VersionPrerelease=" -o "$out" "$mod"
    local api
    api=$("$out" describe | python3 -c 'import json, sys; print(json.load(sys.stdin)["api_version"])')
    local dest
    dest="$(plugin_dir "$name")/packer-plugin-${name}_v${version}_${api}_linux_amd64"
    mkdir -p "$(dirname "$dest")"
    rm -f "$(plugin_dir "$name")"/packer-plugin-"${name}"_v*
    install -m755 "$out" "$dest"
    sha256sum "$dest" | cut -d' ' -f1 > "${dest}_SHA256SUM"
    rm -f "$out"
  )
  plugin_built "$name" "$version"
}

for spec in "amazon $PACKER_PLUGIN_AMAZON_VERSION" "azure $PACKER_PLUGIN_AZURE_VERSION" \
            "googlecompute $PACKER_PLUGIN_GOOGLECOMPUTE_VERSION" "qemu $PACKER_PLUGIN_QEMU_VERSION"; do
  read -r name version <<<"$spec"
  if plugin_built "$name" "$version"; then
    echo "packer-plugin-$name: v$version already built"
  else
    build_plugin "$name" "$version"
  fi
done

"$bin/packer" version | head -n1
