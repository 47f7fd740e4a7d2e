"""The AWS part of the plan: per-region layout, gateways, routes and security rules, pure.

`aws_section(spec, plan)` is the AWS target's plan section, computed once per
plan (components.targets): the rows `transit plan` shows (routes, security
groups, prefix lists, rules, and the rule count next to the Cartesian count)
and the `AwsLayout` that `components.aws.build` turns into resources. Both come
from one security compile and one route selection; every address, zone, name
and gateway is decided here, before Pulumi runs. Never imports Pulumi.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Network, collapse_addresses
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, InstanceOf

from components.aws.naming import MIN_SUBNET_PREFIX, endpoint_ip, split_cidr
from components.aws.routing import AwsRoute, NetworkAddresses, network_routes, reachability
from components.aws.subnets import ROLES, ConnectorZoneSubnets, carve_connector, smallest_range, workload_subnets
from components.segmentation.aws_security_groups import (
    IntentRule,
    Segment,
    SecurityPlan,
    aws_intent,
    compile_security,
    permitted_boxes,
)
from components.spec import Circuit, FabricSpec
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
    index: int
    """Its position in the spec's networks (problems name `networks[index]`)."""
    region: str
    attach: str
    cidrs: list[str]
    zones: list[str]
    instances: int
    workload_subnets: list[str]
    fabric_subnets: list[str]
    """A connector's appliance subnets (its VMs and internal NLB: what the TGW and the edge reach); a native
    network's TGW attachment subnets."""
    endpoint_ips: list[str]
    edge: str
    edge_cidrs: list[str]
    destinations: list[str]
    connector_subnets: list[ConnectorZoneSubnets]
    """A connector's subnets per zone (appliance, gwlb, attachment, egress); none for a native network."""
    deliver_from: str = "node"
    """Whose address a connector delivers inbound flows from (spec `deliver_from`)."""


@dataclass(frozen=True)
class AwsCircuitLayout:
    """One Direct Connect circuit: its connection, VIF addresses and the networks it reaches."""

    name: str
    region: str
    """The region of its Direct Connect location (spec `region`): the connection and the VIF live there."""
    dx_gateway: str
    """Key of the DX gateway its VIF ends on, shared by every circuit that reaches one of the same networks
    (a VGW associates with one DX gateway only, so redundant circuits to one VPC meet in one gateway)."""
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
    """(key, Amazon-side ASN): a DX gateway per group of circuits sharing networks, created in the first one's region."""


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
    """Why there is no layout, one line each, starting with the field path where there is one."""


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
    carved, carve_problems = connector_subnets(spec, plan)
    security = compile_security(rules, [_delivered_from(spec, s, carved) for s in segments])
    routes = aws_routes(spec, rules)
    homes = {n.name: home.name for n in spec.networks if (home := home_edge(spec, n)) is not None}
    tgw_rows = [
        AwsRouteRow(network=f"tgw {edge.region}", destination=cidr, target=f"edge {edge.name}")
        for edge in spec.edges
        if edge.cloud == "aws"
        for cidr in _ingress(spec, [n for n, h in homes.items() if h == edge.name], edge.region, routes)
    ]
    layout, problems = None, circuit_problems(spec) + carve_problems
    if not problems:
        try:
            layout = _layout(spec, plan, security, routes, carved)
        except ValueError as exc:
            problems.append(f"aws: {exc}")
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
    """Which regions get which gateways: a TGW where an edge is; a VGW per circuit-reached network, in the
    network's region, with its DX gateway's ASN; a DX gateway per group of circuits sharing networks, in the
    region of the group's first circuit (a DX gateway is global; it associates VGWs of any region)."""
    asn = {c.dx_gateway: c.peer_asn for c in reversed(circuits)}
    vgw_asn = {net: asn[c.dx_gateway] for c in circuits for net in c.networks}
    edge_regions = {e.region for e in edges}
    out = []
    for region in regions:
        vgws = [(n.name, vgw_asn[n.name]) for n in networks if n.region == region and n.name in vgw_asn]
        dxgws = [(c.dx_gateway, c.peer_asn) for c in circuits if c.region == region and c.dx_gateway == c.name]
        if region in edge_regions or vgws or dxgws:
            out.append(AwsGatewayLayout(region=region, transit_gateway=region in edge_regions, vpn_gateways=vgws, dx_gateways=dxgws))
    return out


