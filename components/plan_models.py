"""The plan's shape: what will be built, with every name, address and number resolved.

Pydantic models so the plan is JSON-serialisable and typed for its readers
(the per-cloud components, the local environment, `transit plan`). Secrets
appear only as the names of Pulumi secret config keys. The plan names no
target: each target's own part lives in `Plan.sections`, filled by the
registry (components.targets).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from dataplane.config import Member
from dataplane.filter_model import FilterPolicy


class _PlanModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ZoneSubnet(_PlanModel):
    """One subnet per availability zone."""

    zone: str = Field(description="Cloud zone: an AWS position like us-east-1-zone1 (the region's first available zone, "
                      "named by the account at build time), 1 (Azure) or europe-west3-a.")
    cidr: str


class EdgePlan(_PlanModel):
    """A regional edge: its network, HA instances, per-zone subnets and listening ports."""

    name: str
    cloud: str
    region: str
    cidr: str
    instances: int
    zones: list[str]
    subnets: list[ZoneSubnet] = Field(description="Edge VM subnets, one per zone, from the first quarters of cidr.")
    gateway_cidr: str = Field(description="Last quarter of cidr: cloud gateway subnet (TGW attachment, Azure GatewaySubnet).")
    tunnel_port: int = Field(description="TCP port of the mutual-TLS tunnel listener.")
    probe_port: int = Field(description="UDP port answering path probes.")
    metrics_port: int = Field(description="TCP port of the Prometheus /metrics endpoint.")
    networks: list[str] = Field(description="Networks whose traffic enters the fabric at this edge.")


class ConnectorBgpPlan(_PlanModel):
    """The on-prem connector's eBGP session with the data-center router."""

    asn: int
    local_ip: str
    peer_ip: str
    peer_asn: int
    md5_secret: str = Field(description="Name of the Pulumi secret config key holding the MD5 key.")


class ConnectorPlan(_PlanModel):
    """The connector VMs that bring one network's traffic to its edge."""

    name: str
    network: str
    cloud: str
    region: str | None
    site: str | None
    edge: str
    instances: int
    cidrs: list[str] = Field(description="The network's CIDRs (the traffic the connector serves).")
    connector_cidr: str | None = Field(description="Range carved for the connector in a cloud network.")
    subnets: list[ZoneSubnet] = Field(description="Per-zone connector subnets (/28) inside connector_cidr.")
    bgp: ConnectorBgpPlan | None
    tunnel_port: int


class AttachmentPlan(_PlanModel):
    """A network attached to its edge with the cloud's native construct."""

    name: str
    network: str
    cloud: str
    region: str
    edge: str
    kind: Literal["transit-gateway", "vwan-hub", "ncc-spoke"]
    cidrs: list[str]


class BgpSessionPlan(_PlanModel):
    """One BGP session of a circuit and which side holds which address."""

    role: Literal["primary", "secondary"]
    subnet: str
    prefix_length: int
    customer_ip: str = Field(description="Our side: the customer router or the cloud router.")
    peer_ip: str = Field(description="The provider's side (AWS, Microsoft, Google).")


class CircuitAttachmentPlan(_PlanModel):
    """A network the circuit reaches, with what a gateway needs to know of it."""

    network: str
    region: str
    cidrs: list[str]


class CircuitPlan(_PlanModel):
    """A dedicated circuit and its BGP sessions."""

    name: str
    provider: str
    cloud: str
    connection: str
    location: str
    bandwidth_mbps: int
    vlan: int
    customer_asn: int
    peer_asn: int
    md5_secret: str = Field(description="Name of the Pulumi secret config key holding the MD5 key.")
    sessions: list[BgpSessionPlan]
    attaches: list[CircuitAttachmentPlan]
    cloud_router: str | None


class CloudRouterNeighborPlan(_PlanModel):
    """One BGP neighbor of the cloud router's VRF (one per circuit session)."""

    circuit: str
    role: Literal["primary", "secondary"]
    vlan: int
    local_ip: str
    peer_ip: str
    prefix_length: int
    peer_asn: int
    md5_secret: str


class CloudRouterPlan(_PlanModel):
    """The NaaS cloud router where the circuits meet in one VRF."""

    name: str
    asn: int
    locations: list[str]
    circuits: list[str]
    neighbors: list[CloudRouterNeighborPlan]


class LinkPlan(_PlanModel):
    """A point-to-point path between two nodes; `preference` lower wins."""

    name: str
    kind: Literal["backbone", "internet"]
    a: str
    b: str
    subnet: str
    a_ip: str
    b_ip: str
    preference: int


class AgentPeerPlan(_PlanModel):
    """A peer an agent talks to, and the prefixes it reaches through it."""

    name: str = Field(description="The peer agent's name (edge-<edge> or connector-<network>).")
    identity: str
    cidrs: list[str] = Field(description="Destinations reached through this peer.")


class AgentPlan(_PlanModel):
    """One transit-agent of the fabric as every target runs it: who it is, what it serves, whom it talks to, its filter.

    Targets add only addresses, ports and where TLS material comes from (components.agents).
    """

    name: str = Field(description="edge-<edge> or connector-<network>.")
    role: Literal["edge", "connector"]
    node: str = Field(description="The edge's or the network's spec name.")
    identity: str = Field(description="spiffe://<fabric>/<name>: the URI its certificate carries.")
    local_cidrs: list[str] = Field(description="What it delivers to and intercepts from: its network, or an edge's native networks.")
    peers: list[AgentPeerPlan]
    filter: FilterPolicy = Field(description="Its scoped share of the policy (components.segmentation.agent_filters).")
    members: list[str] = Field(
        description="Identities of the plan's members it must know, in their order (its own included): whoever may originate a stream it "
        "delivers or relays, and whoever delivers what it may send (components.segmentation.members.member_scoper)."
    )


class Plan(_PlanModel):
    """Everything the fabric builds, per node, resolved from the spec."""

    fabric: str
    edges: list[EdgePlan]
    connectors: list[ConnectorPlan]
    attachments: list[AttachmentPlan]
    circuits: list[CircuitPlan]
    cloud_router: CloudRouterPlan | None
    links: list[LinkPlan]
    agents: list[AgentPlan] = Field(description="Every agent: edges first, then connectors, in spec order.")
    members: list[Member] = Field(description="Every identity with the prefixes it speaks for; each agent's config carries its `AgentPlan.members` of them.")
    sections: dict[str, SerializeAsAny[BaseModel]] = Field(
        default_factory=dict,
        description="Each target's own part of the plan, by target name, computed once (components.targets.plan_fabric).",
    )
