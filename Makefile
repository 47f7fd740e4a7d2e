# The two commands a newcomer needs: `make up` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := source tools/env.sh
PY := .venv/bin/python

.PHONY: bootstrap up down test test-unit test-integration test-e2e bench clean image image-validate image-test

## bootstrap: Debian packages, .venv, Pulumi CLI (idempotent; seconds when done)
bootstrap:
	@tools/bootstrap-apt.sh
	@tools/bootstrap-python.sh
	@tools/build-bpf.sh
	@tools/build-pulumi.sh
	@tools/bootstrap-stack.sh

## up: bootstrap, then `pulumi up` on the local stack and a short live check
up: bootstrap
	@$(ENV) && pulumi up -s local --yes --skip-preview
	@$(ENV) && transit local-check

## down: destroy the local stack (leaves no namespace, process or file)
down:
	@$(ENV) && pulumi destroy -s local --yes --skip-preview

## test: the whole suite (unit, component, integration, e2e) and the image template's validation
test: bootstrap image-validate
	@$(ENV) && $(PY) -m pytest -q -p no:cacheprovider -m "not image"

test-unit: bootstrap
	@$(ENV) && $(PY) -m pytest -q tests/unit tests/component

test-integration: bootstrap
	@$(ENV) && $(PY) -m pytest -q -m integration

test-e2e: bootstrap
	@$(ENV) && $(PY) -m pytest -q -m e2e

## bench: every benchmark; results land in bench/results/
bench: bootstrap
	@$(ENV) && for b in bench/*.py; do \
	  m=$$(basename $$b .py); [[ $$m == __init__ ]] && continue; \
	  echo "== bench.$$m"; $(PY) -m bench.$$m; done

## image-validate: build Packer and its plugins (tools/build-packer.sh), stage the wheel, `packer validate` images/
image-validate: bootstrap
	@tools/build-packer.sh
	@images/stage.sh >/dev/null
	@# qemu_base_checksum=none: the default (Debian's SHA512SUMS URL) is fetched at validate time, and offline it cannot be.
	@$(ENV) && packer validate -var qemu_base_checksum=none \
	  -var version=$$($(PY) -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])') images/

## image: the data-center QCOW2 and VMDK in build/image (debootstrap, root; docs/images.md)
image: bootstrap
	@images/build-qemu.sh

## image-test: boot that image under qemu and send traffic through it (slow; not in `make test`)
image-test: bootstrap
	@$(ENV) && $(PY) -m pytest -q -p no:cacheprovider -m image tests/image

clean:
	rm -rf .venv .tools .pulumi-state