DX_GATEWAY_VGWS = 20
"""VGWs one Direct Connect gateway associates with (AWS quota, not adjustable)."""


def dx_gateway_groups(circuits: list[Circuit]) -> dict[str, str]:
    """Circuit -> its DX gateway's key: circuits that reach a common network share one, keyed by the first of them."""
    order = {c.name: i for i, c in enumerate(circuits)}
    root = {c.name: c.name for c in circuits}

    def find(name: str) -> str:
        while root[name] != name:
            name = root[name]
        return name

    first_on: dict[str, str] = {}
    for c in circuits:
        for network in c.attaches:
            other = first_on.setdefault(network, c.name)
            a, b = sorted((find(other), find(c.name)), key=order.__getitem__)
            root[b] = a
    return {c.name: find(c.name) for c in circuits}


def circuit_problems(spec: FabricSpec) -> list[str]:
    """What AWS would refuse in the spec's Direct Connect circuits, each with its field path."""
    indexed = [(i, c) for i, c in enumerate(spec.circuits) if PROVIDER_CLOUD[c.provider] == "aws"]
    groups = dx_gateway_groups([c for _, c in indexed])
    first = {c.name: (i, c) for i, c in indexed}
    out = []
    for i, c in indexed:
        if c.region is None:
            out.append(
                f"circuits[{i}].region: required for aws-direct-connect; set the AWS region of location {c.location!r} "
                "(the region whose Direct Connect console lists it): the connection and its VIF live there"
            )
        if not c.attaches:
            out.append(f"circuits[{i}].attaches: attach at least one AWS network; the DX gateway associates with that network's VGW")
        j, head = first[groups[c.name]]
        if head.name != c.name and head.bgp.peer_asn != c.bgp.peer_asn:
            shared = sorted(set(c.attaches) & {n for _, o in indexed if groups[o.name] == head.name and o is not c for n in o.attaches})
            out.append(
                f"circuits[{i}].bgp.peer_asn: {c.name} and {head.name} both reach {', '.join(shared)}, so their VIFs end on one "
                f"DX gateway (a VGW associates with one DX gateway only), which has one ASN; set it to {head.bgp.peer_asn} "
                f"as in circuits[{j}]"
            )
    for key in dict.fromkeys(groups.values()):
        reached = list(dict.fromkeys(n for _, c in indexed if groups[c.name] == key for n in c.attaches))
        if len(reached) > DX_GATEWAY_VGWS:
            out.append(
                f"circuits[{first[key][0]}].attaches: the DX gateway of {key} would associate {len(reached)} VGWs (one per network), "
                f"over the AWS limit of {DX_GATEWAY_VGWS}; split the networks over circuits that share none"
            )
    return out


def connector_subnets(spec: FabricSpec, plan: Plan) -> tuple[dict[str, list[ConnectorZoneSubnets]], list[str]]:
    """Each AWS connector's subnets per zone (components.aws.subnets), carved once from its `connector_cidr`, else its
    first CIDR; and, for a range too small to carve, a problem naming the field and the fix."""
    zones = {c.network: [s.zone for s in c.subnets] for c in plan.connectors if c.cloud == "aws"}
    carved: dict[str, list[ConnectorZoneSubnets]] = {}
    problems = []
    for i, n in enumerate(spec.networks):
        if n.name not in zones or not zones[n.name]:
            continue
        block, field = (n.connector_cidr, "connector_cidr") if n.connector_cidr is not None else (n.cidrs[0], "cidrs[0]")
        if n.deliver_from == "client" and n.instances != 1:
            problems.append(
                f"networks[{i}].deliver_from: client keeps replies on the delivering VM only with one connector VM, and "
                f"{n.instances} instances run {n.instances} to {2 * n.instances} VMs behind the GWLB; use node, or instances: 1"
            )
        try:
            carved[n.name] = carve_connector(block, zones[n.name])
        except ValueError as exc:
            need = smallest_range(len(zones[n.name]))
            problems.append(
                f"networks[{i}].{field}: {exc}; set connector_cidr to a free /{need} or larger inside the network's cidrs "
                f"(a secondary VPC CIDR works), or lower the zones of its edge {plan_home(plan, n.name)}"
            )
    return carved, problems


