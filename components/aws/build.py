"""Turn the AWS layout into components: one provider, gateway and segmentation per region,
an edge per AWS edge, a VPC (or an existing one) and a connector per AWS network,
a Direct Connect circuit per aws-direct-connect circuit.

Called by `components.fabric.Fabric` through the target registry
(components.targets) with the plan's AWS section; every decision was made in
`planning.aws_section`, so this module only wires.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from components.aws.agent_configs import connector_config, edge_config
from components.aws.attachment import Attachment, AttachmentArgs
from components.aws.base import Common
from components.aws.circuit import Circuit, CircuitArgs, GatewayLink
from components.aws.connector import Connector, ConnectorArgs
from components.aws.edge import Edge, EdgeArgs
from components.aws.gateway import DxGatewaySpec, Gateway, GatewayArgs, VpnGatewaySpec
from components.aws.network_vpc import NetworkVpc, NetworkVpcArgs
from components.aws.options import AwsOptions, ExistingNetwork
from components.aws.parameters import NodeTlsArgs
from components.aws.peering import PeeringSide, TransitPeering, TransitPeeringArgs
from components.aws.planning import AwsLayout, AwsPlanSection
from components.aws.segmentation import Segmentation, SegmentationArgs
from components.aws.target import layout_problems
from components.plan_models import AgentPlan
from components.spec import FabricSpec
from dataplane.config import Member

if TYPE_CHECKING:
    from components.targets import BuildParent


@dataclass(frozen=True)
class AwsBuild:
    """What the AWS build created, for the Fabric's outputs."""

    layout: AwsLayout
    outputs: dict[str, pulumi.Input[object]]


def build(parent: BuildParent, section: AwsPlanSection, options: AwsOptions, secrets: Mapping[str, pulumi.Output[str]]) -> dict[str, pulumi.Input[object]]:
    """The registry's hook: build the AWS part under the Fabric component from the plan's AWS section."""
    assert section.layout is not None, "the registry checks the AWS problems first"
    agents = {a.name: a for a in parent.plan.agents}
    return build_aws(
        parent, parent.resource_name, parent.spec, section.layout, agents, parent.plan.members, parent.environment, secrets, options,
    ).outputs


