#!/usr/bin/env bash
# Stages what provision.sh installs, on the build host: this repository's wheel
# (its version is the repository's) and a wheelhouse of the data plane's
# dependencies (pyproject's `agent` extra) for the image's Python, plus
# images/files. Output: build/image/stage (uploaded as /tmp/transit-image).
# The wheelhouse is built here so the image build needs PyPI only on the host.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
stage="$root/build/image/stage"
py="$root/.venv/bin/python"
rm -rf "$stage"
mkdir -p "$stage/wheelhouse"
echo "stage: wheel of multicloud-transit $("$py" -c 'import tomllib;print(tomllib.load(open("'"$root"'/pyproject.toml","rb"))["project"]["version"])')"
"$root/tools/build-bpf.sh"  # the GENEVE fast path goes into the wheel as package data
"$py" -m pip wheel -q --no-deps -w "$stage/wheelhouse" "$root"
mapfile -t requirements < <("$py" -c '
import tomllib, sys
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["agent"]))' "$root/pyproject.toml")
echo "stage: wheelhouse for ${requirements[*]}"
# For the image's Python (Debian 12: CPython 3.11, glibc 2.36), whatever the host runs.
"$py" -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
  $(for glibc in 36 35 34 33 32 31 28 27 26 24 17 12 5; do echo "--platform manylinux_2_${glibc}_x86_64"; done) \
  -d "$stage/wheelhouse" "${requirements[@]}"
cp -r "$root/images/files" "$stage/files"
cp "$root/images/provision.sh" "$stage/provision.sh"
ls "$stage/wheelhouse"
