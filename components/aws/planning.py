"""The AWS part of the plan: per-region layout, gateways, routes and security rules, pure.

`aws_section(spec, plan)` is the AWS target's plan section, computed once per
plan (components.targets): the rows `transit plan` shows (routes, security
groups, prefix lists, rules, and the rule count next to the Cartesian count)
and the `AwsLayout` that `components.aws.build` turns into resources. Both come
from one security compile and one route selection; every address, zone, name
and gateway is decided here, before Pulumi runs. Never imports Pulumi.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, collapse_addresses
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, InstanceOf

from components.aws.naming import MIN_SUBNET_PREFIX, endpoint_ip, split_cidr
from components.aws.routing import AwsRoute, NetworkAddresses, network_routes, reachability
from components.segmentation.aws_security_groups import IntentRule, SecurityPlan, aws_intent, compile_security, permitted_boxes
from components.spec import FabricSpec
from components.spec_checks import home_edge
from components.spec_providers import PROVIDER_CLOUD

if TYPE_CHECKING:
    from components.plan_models import Plan


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsRouteRow(_Section):
    """A route: in an onboarded AWS network's workload route tables, or (`tgw <region>`) in the fabric's TGW route table."""

    network: str
    destination: str
    target: str


class AwsSecurityGroupRow(_Section):
    """A security group: workloads holding these addresses attach it."""

    name: str
    network: str
    region: str
    cidrs: list[str]


class AwsPrefixListRow(_Section):
    """A managed prefix list shared by every rule with this peer."""

    name: str
    region: str
    cidrs: list[str]


class AwsRuleRow(_Section):
    """One security-group rule resource."""

    security_group: str
    direction: str
    protocol: str
    ports: str
    peer: str
    policy_rules: list[str]


@dataclass(frozen=True)
class AwsEdgeLayout:
    """One AWS edge, with every address decided."""

    name: str
    region: str
    cidr: str
    zones: list[str]
    instances: int
    public_subnets: list[str]
    attachment_subnets: list[str]
    private_ips: list[str]
    tunnel_port: int
    probe_port: int
    metrics_port: int
    native_cidrs: list[str]
    ingress_cidrs: list[str]


@dataclass(frozen=True)
class AwsNetworkLayout:
    """One onboarded AWS network: its subnets, attach mode, edge and routes."""

    name: str
    region: str
    attach: str
    cidrs: list[str]
    zones: list[str]
    instances: int
    workload_subnets: list[str]
    fabric_subnets: list[str]
    endpoint_ips: list[str]
    edge: str
    edge_cidrs: list[str]
    destinations: list[str]


@dataclass(frozen=True)
class AwsCircuitLayout:
    """One Direct Connect circuit: its connection, VIF addresses and the networks it reaches."""

    name: str
    region: str
    connection: str
    location: str
    bandwidth_mbps: int
    vlan: int
    customer_asn: int
    peer_asn: int
    customer_address: str
    amazon_address: str
    md5_secret: str
    networks: list[str]


@dataclass(frozen=True)
class AwsGatewayLayout:
    """One region's cloud gateways: whether it gets a TGW, and each VGW's and DX gateway's ASN."""

    region: str
    transit_gateway: bool
    vpn_gateways: list[tuple[str, int]]
    """(network, Amazon-side ASN): a VGW on each network a Direct Connect circuit reaches."""
    dx_gateways: list[tuple[str, int]]
    """(circuit, Amazon-side ASN): a DX gateway per circuit homed in this region."""


@dataclass(frozen=True)
class AwsLayout:
    """Everything the AWS builder creates, grouped per region."""

    regions: list[str]
    edges: list[AwsEdgeLayout]
    networks: list[AwsNetworkLayout]
    circuits: list[AwsCircuitLayout]
    gateways: list[AwsGatewayLayout]
    security: SecurityPlan
    routes: list[AwsRoute]


def workload_subnets(cidr: IPv4Network, zones: int, taken: list[IPv4Network]) -> list[str]:
    """The first quarters of a network's first CIDR that the fabric's subnets leave free."""
    free = [q for q in split_cidr(cidr, 4) if not any(q.overlaps(t) for t in taken)]
    if len(free) < zones:
        raise ValueError(f"{cidr} has {len(free)} free quarters for workload subnets, {zones} needed")
    return [str(q) for q in free[:zones]]


def _ingress(spec: FabricSpec, served: list[str], region: str, routes: list[AwsRoute]) -> list[str]:
    """What the edge's native networks send through it: their routed destinations, except the
    region's other native networks, which the TGW reaches directly in both directions."""
    native = [n for n in spec.networks if n.cloud == "aws" and n.attach == "native" and n.region == region]
    direct = [c for n in native for c in n.cidrs]
    names = {n.name for n in native if n.name in served}
    wanted = [IPv4Network(r.destination) for r in routes if r.network in names and r.target == "transit-gateway"]
    return [str(c) for c in collapse_addresses(c for c in wanted if not any(c.subnet_of(d) for d in direct))]


