#!/usr/bin/env bash
# The one provisioning script every image runs: Packer's shell provisioner on
# amazon-ebs, azure-arm, googlecompute and qemu, and images/build-qemu.sh in a
# debootstrap chroot. It installs the agent from this repository's wheel into
# its own virtual environment (/opt/transit) with the data plane's own
# dependencies only (the wheel's `agent` extra, from a wheelhouse built on the
# build host, so the VM never reaches PyPI), ExaBGP (a dependency of the agent),
# nftables, the router's sysctls and kernel modules, and the systemd units.
#
# Inputs: $TRANSIT_IMAGE_FILES (default /tmp/transit-image) holding
# wheelhouse/ and files/ (what images/stage.sh prepares), and
# $TRANSIT_BOOT_SOURCE: where the boot step reads its document (aws, azure,
# gcp or drive).
set -euo pipefail
src=${TRANSIT_IMAGE_FILES:-/tmp/transit-image}
boot_source=${TRANSIT_BOOT_SOURCE:?set TRANSIT_BOOT_SOURCE to aws, azure, gcp or drive}
case "$boot_source" in aws|azure|gcp|drive) ;; *) echo "provision: TRANSIT_BOOT_SOURCE=$boot_source is not aws, azure, gcp or drive" >&2; exit 2;; esac
[[ $(id -u) == 0 ]] || exec sudo -E "$0" "$@"

export DEBIAN_FRONTEND=noninteractive
echo "provision: Debian packages"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  python3 python3-venv nftables iproute2 libbpf1 conntrack kmod ca-certificates util-linux >/dev/null

echo "provision: the agent into /opt/transit"
wheel=$(ls "$src"/wheelhouse/multicloud_transit-*.whl)
python3 -m venv /opt/transit
/opt/transit/bin/python -m pip install -q --no-index --find-links "$src/wheelhouse" --no-deps "$wheel"
# The `agent` extra, read from the installed wheel's metadata: the data plane's
# dependencies without Pulumi and the cloud SDKs.
mapfile -t requirements < <(/opt/transit/bin/python - <<'PY'
import importlib.metadata as metadata
for line in metadata.requires("multicloud-transit") or []:
    requirement, _, marker = line.partition(";")
    if marker.strip().replace("'", '"') == 'extra == "agent"':
        print(requirement.strip())
PY
)
[[ ${#requirements[@]} -gt 0 ]] || { echo "provision: the wheel declares no agent extra" >&2; exit 1; }
# pip then reports the distribution's Pulumi dependencies as missing: deliberately so.
/opt/transit/bin/python -m pip install -q --no-index --find-links "$src/wheelhouse" "${requirements[@]}"
/opt/transit/bin/transit-agent --version

echo "provision: sysctls, kernel modules, units (boot source: $boot_source)"
install -m644 "$src/files/90-transit-router.conf" /etc/sysctl.d/90-transit-router.conf
install -m644 "$src/files/transit-modules.conf" /etc/modules-load.d/transit.conf
install -m644 "$src"/files/transit-*.service /etc/systemd/system/
install -d -m755 /etc/transit /etc/transit/tls
echo "TRANSIT_BOOT_SOURCE=$boot_source" > /etc/default/transit-boot
systemctl enable transit-boot.service transit-agent.service transit-exabgp.service
echo "provision: done"