def _delivered_from(spec: FabricSpec, segment: Segment, carved: dict[str, list[ConnectorZoneSubnets]]) -> Segment:
    """A connector network whose connector delivers from its own address (`deliver_from: node`) gets its appliance
    subnets as the source of what it delivers, so its workloads' groups admit them (docs/aws.md, GENEVE)."""
    network = next(n for n in spec.networks if n.name == segment.network)
    if segment.network not in carved or network.deliver_from != "node":
        return segment
    return replace(segment, delivered_from=tuple(IPv4Network(z.appliance) for z in carved[segment.network]))


def plan_home(plan: Plan, network: str) -> str:
    """The edge a network's connector is homed at, by the plan."""
    return next(c.edge for c in plan.connectors if c.network == network)


def _layout(
    spec: FabricSpec, plan: Plan, security: SecurityPlan, routes: list[AwsRoute], carved: dict[str, list[ConnectorZoneSubnets]],
) -> AwsLayout:
    """Decide every AWS address and relation from the spec, its plan, the compiled rules and the routes."""
    edges = {e.name: e for e in plan.edges if e.cloud == "aws"}
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
    for index, n in enumerate(spec.networks):
        if n.cloud != "aws":
            continue
        edge = home[n.name]
        same_region_edge = edge.cloud == "aws" and edge.region == n.region
        subnets: list[ConnectorZoneSubnets] = []
        if n.attach == "connector":
            # Carved once (connector_subnets), per zone of the home edge; the appliance subnets are what the TGW and
            # the edge reach, the internal NLB takes the first free address of each.
            subnets = carved[n.name]
            zones = [z.zone for z in subnets]
            fabric = [z.appliance for z in subnets]
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
                name=n.name, index=index, region=n.region or "", attach=n.attach, cidrs=[str(c) for c in n.cidrs], zones=zones,
                instances=n.instances, fabric_subnets=fabric, connector_subnets=subnets, deliver_from=n.deliver_from,
                workload_subnets=workload_subnets(n.cidrs[0], len(zones), [IPv4Network(f) for f in fabric] + [
                    IPv4Network(getattr(z, role)) for z in subnets for role in ROLES
                ]), endpoint_ips=ips, edge=edge.name, edge_cidrs=[edge.cidr] if same_region_edge else [],
                destinations=[r.destination for r in routes if r.network == n.name and r.target != "circuit-propagated"],
            )
        )
    groups = dx_gateway_groups([c for c in spec.circuits if PROVIDER_CLOUD[c.provider] == "aws"])
    regions_of = {c.name: c.region or "" for c in spec.circuits}
    circuit_layouts = []
    for c in plan.circuits:
        if c.cloud != "aws":
            continue
        session = c.sessions[0]
        circuit_layouts.append(
            AwsCircuitLayout(
                name=c.name, region=regions_of[c.name], dx_gateway=groups[c.name], connection=c.connection,
                location=c.location, bandwidth_mbps=c.bandwidth_mbps, vlan=c.vlan, customer_asn=c.customer_asn,
                peer_asn=c.peer_asn, customer_address=f"{session.customer_ip}/{session.prefix_length}",
                amazon_address=f"{session.peer_ip}/{session.prefix_length}", md5_secret=c.md5_secret,
                networks=[a.network for a in c.attaches],
            )
        )
    regions = list(dict.fromkeys([e.region for e in edge_layouts] + [n.region for n in network_layouts] + [c.region for c in circuit_layouts]))
    return AwsLayout(
        regions=regions, edges=edge_layouts, networks=network_layouts, circuits=circuit_layouts,
        gateways=_gateways(regions, edge_layouts, network_layouts, circuit_layouts), security=security, routes=routes,
    )
