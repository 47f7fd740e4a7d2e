"""The `transit` program: read the stack's config, load the fabric spec, build it.

Config (stacks/Pulumi.<env>.yaml):
  transit:fabric   path of the fabric spec, relative to stacks/ (e.g. fabrics/seed000_aws_azure.yaml)
  transit:target   `cloud` (default) or `local` (network namespaces on this machine)
  transit:<name>   one secret per `md5_secret` name the spec uses
  transit:fabricCaCert, transit:fabricCaKey (secret)   the fabric CA cloud nodes' certificates are issued from
                   (`transit ca create`; components/fabric_ca.py)
  transit:clouds   optional list of clouds to build (default: every cloud the spec uses)
  transit:<target>*  each target's options (awsImageId, ...): components.targets.read_options
"""
from __future__ import annotations

import gc
from pathlib import Path

import pulumi

from components import load_spec
from components.fabric import GC_THRESHOLD, Fabric, FabricArgs
from components.targets import read_options

gc.set_threshold(*GC_THRESHOLD)

config = pulumi.Config("transit")
spec = load_spec(Path(__file__).parent / config.require("fabric"))
secret_names = [n.bgp.md5_secret for n in spec.networks if n.bgp] + [c.bgp.md5_secret for c in spec.circuits]
fabric = Fabric(
    spec.name,
    FabricArgs(
        spec=spec,
        environment=pulumi.get_stack(),
        secrets={name: config.require_secret(name) for name in dict.fromkeys(secret_names)},
        target=config.get("target") or "cloud",
        clouds=config.get_object("clouds"),
        options=read_options(config),
    ),
)
pulumi.export("fabric", spec.name)
pulumi.export("outputs", fabric.outputs)