def build_aws(
    parent: pulumi.Resource,
    name: str,
    spec: FabricSpec,
    layout: AwsLayout,
    agents: Mapping[str, AgentPlan],
    members: list[Member],
    environment: str,
    secrets: Mapping[str, pulumi.Output[str]],
    options: AwsOptions,
) -> AwsBuild:
    """Create every AWS component of the fabric under `parent`, as `layout` decided it."""
    problems = layout_problems(layout, secrets, options)
    if problems:
        raise ValueError(f"fabric {spec.name} (aws): " + "; ".join(problems))
    common = {"fabric": spec.name, "environment": environment}
    # Default tags on each provider reach taggable resources the components do not tag themselves.
    default_tags = {"tags": {"transit:fabric": spec.name, "transit:environment": environment}}
    providers = {
        region: aws.Provider(f"{name}-aws-{region}", region=region, default_tags=default_tags, opts=pulumi.ResourceOptions(parent=parent))
        for region in layout.regions
    }

    def opts(region: str) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, providers={"aws": providers[region]})

    zone_names = {region: _zone_names(region, parent, providers[region], layout) for region in layout.regions}

    def tls(agent: str, region: str) -> NodeTlsArgs:
        assert options.fabric_ca is not None, "layout_problems requires the fabric CA"
        return NodeTlsArgs(identity=agents[agent].identity, ca=options.fabric_ca, kms_key_id=options.parameter_kms_key_ids.get(region))

    def zones(region: str, count: int) -> list[pulumi.Output[str]]:
        return [zone_names[region].apply(lambda names, i=i: names[i]) for i in range(count)]

    vpcs: dict[str, ExistingNetwork] = {}
    for n in layout.networks:
        if n.name in options.existing_networks:
            vpcs[n.name] = options.existing_networks[n.name]
            continue
        vpc = NetworkVpc(
            n.name,
            NetworkVpcArgs(**common, cidrs=n.cidrs, zones=zones(n.region, len(n.zones)), workload_subnets=n.workload_subnets,
                           fabric_subnets=n.fabric_subnets if n.attach == "native" else []),
            opts=opts(n.region),
        )
        vpcs[n.name] = vpc.as_network()

    gateways = {
        g.region: Gateway(
            f"{spec.name}-{g.region}",
            GatewayArgs(
                **common, transit_gateway_asn=options.transit_gateway_asn if g.transit_gateway else None,
                vpn_gateways=[VpnGatewaySpec(key=net, vpc_id=vpcs[net].vpc_id, asn=asn) for net, asn in g.vpn_gateways],
                dx_gateways=[DxGatewaySpec(key=circuit, asn=asn) for circuit, asn in g.dx_gateways],
            ),
            opts=opts(g.region),
        )
        for g in layout.gateways
    }

    eips = {
        e.name: [
            aws.ec2.Eip(f"{e.name}-eip-{i}", domain="vpc", tags=Common(**common).tags("edge", f"{e.name}-eip-{i}"), opts=opts(e.region))
            for i in range(len(e.zones))
        ]
        for e in layout.edges
    }
    first_ips = pulumi.Output.all(**{edge: ips[0].public_ip for edge, ips in eips.items()}) if eips else pulumi.Output.from_input({})

    peerings = _peer_regions(name, common, layout, gateways, providers, opts)

    edges: dict[str, Edge] = {}
    for e in layout.edges:
        gateway = gateways[e.region]
        edges[e.name] = Edge(
            e.name,
            EdgeArgs(
                **common, zones=zones(e.region, len(e.zones)), cidr=e.cidr, public_subnets=e.public_subnets, attachment_subnets=e.attachment_subnets,
                private_ips=e.private_ips, image_id=options.image_id,  # type: ignore[arg-type]
                agent_config_json=first_ips.apply(lambda ips, e=e: edge_config(agents[f"edge-{e.name}"], members, layout, e, ips).model_dump_json()),
                tls=tls(f"edge-{e.name}", e.region),
                instance_type=options.instance_type, instances=e.instances, tunnel_port=e.tunnel_port, probe_port=e.probe_port,
                elastic_ips=eips[e.name],
                transit_gateway_id=gateway.transit_gateway_id, transit_gateway_route_table_id=gateway.transit_gateway_route_table_id,
                native_cidrs=e.native_cidrs, remote_edge_cidrs=[o.cidr for o in layout.edges if o.region != e.region],
                connector_cidrs=[c for n in layout.networks if n.attach == "connector" and n.edge == e.name and n.edge_cidrs for c in n.fabric_subnets],
                ingress_cidrs=e.ingress_cidrs, health_port=e.metrics_port,
            ),
            opts=opts(e.region),
        )

    connectors: dict[str, Connector] = {}
    attachments: dict[str, Attachment] = {}
    edge_by_name = {e.name: e for e in layout.edges}
    for n in layout.networks:
        gateway = gateways.get(n.region)
        v = vpcs[n.name]
        if n.attach == "native":  # the layout refuses a native network without an AWS edge (so a TGW) in its region
            assert gateway is not None
            attachments[n.name] = Attachment(
                f"{n.name}-attach",
                AttachmentArgs(
                    **common, vpc_id=v.vpc_id, network_cidrs=n.cidrs, subnet_ids=v.fabric_subnet_ids,
                    route_table_ids=v.workload_route_table_ids, destination_cidrs=n.destinations,
                    transit_gateway_id=gateway.transit_gateway_id, transit_gateway_route_table_id=gateway.transit_gateway_route_table_id,
                ),
                opts=opts(n.region),
            )
            continue
        tgw = {}
        if gateway is not None and gateway.transit_gateway is not None and n.edge_cidrs:
            tgw = {"transit_gateway_id": gateway.transit_gateway_id, "transit_gateway_route_table_id": gateway.transit_gateway_route_table_id}
        edge = edge_by_name[n.edge]
        existing = options.existing_networks.get(n.name)
        egress = options.egress(n.name)
        connectors[n.name] = Connector(
            f"{n.name}-connector",
            ConnectorArgs(
                **common, vpc_id=v.vpc_id, region=n.region, network_cidrs=n.cidrs, zones=zones(n.region, len(n.zones)),
                subnets=n.connector_subnets, route_table_ids=v.workload_route_table_ids, destination_cidrs=n.destinations,
                image_id=options.image_id, instance_type=options.instance_type, instances=n.instances,  # type: ignore[arg-type]
                egress=egress, internet_gateway_id=existing.internet_gateway_id if existing and egress == "nat-gateway" else None,
                edge_public_ips=[eip.public_ip for eip in eips[edge.name]] if egress == "nat-gateway" else [],
                interface_endpoints=options.interface_endpoints(n.name), tls=tls(f"connector-{n.name}", n.region),
                # Without egress the edge's public address is unreachable: the agent gets the private path only.
                agent_config_json=first_ips.apply(lambda ips, n=n, public=egress == "nat-gateway": connector_config(
                    agents[f"connector-{n.name}"], members, layout, n, ips if public else {}).model_dump_json()),
                health_port=edge.metrics_port, tunnel_port=edge.tunnel_port, probe_port=edge.probe_port,
                edge_cidrs=n.edge_cidrs if tgw else [], endpoint_ips=n.endpoint_ips, **tgw,  # type: ignore[arg-type]
            ),
            opts=opts(n.region),
        )

    circuits: dict[str, Circuit] = {}
    network_region = {n.name: n.region for n in layout.networks}
    dx_region = {c.dx_gateway: c.region for c in layout.circuits if c.dx_gateway == c.name}
    for c in layout.circuits:
        # The DX gateway is global: the group's first circuit creates it and associates every network any
        # circuit of the group reaches, each VGW once, in the VGW's region, after the VGW is attached.
        reached = dict.fromkeys(n for o in layout.circuits if o.dx_gateway == c.name for n in o.networks)
        links = [
            GatewayLink(
                key=net, kind="vgw", gateway_id=gateways[network_region[net]].vpn_gateways[net].id,
                propagate_route_table_ids=list(vpcs[net].workload_route_table_ids),
                region=network_region[net] if network_region[net] != c.region else None,
                ready=[gateways[network_region[net]].vpn_gateway_attachments[net]],
            )
            for net in reached
        ]
        circuits[c.name] = Circuit(
            c.name,
            CircuitArgs(
                **common, connection=c.connection, location=c.location, bandwidth_mbps=c.bandwidth_mbps,  # type: ignore[arg-type]
                hosted_connection_id=options.hosted_connection_ids.get(c.name), vlan=c.vlan, customer_asn=c.customer_asn,
                customer_address=c.customer_address, amazon_address=c.amazon_address, md5_key=secrets[c.md5_secret],
                dx_gateway_id=gateways[dx_region[c.dx_gateway]].dx_gateways[c.dx_gateway].id, associations=links,
            ),
            opts=opts(c.region),
        )

    segmentation = {
        region: Segmentation(
            f"{spec.name}-{region}-seg",
            SegmentationArgs(
                **common, region=region, plan=layout.security,
                vpc_ids={n.name: vpcs[n.name].vpc_id for n in layout.networks if n.region == region},
            ),
            opts=opts(region),
        )
        for region in layout.regions
        if any(m.region == region for m in layout.security.members)
    }

    outputs: dict[str, pulumi.Input[object]] = {
        "aws_edges": {k: e.edge_details for k, e in edges.items()},
        "aws_edge_public_ips": {k: e.public_ips for k, e in edges.items()},
        "aws_connectors": {k: c.connector_details for k, c in connectors.items()},
        "aws_attachments": {k: a.attachment_details for k, a in attachments.items()},
        "aws_gateways": {k: g.gateway_details for k, g in gateways.items()},
        "aws_circuits": {k: c.circuit_details for k, c in circuits.items()},
        "aws_tgw_peerings": {k: p.attachment_id for k, p in peerings.items()},
        "aws_security_group_ids": {k: s.security_group_ids for k, s in segmentation.items()},
        "aws_rules_emitted": layout.security.rules_emitted,
        "aws_rules_cartesian": layout.security.rules_cartesian,
    }
    return AwsBuild(layout, outputs)


