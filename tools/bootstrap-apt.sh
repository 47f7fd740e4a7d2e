#!/usr/bin/env bash
# Installs the Debian packages listed in a file (default tools/apt-packages.txt)
# that are missing. Idempotent: when all are present this is one dpkg query.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
list=${1:-$here/apt-packages.txt}
mapfile -t want < <(grep -v '^\s*#' "$list" | grep -v '^\s*$')
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "apt: all ${#want[@]} packages present"
  exit 0
fi
echo "apt: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# FRR is started per namespace by the local environment, never as a system service.
if command -v systemctl >/dev/null && systemctl is-active -q frr 2>/dev/null; then systemctl stop frr || true; fi
echo "apt: done"
