#!/usr/bin/env bash
# Compiles the GENEVE fast path (dataplane/geneve/bpf/geneve.bpf.c) with Debian's clang
# against libbpf-dev's headers into dataplane/geneve/bpf/geneve.bpf.o, which the agent
# loads at run time and the wheel carries as package data (images/stage.sh runs this
# before building it). Idempotent: skipped when the object is newer than its source.
# Without clang the agent runs the user-space path (geneve.datapath auto).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/dataplane/geneve/bpf/geneve.bpf.c"
obj="${src%.c}.o"
if [[ -f "$obj" && "$obj" -nt "$src" ]]; then
  echo "bpf: $(basename "$obj") up to date"
  exit 0
fi
command -v clang >/dev/null || { echo "bpf: clang missing (tools/bootstrap-apt.sh installs it)" >&2; exit 1; }
arch=$(uname -m)
clang -O2 -g -target bpf -Wall -Werror -I"/usr/include/$arch-linux-gnu" -c "$src" -o "$obj.tmp"
llvm-strip -g "$obj.tmp" 2>/dev/null || true  # BTF (.BTF) stays: libbpf needs it for the maps
mv "$obj.tmp" "$obj"
echo "bpf: built $(basename "$obj") ($(stat -c %s "$obj") bytes)"