class AwsPlanSection(_Section):
    """The AWS routes and security rules of a fabric, with both rule counts, and the layout built from them."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    routes: list[AwsRouteRow]
    security_groups: list[AwsSecurityGroupRow]
    prefix_lists: list[AwsPrefixListRow]
    rules: list[AwsRuleRow]
    rules_emitted: int
    rules_cartesian: int
    notes: list[str]
    layout: InstanceOf[AwsLayout] | None = Field(None, exclude=True, repr=False)
    """What the AWS build creates; None when the spec asks for something AWS cannot build (see `problems`)."""
    problems: list[str] = Field(default_factory=list, exclude=True)
    """Why there is no layout, one line each."""


def circuit_neighbours(spec: FabricSpec) -> dict[str, frozenset[str]]:
    """Network -> the networks its circuits reach through the cloud router's VRF (seed 004).

    Circuits that meet in the cloud router exchange routes; networks on the same
    circuit do not (a DX gateway never routes between its own associations).
    """
    router = set(spec.cloud_router.circuits) if spec.cloud_router else set()
    on_router = [c for c in spec.circuits if c.name in router]
    out: dict[str, set[str]] = {}
    for c in on_router:
        for other in on_router:
            if other.name != c.name:
                for network in c.attaches:
                    out.setdefault(network, set()).update(other.attaches)
    return {k: frozenset(v) for k, v in out.items()}


def aws_routes(spec: FabricSpec, rules: list[IntentRule]) -> list[AwsRoute]:
    """Routes of every onboarded AWS network: what the policy lets it reach, to its attach target."""
    boxes = [box for box, _ in permitted_boxes(rules)]
    everyone = [NetworkAddresses(n.name, tuple(n.cidrs)) for n in spec.networks]
    reach = reachability(everyone, boxes)
    neighbours = circuit_neighbours(spec)
    out: list[AwsRoute] = []
    for network, own in zip(spec.networks, everyone):
        if network.cloud == "aws":
            out += network_routes(own, network.attach, reach[network.name], neighbours.get(network.name, frozenset()))
    return out


def uses_aws(spec: FabricSpec) -> bool:
    """Whether any edge, network or circuit of the spec is in AWS."""
    clouds = [e.cloud for e in spec.edges] + [n.cloud for n in spec.networks] + [PROVIDER_CLOUD[c.provider] for c in spec.circuits]
    return "aws" in clouds


def aws_section(spec: FabricSpec, plan: Plan) -> AwsPlanSection | None:
    """The plan's AWS section, or None for a fabric that uses no AWS: one compile, one route selection."""
    if not uses_aws(spec):
        return None
    rules, segments = aws_intent(spec)
    security = compile_security(rules, segments)
    routes = aws_routes(spec, rules)
    homes = {n.name: home.name for n in spec.networks if (home := home_edge(spec, n)) is not None}
    tgw_rows = [
        AwsRouteRow(network=f"tgw {edge.region}", destination=cidr, target=f"edge {edge.name}")
        for edge in spec.edges
        if edge.cloud == "aws"
        for cidr in _ingress(spec, [n for n, h in homes.items() if h == edge.name], edge.region, routes)
    ]
    layout, problems = None, []
    try:
        layout = _layout(spec, plan, security, routes)
    except ValueError as exc:
        problems.append(str(exc))
    return AwsPlanSection(
        routes=[AwsRouteRow(network=r.network, destination=r.destination, target=r.target) for r in routes] + tgw_rows,
        security_groups=[
            AwsSecurityGroupRow(name=m.key, network=m.network, region=m.region, cidrs=list(m.cidrs)) for m in security.members
        ],
        prefix_lists=[AwsPrefixListRow(name=p.key, region=p.region, cidrs=list(p.cidrs)) for p in security.prefix_lists],
        rules=[
            AwsRuleRow(
                security_group=r.member, direction=r.direction, protocol="all" if r.protocol == "-1" else r.protocol,
                ports="" if r.protocol in ("-1", "icmp") else (str(r.from_port) if r.from_port == r.to_port else f"{r.from_port}-{r.to_port}"),
                peer=f"{r.peer_kind}:{r.peer}", policy_rules=list(r.rules),
            )
            for r in security.rules
        ],
        rules_emitted=security.rules_emitted,
        rules_cartesian=security.rules_cartesian,
        notes=list(security.notes),
        layout=layout,
        problems=problems,
    )


def build_aws_layout(spec: FabricSpec, plan: Plan) -> AwsLayout:
    """The AWS layout of `spec` on its own (tests); raises ValueError for what AWS cannot build."""
    section = aws_section(spec, plan)
    if section is None or section.layout is None:
        raise ValueError("; ".join(section.problems) if section else f"fabric {spec.name} uses no AWS")
    return section.layout


