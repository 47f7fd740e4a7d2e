"""Pure compile step: a validated `FabricSpec` in, a deterministic `Plan` out.

Address allocation lives here (edge zone subnets, connector subnets, circuit
peering addresses, link addresses) so Pulumi code only turns the plan into
resources. Allocation depends only on positions in the spec, so appending an
edge or a network never moves an existing address. Never imports Pulumi.

This is the target-independent plan; it names no target. Each target (AWS,
Azure, GCP, local) adds its own section through the registry
(`components.targets.plan_fabric`), which is what the Fabric, `transit plan`
and `transit check` use. To extend the common plan, add a field to `Plan` in
plan_models.py, build it here from the spec, then regenerate the goldens
(tests/unit/test_plan_golden.py) and review the diff.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable

from components.plan_agents import plan_agents
from components.plan_models import (
    AttachmentPlan,
    BgpSessionPlan,
    CircuitAttachmentPlan,
    CircuitPlan,
    CloudRouterNeighborPlan,
    CloudRouterPlan,
    ConnectorBgpPlan,
    ConnectorPlan,
    EdgePlan,
    LinkPlan,
    Plan,
    ZoneSubnet,
)
from components.segmentation.members import fabric_members
from components.spec import Circuit, Edge, FabricSpec, Network
from components.spec_checks import CONNECTOR_SUBNET_PREFIX, home_edge, required_connector_prefix
from components.spec_providers import PEERING_RULES, PROVIDER_CLOUD

TUNNEL_PORT = 8443
PROBE_PORT = 8444
METRICS_PORT = 9108
LINK_PREFERENCE = {"backbone": 100, "internet": 200}
SESSION_ROLES = ("primary", "secondary")

ZONE_NAMERS: dict[str, Callable[[str, int], str]] = {
    # AWS zone names differ per account and some regions lack an `a`: the plan names a position, and the AWS
    # build reads the region's names from aws.get_availability_zones (available, no opt-in), zone1 the first.
    "aws": lambda region, i: f"{region}-zone{i + 1}",
    "azure": lambda region, i: str(i + 1),
    "gcp": lambda region, i: f"{region}-{'abc'[i]}",
}
NATIVE_ATTACH_KIND = {"aws": "transit-gateway", "azure": "vwan-hub", "gcp": "ncc-spoke"}


def build_plan(spec: FabricSpec) -> Plan:
    """Compile the spec into the plan of nodes and addresses."""
    members = fabric_members(spec)
    return Plan(
        fabric=spec.name,
        edges=[_edge(spec, e) for e in spec.edges],
        connectors=[_connector(spec, n) for n in spec.networks if n.attach == "connector"],
        attachments=[_attachment(spec, n) for n in spec.networks if n.attach == "native"],
        circuits=[_circuit(spec, c) for c in spec.circuits],
        cloud_router=_cloud_router(spec),
        links=_edge_links(spec) + _uplinks(spec),
        agents=plan_agents(spec, members),
        members=members,
    )


def zone_names(cloud: str, region: str, zones: int) -> list[str]:
    """Zone names in the cloud's own spelling."""
    return [ZONE_NAMERS[cloud](region, i) for i in range(zones)]


def _edge(spec: FabricSpec, edge: Edge) -> EdgePlan:
    quarters = list(edge.cidr.subnets(prefixlen_diff=2))
    zones = zone_names(edge.cloud, edge.region, edge.zones)
    return EdgePlan(
        name=edge.name,
        cloud=edge.cloud,
        region=edge.region,
        cidr=str(edge.cidr),
        instances=edge.instances,
        zones=zones,
        subnets=[ZoneSubnet(zone=z, cidr=str(q)) for z, q in zip(zones, quarters)],
        gateway_cidr=str(quarters[-1]),
        tunnel_port=TUNNEL_PORT,
        probe_port=PROBE_PORT,
        metrics_port=METRICS_PORT,
        networks=[n.name for n in spec.networks if _home(spec, n).name == edge.name],
    )


