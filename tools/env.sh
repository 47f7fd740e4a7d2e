# Environment for running the Pulumi CLI offline against this project.
# Sourced by the Makefile recipes and by scripts; safe to source by hand:
#   source tools/env.sh && pulumi stack ls
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$_root/.tools/bin:$_root/.tools/packer/bin:$_root/.venv/bin:$PATH"
# Packer built by tools/build-packer.sh finds its plugins here, offline.
export PACKER_PLUGIN_PATH="$_root/.tools/packer/plugins"
export CHECKPOINT_DISABLE=1
export PULUMI_HOME="$_root/.tools/pulumi-home"
export PULUMI_BACKEND_URL="file://$_root/.pulumi-state"
# The local stack's secrets are encrypted with this documented passphrase
# (README "Secrets"). dev and prod use their own secrets provider.
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-transit-local}"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_DISABLE_REGISTRY_RESOLVE=true
unset _root