def _gateways(regions: list[str], edges: list[AwsEdgeLayout], networks: list[AwsNetworkLayout],
              circuits: list[AwsCircuitLayout]) -> list[AwsGatewayLayout]:
    """Which regions get which gateways: a TGW where an edge is; a VGW per circuit-reached network
    (taking the ASN of the first circuit that reaches it); a DX gateway per circuit."""
    vgw_asn = {net: c.peer_asn for c in reversed(circuits) for net in c.networks}
    edge_regions = {e.region for e in edges}
    out = []
    for region in regions:
        vgws = [(n.name, vgw_asn[n.name]) for n in networks if n.region == region and n.name in vgw_asn]
        dxgws = [(c.name, c.peer_asn) for c in circuits if c.region == region]
        if region in edge_regions or vgws or dxgws:
            out.append(AwsGatewayLayout(region=region, transit_gateway=region in edge_regions, vpn_gateways=vgws, dx_gateways=dxgws))
    return out


def _layout(spec: FabricSpec, plan: Plan, security: SecurityPlan, routes: list[AwsRoute]) -> AwsLayout:
    """Decide every AWS address and relation from the spec, its plan, the compiled rules and the routes."""
    edges = {e.name: e for e in plan.edges if e.cloud == "aws"}
    connectors = {c.network: c for c in plan.connectors}
    edge_layouts = []
    for e in edges.values():
        attach = list(IPv4Network(e.gateway_cidr).subnets(new_prefix=MIN_SUBNET_PREFIX))[: len(e.zones)]
        native = [
            c for n in spec.networks if n.name in e.networks and n.cloud == "aws" and n.attach == "native" for c in map(str, n.cidrs)
        ]
        edge_layouts.append(
            AwsEdgeLayout(
                name=e.name, region=e.region, cidr=e.cidr, zones=list(e.zones), instances=e.instances,
                public_subnets=[s.cidr for s in e.subnets], attachment_subnets=[str(a) for a in attach],
                private_ips=[endpoint_ip(s.cidr) for s in e.subnets], tunnel_port=e.tunnel_port, probe_port=e.probe_port,
                metrics_port=e.metrics_port, native_cidrs=native, ingress_cidrs=_ingress(spec, e.networks, e.region, routes),
            )
        )
    home = {name: edge for edge in plan.edges for name in edge.networks}
    network_layouts = []
    for n in spec.networks:
        if n.cloud != "aws":
            continue
        edge = home[n.name]
        same_region_edge = edge.cloud == "aws" and edge.region == n.region
        if n.attach == "connector":
            # The plan carved the connector subnets, one per zone of the home edge.
            fabric = [s.cidr for s in connectors[n.name].subnets]
            zones = [s.zone for s in connectors[n.name].subnets]
            ips = [endpoint_ip(c) for c in fabric]
        elif same_region_edge:
            # A native network's TGW attachment gets /28s from the last quarter of its first CIDR.
            zones = list(edge.zones)
            last = split_cidr(n.cidrs[0], 4)[3]
            fabric = [str(s) for s in list(last.subnets(new_prefix=MIN_SUBNET_PREFIX))[: len(zones)]]
            ips = []
        else:
            raise ValueError(
                f"network {n.name} attaches natively, but its edge {edge.name} is not an AWS edge in {n.region}; "
                "a transit gateway attachment only reaches an edge in the same region"
            )
        network_layouts.append(
            AwsNetworkLayout(
                name=n.name, region=n.region or "", attach=n.attach, cidrs=[str(c) for c in n.cidrs], zones=zones,
                instances=n.instances, workload_subnets=workload_subnets(n.cidrs[0], len(zones), [IPv4Network(f) for f in fabric]),
                fabric_subnets=fabric, endpoint_ips=ips, edge=edge.name, edge_cidrs=[edge.cidr] if same_region_edge else [],
                destinations=[r.destination for r in routes if r.network == n.name and r.target != "circuit-propagated"],
            )
        )
    circuit_layouts = []
    regions_of = {n.name: n.region or "" for n in spec.networks}
    for c in plan.circuits:
        if c.cloud != "aws":
            continue
        if not c.attaches:
            raise ValueError(f"circuit {c.name} attaches no network; its VIF, DX gateway and VGW live in the attached network's region")
        session = c.sessions[0]
        circuit_layouts.append(
            AwsCircuitLayout(
                name=c.name, region=regions_of[c.attaches[0].network], connection=c.connection,
                location=c.location, bandwidth_mbps=c.bandwidth_mbps, vlan=c.vlan, customer_asn=c.customer_asn,
                peer_asn=c.peer_asn, customer_address=f"{session.customer_ip}/{session.prefix_length}",
                amazon_address=f"{session.peer_ip}/{session.prefix_length}", md5_secret=c.md5_secret,
                networks=[a.network for a in c.attaches],
            )
        )
    regions = list(dict.fromkeys([e.region for e in edge_layouts] + [n.region for n in network_layouts]))
    return AwsLayout(
        regions=regions, edges=edge_layouts, networks=network_layouts, circuits=circuit_layouts,
        gateways=_gateways(regions, edge_layouts, network_layouts, circuit_layouts), security=security, routes=routes,
    )