def _zone_names(region: str, parent: pulumi.Resource, provider: aws.Provider, layout: AwsLayout) -> pulumi.Output[list[str]]:
    """The region's zone names for the plan's zone positions (zone1 = the first), as this account names them.

    Available zones that need no opt-in (Local and Wavelength Zones do), in the order AWS lists them; a
    region with fewer than the plan needs fails with the count instead of creating subnets in a zone that is
    not there.
    """
    need = max([len(e.zones) for e in layout.edges if e.region == region] + [len(n.zones) for n in layout.networks if n.region == region] + [0])
    found = aws.get_availability_zones_output(
        state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}], region=region,
        opts=pulumi.InvokeOutputOptions(parent=parent, provider=provider),
    ).names

    def enough(names: list[str]) -> list[str]:
        if len(names) < need:
            raise ValueError(f"region {region} has {len(names)} available zones ({', '.join(names)}); the plan needs {need}: lower edges[].zones")
        return names

    return found.apply(enough)


def _peer_regions(
    name: str,
    common: dict[str, str],
    layout: AwsLayout,
    gateways: dict[str, Gateway],
    providers: dict[str, aws.Provider],
    opts: Callable[[str], pulumi.ResourceOptions],
) -> dict[str, TransitPeering]:
    """Peer every pair of edge regions' TGWs (in spec order, the earlier region requests)."""
    regions = list(dict.fromkeys(e.region for e in layout.edges))
    cidrs = {r: [e.cidr for e in layout.edges if e.region == r] for r in regions}

    def side(region: str) -> PeeringSide:
        g = gateways[region]
        return PeeringSide(region=region, transit_gateway_id=g.transit_gateway_id, route_table_id=g.transit_gateway_route_table_id, cidrs=cidrs[region])

    return {
        f"{a}--{b}": TransitPeering(
            f"{name}-{a}--{b}",
            TransitPeeringArgs(**common, requester=side(a), accepter=side(b), accepter_provider=providers[b]),
            opts=opts(a),
        )
        for i, a in enumerate(regions)
        for b in regions[i + 1:]
    }