def _home(spec: FabricSpec, network: Network) -> Edge:
    edge = home_edge(spec, network)
    if edge is None:  # the spec checks refuse such a network; reaching here is a bug
        raise ValueError(f"network {network.name} has no edge")
    return edge


def default_connector_cidr(network: Network, zones: int) -> ipaddress.IPv4Network:
    """The last block of the network's first CIDR big enough for one /28 per zone."""
    prefix = required_connector_prefix(zones)
    first = network.cidrs[0]
    size = 2 ** (32 - prefix)
    start = int(first.broadcast_address) + 1 - size
    return ipaddress.IPv4Network((start, prefix))


def _connector(spec: FabricSpec, network: Network) -> ConnectorPlan:
    edge = _home(spec, network)
    connector_cidr = None
    subnets: list[ZoneSubnet] = []
    if network.cloud != "onprem":
        connector_cidr = network.connector_cidr or default_connector_cidr(network, edge.zones)
        zones = zone_names(network.cloud, network.region or "", edge.zones)
        blocks = connector_cidr.subnets(new_prefix=CONNECTOR_SUBNET_PREFIX)
        subnets = [ZoneSubnet(zone=z, cidr=str(b)) for z, b in zip(zones, blocks)]
    bgp = None
    if network.bgp is not None:
        bgp = ConnectorBgpPlan(
            asn=network.bgp.asn,
            local_ip=str(connector_local_ip(network)),
            peer_ip=str(network.bgp.peer_ip),
            peer_asn=network.bgp.peer_asn,
            md5_secret=network.bgp.md5_secret,
        )
    return ConnectorPlan(
        name=f"{network.name}-connector",
        network=network.name,
        cloud=network.cloud,
        region=network.region,
        site=network.site,
        edge=edge.name,
        instances=network.instances,
        cidrs=[str(c) for c in network.cidrs],
        connector_cidr=str(connector_cidr) if connector_cidr else None,
        subnets=subnets,
        bgp=bgp,
        tunnel_port=TUNNEL_PORT,
    )


def connector_local_ip(network: Network) -> ipaddress.IPv4Address:
    """The on-prem connector's BGP address: `bgp.local_ip`, else the address after `peer_ip`."""
    assert network.bgp is not None
    return network.bgp.local_ip or network.bgp.peer_ip + 1


def _attachment(spec: FabricSpec, network: Network) -> AttachmentPlan:
    return AttachmentPlan(
        name=f"{network.name}-attach",
        network=network.name,
        cloud=network.cloud,
        region=network.region or "",
        edge=_home(spec, network).name,
        kind=NATIVE_ATTACH_KIND[network.cloud],  # type: ignore[arg-type]
        cidrs=[str(c) for c in network.cidrs],
    )


def circuit_sessions(circuit: Circuit) -> list[BgpSessionPlan]:
    """Each peering subnet as a session; addresses by the provider's convention unless given."""
    rule = PEERING_RULES[circuit.provider]
    sessions = []
    for j, subnet in enumerate(circuit.bgp.peering):
        customer = (circuit.bgp.customer_ips or [])[j:j + 1]
        peer = (circuit.bgp.peer_ips or [])[j:j + 1]
        sessions.append(
            BgpSessionPlan(
                role=SESSION_ROLES[j],  # type: ignore[arg-type]
                subnet=str(subnet),
                prefix_length=subnet.prefixlen,
                customer_ip=str(customer[0] if customer else subnet[rule.customer_host[subnet.prefixlen]]),
                peer_ip=str(peer[0] if peer else subnet[rule.provider_host[subnet.prefixlen]]),
            )
        )
    return sessions


