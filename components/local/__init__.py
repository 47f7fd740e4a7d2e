"""The `local` target: the whole fabric on this machine in network namespaces.

`layout`, `frr_config` and `exabgp_config` are pure (spec and plan in;
namespaces, links, addresses and router configs out); the `*_provider`
modules are Pulumi dynamic providers that make that layout real;
`fabric.LocalFabric` wires them together and `build` plugs it into
`components.fabric.Fabric`; `scratch_stack` runs it with the real CLI for the
e2e tests and the benchmark. Nothing is imported here, so
`import components.local.layout` never pulls in Pulumi.
"""
from __future__ import annotations
