"""AWS components: Edge, Connector, Attachment, Gateway, Circuit, Segmentation (and NetworkVpc, TransitPeering).

The pure modules (routing, naming, planning, subnets, quotas, network_quotas, target; the security compiler is
`components.segmentation.aws_security_groups`) import no Pulumi; the components load lazily on first access, so `transit plan` can read
the AWS section without importing pulumi_aws.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Edge": "components.aws.edge",
    "EdgeArgs": "components.aws.edge",
    "ExistingVpc": "components.aws.edge",
    "Connector": "components.aws.connector",
    "ConnectorArgs": "components.aws.connector",
    "ConnectorZoneSubnets": "components.aws.subnets",
    "carve_connector": "components.aws.subnets",
    "Attachment": "components.aws.attachment",
    "AttachmentArgs": "components.aws.attachment",
    "Gateway": "components.aws.gateway",
    "GatewayArgs": "components.aws.gateway",
    "VpnGatewaySpec": "components.aws.gateway",
    "DxGatewaySpec": "components.aws.gateway",
    "Circuit": "components.aws.circuit",
    "CircuitArgs": "components.aws.circuit",
    "GatewayLink": "components.aws.circuit",
    "Segmentation": "components.aws.segmentation",
    "SegmentationArgs": "components.aws.segmentation",
    "TransitPeering": "components.aws.peering",
    "TransitPeeringArgs": "components.aws.peering",
    "PeeringSide": "components.aws.peering",
    "NetworkVpc": "components.aws.network_vpc",
    "NetworkVpcArgs": "components.aws.network_vpc",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import a component's module only when the component is asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'components.aws' has no attribute {name!r}")
