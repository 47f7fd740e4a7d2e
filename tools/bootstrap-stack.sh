#!/usr/bin/env bash
# Makes sure the local file backend and the `local` stack exist, so that
# `pulumi up -s local` needs no login, no prompt and no internet.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source tools/env.sh
mkdir -p .pulumi-state "$PULUMI_HOME"
if pulumi stack ls --json 2>/dev/null | grep -q '"name": "local"'; then
  echo "stack: local ready (backend $PULUMI_BACKEND_URL)"
  exit 0
fi
# Pulumi.local.yaml is committed with its encryption salt, so the stack keeps
# the secrets (BGP MD5 keys) that were set with the documented passphrase.
pulumi stack init local --secrets-provider passphrase --non-interactive >/dev/null
echo "stack: created local (backend $PULUMI_BACKEND_URL)"