def _circuit(spec: FabricSpec, circuit: Circuit) -> CircuitPlan:
    networks = {n.name: n for n in spec.networks}
    router = spec.cloud_router
    return CircuitPlan(
        name=circuit.name,
        provider=circuit.provider,
        cloud=PROVIDER_CLOUD[circuit.provider],
        connection=circuit.connection,
        location=circuit.location,
        bandwidth_mbps=circuit.bandwidth_mbps,
        vlan=circuit.vlan,
        customer_asn=circuit.bgp.customer_asn,
        peer_asn=circuit.bgp.peer_asn,
        md5_secret=circuit.bgp.md5_secret,
        sessions=circuit_sessions(circuit),
        attaches=[
            CircuitAttachmentPlan(
                network=name,
                region=networks[name].region or "",
                cidrs=[str(c) for c in networks[name].cidrs],
            )
            for name in circuit.attaches
        ],
        cloud_router=cloud_router_name(spec) if router and circuit.name in router.circuits else None,
    )


def cloud_router_name(spec: FabricSpec) -> str:
    """The cloud router has no name in the spec; it is named after the fabric."""
    return f"{spec.name}-cloud-router"


def _cloud_router(spec: FabricSpec) -> CloudRouterPlan | None:
    router = spec.cloud_router
    if router is None:
        return None
    circuits = [c for name in router.circuits for c in spec.circuits if c.name == name]
    neighbors = [
        CloudRouterNeighborPlan(
            circuit=c.name,
            role=s.role,
            vlan=c.vlan,
            local_ip=s.customer_ip,
            peer_ip=s.peer_ip,
            prefix_length=s.prefix_length,
            peer_asn=c.bgp.peer_asn,
            md5_secret=c.bgp.md5_secret,
        )
        for c in circuits
        for s in circuit_sessions(c)
    ]
    return CloudRouterPlan(
        name=cloud_router_name(spec),
        asn=router.asn,
        locations=list(dict.fromkeys(c.location for c in circuits)),
        circuits=[c.name for c in circuits],
        neighbors=neighbors,
    )


def _link(kind: str, name: str, a: str, b: str, pool: ipaddress.IPv4Network, index: int) -> LinkPlan:
    subnet = ipaddress.IPv4Network((int(pool.network_address) + 2 * index, 31))
    return LinkPlan(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        a=a,
        b=b,
        subnet=str(subnet),
        a_ip=str(subnet[0]),
        b_ip=str(subnet[1]),
        preference=LINK_PREFERENCE[kind],
    )


def _pools(spec: FabricSpec, kind: str) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """Each underlay pool splits in two: edge-to-edge links, then connector uplinks."""
    cidr = spec.underlay.backbone_cidr if kind == "backbone" else spec.underlay.internet_cidr
    lower, upper = cidr.subnets(prefixlen_diff=1)
    return lower, upper


def pair_index(i: int, j: int) -> int:
    """Position of the edge pair (i, j), i < j, in an order that appending an edge never changes."""
    return j * (j - 1) // 2 + i


def _edge_links(spec: FabricSpec) -> list[LinkPlan]:
    """A full mesh between edges, once over the private backbone and once over the internet."""
    links = []
    edges = spec.edges
    for j in range(len(edges)):
        for i in range(j):
            for kind in LINK_PREFERENCE:
                pool = _pools(spec, kind)[0]
                name = f"{edges[i].name}--{edges[j].name}-{kind}"
                links.append(_link(kind, name, edges[i].name, edges[j].name, pool, pair_index(i, j)))
    return links


def _uplinks(spec: FabricSpec) -> list[LinkPlan]:
    """Each connector to its edge, over the private path and over the internet."""
    links = []
    for index, network in enumerate(spec.networks):
        if network.attach != "connector":
            continue
        edge = _home(spec, network)
        connector = f"{network.name}-connector"
        for kind in LINK_PREFERENCE:
            pool = _pools(spec, kind)[1]
            links.append(_link(kind, f"{connector}--{edge.name}-{kind}", connector, edge.name, pool, index))
    return links
