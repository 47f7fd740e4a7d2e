"""The `local` target: the whole fabric on this machine in network namespaces.

`layout` and `frr_config` are pure (spec in, plan of namespaces, links and
router configs out); the `*_provider` modules are Pulumi dynamic providers
that make that plan real; `fabric.LocalFabric` wires them together. Nothing is
imported here, so `import components.local.layout` never pulls in Pulumi.
"""
from __future__ import annotations
