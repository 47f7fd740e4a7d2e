"""How an application VPC joins the fabric through connector VMs (a native TGW attachment is `Attachment`).

Seed 000: connector VMs behind a Gateway Load Balancer (GENEVE,
UDP 6081), an endpoint service with one GWLB endpoint per zone, and in each
zone's workload route table a route per reachable remote CIDR to that zone's
endpoint (zone-local, so a zone failure never blackholes another zone). The
connector lays out its own subnets per zone as AWS documents it
(components.aws.subnets: appliances, GWLB, TGW attachment, egress); the
appliance subnets reach the edge privately over the TGW when one is given, an
internal NLB with fixed addresses lets the edge dial the connector back,
interface endpoints serve the VMs' boot (SSM, EC2), and with `nat-gateway`
egress the edges' Elastic IPs are reached through a NAT gateway per zone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import pulumi
import pulumi_aws as aws

from components.aws.base import HTTPS, Common, SgRuleSpec, child, inline_rules, raise_problems
from components.aws.connector_subnets import connector_subnets
from components.aws.egress import NatEgress, nat_egress
from components.aws.endpoints import InterfaceEndpoints, interface_endpoints
from components.aws.fleet import fleet
from components.aws.parameters import NodeTlsArgs
from components.aws.gwlb import GENEVE_PORT, gwlb_ingress
from components.aws.naming import cidr_slug
from components.aws.options import Egress
from components.aws.subnets import APPLIANCE_PREFIX, ROLES, ConnectorZoneSubnets
from components.aws.tunnel_lb import TunnelLb, tunnel_lb
from components.plan import METRICS_PORT, PROBE_PORT, TUNNEL_PORT


@dataclass(frozen=True, kw_only=True)
class ConnectorArgs(Common):
    """Inputs of one onboarded application VPC's connector."""

    vpc_id: pulumi.Input[str]
    """The application VPC (it needs DNS support and DNS hostnames for the interface endpoints' private DNS)."""
    region: str
    """The VPC's region (the interface endpoints' service names). Valid values: an AWS region, e.g. us-east-1."""
    network_cidrs: list[str]
    """The application network's CIDRs (what the connector delivers to)."""
    zones: list[pulumi.Input[str]]
    """Availability zone names, one per zone, aligned with `subnets` and `route_table_ids`."""
    subnets: list[ConnectorZoneSubnets]
    """The connector's subnets per zone (appliance, gwlb, attachment, egress), free ranges of the VPC; the plan's
    (components.aws.subnets.carve_connector), which the connector creates with their route tables."""
    route_table_ids: list[pulumi.Input[str]]
    """Workload route tables that get the routes, one per zone, aligned with `zones`."""
    destination_cidrs: list[str]
    """Remote CIDRs the policy lets this network reach (routing.reachable_destinations)."""
    image_id: pulumi.Input[str]
    """AMI id of the Packer-built image."""
    agent_config_json: pulumi.Input[str]
    """The AgentConfig JSON (no secrets)."""
    tls: NodeTlsArgs
    """Its identity and the fabric CA: the fleet issues its certificate into the SSM parameters its VMs read at boot."""
    instance_type: str = "c6in.large"
    """Connector VM size. Defaults to c6in.large."""
    instances: int = 2
    """Connector VMs; the group keeps between `instances` and 2 x `instances`. Valid values: 1 to 16. Defaults to 2 (HA)."""
    health_port: int = METRICS_PORT
    """TCP port of the agent's health endpoint, checked by the GWLB. Defaults to the plan's metrics port (9108)."""
    tunnel_port: int = TUNNEL_PORT
    """TCP port of the edge's tunnels. Defaults to the plan's (components.plan.TUNNEL_PORT, 8443)."""
    transit_gateway_id: pulumi.Input[str] | None = None
    """TGW for the private path to the edge. Defaults to none (public path only)."""
    transit_gateway_route_table_id: pulumi.Input[str] | None = None
    """TGW route table to associate and propagate to. Required with `transit_gateway_id`."""
    edge_cidrs: list[str] = field(default_factory=list)
    """The home edge's CIDRs, reached privately over the TGW. Defaults to none."""
    endpoint_ips: list[str] = field(default_factory=list)
    """One free address per appliance subnet for the internal NLB edges dial. Defaults to none (edges never dial)."""
    probe_port: int = PROBE_PORT
    """UDP port of the path probes. Defaults to the plan's (components.plan.PROBE_PORT, 8444)."""
    egress: Egress = "none"
    """The public fallback's egress. Valid values: `nat-gateway` (a NAT gateway per zone in the egress subnets;
    the appliance tables send `edge_public_ips` to it), `none` (private path only). Defaults to none."""
    internet_gateway_id: pulumi.Input[str] | None = None
    """With `nat-gateway`: the VPC's internet gateway. Defaults to creating one (AWS refuses a second one per VPC)."""
    edge_public_ips: list[pulumi.Input[str]] = field(default_factory=list)
    """The edges' Elastic IPs the agents dial on the public path (routed to the NAT gateways). Defaults to none."""
    interface_endpoints: bool = True
    """Create the ssm, ssmmessages, ec2messages and ec2 interface endpoints (private DNS) in the appliance subnets.
    Defaults to true; false keeps HTTPS out to anywhere for a VPC that resolves them otherwise."""

    def problems(self) -> list[str]:
        out = self.check_common()
        planned = [getattr(z, role) for z in self.subnets for role in ROLES]
        for cidr in [*self.network_cidrs, *self.destination_cidrs, *self.edge_cidrs, *planned]:
            try:
                IPv4Network(cidr)
            except ValueError as exc:
                out.append(f"{cidr!r}: {exc}")
        if out:
            return out
        if not self.network_cidrs:
            out.append("network_cidrs is empty")
        if not self.zones or len(self.subnets) != len(self.zones) or len(self.route_table_ids) != len(self.zones):
            out.append("zones, subnets and route_table_ids need one entry per zone (zone-aligned)")
        for cidr in planned:
            if not any(IPv4Network(cidr).subnet_of(IPv4Network(c)) for c in self.network_cidrs):
                out.append(f"connector subnet {cidr} is outside the network's cidrs")
        if any(IPv4Network(z.appliance).prefixlen > APPLIANCE_PREFIX for z in self.subnets):
            out.append(f"appliance subnets must be /{APPLIANCE_PREFIX} or larger: the group scales to 2 x instances beside the NLB and endpoints")
        if "0.0.0.0/0" in self.destination_cidrs:
            out.append("destination_cidrs holds 0.0.0.0/0; route only the remote CIDRs the policy reaches")
        if (self.transit_gateway_id is None) != (self.transit_gateway_route_table_id is None):
            out.append("transit_gateway_id and transit_gateway_route_table_id go together")
        if self.endpoint_ips and len(self.endpoint_ips) != len(self.zones):
            out.append("endpoint_ips needs one address per appliance subnet")
        for ip, zone in zip(self.endpoint_ips, self.subnets):
            if IPv4Address(ip) not in IPv4Network(zone.appliance):
                out.append(f"endpoint ip {ip} is outside its appliance subnet {zone.appliance}")
        if self.edge_cidrs and self.transit_gateway_id is None:
            out.append("edge_cidrs are reached over the transit gateway; give transit_gateway_id")
        if self.egress not in ("nat-gateway", "none"):
            out.append(f"egress {self.egress!r} must be nat-gateway or none")
        if self.egress == "none" and (self.edge_public_ips or self.internet_gateway_id is not None):
            out.append("edge_public_ips and internet_gateway_id need egress nat-gateway")
        if not 1 <= self.instances <= 16:
            out.append(f"instances {self.instances} must be 1 to 16")
        return out

    @property
    def appliance_cidrs(self) -> list[str]:
        """The appliance subnets: the VMs and the internal NLB (what the TGW and the edge reach)."""
        return [z.appliance for z in self.subnets]

    @property
    def gwlb_cidrs(self) -> list[str]:
        """The GWLB subnets: GENEVE and the target group's health checks come from there."""
        return [z.gwlb for z in self.subnets]


class Connector(pulumi.ComponentResource):
    """Brings one application VPC's traffic to the fabric through connector VMs behind a GWLB."""

    def __init__(self, name: str, args: ConnectorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raise_problems("Connector", name, args.problems())
        super().__init__("transit:aws:Connector", name, None, opts)
        self.endpoints: list[aws.ec2.VpcEndpoint] = []
        self.tgw_attachment: aws.ec2transitgateway.VpcAttachment | None = None
        roles = [r for r in ROLES if r != "egress" or args.egress == "nat-gateway"]
        self.network = connector_subnets(self, name, args, args.vpc_id, args.zones, args.subnets, roles)
        if args.transit_gateway_id is not None:
            self._private_path(name, args)
        self._connector(name, args)
        self.routes: list[aws.ec2.Route] = [
            aws.ec2.Route(
                f"{name}-route-{index}-{cidr_slug(cidr)}", route_table_id=table, destination_cidr_block=cidr,
                vpc_endpoint_id=self.endpoints[index].id, opts=child(self, depends_on=[x for x in [self.tgw_attachment] if x]),
            )
            for index, table in enumerate(args.route_table_ids)
            for cidr in args.destination_cidrs
        ]
        self.tgw_attachment_id = self.tgw_attachment.id if self.tgw_attachment else pulumi.Output.from_input("")
        self.appliance_subnet_ids = pulumi.Output.all(*self.network.subnets["appliance"])
        self.connector_details = pulumi.Output.all(
            vpc_id=args.vpc_id, mode="connector", tgw_attachment_id=self.tgw_attachment_id,
            endpoint_ids=pulumi.Output.all(*[e.id for e in self.endpoints]), destination_cidrs=list(args.destination_cidrs),
            appliance_subnet_ids=self.appliance_subnet_ids, egress=args.egress,
        )
        self.register_outputs({
            "gwlb_arn": self.gwlb.arn, "endpoint_service_name": self.endpoint_service.service_name,
            "endpoint_ids": pulumi.Output.all(*[e.id for e in self.endpoints]), "asg_name": self.asg.name,
            "security_group_id": self.security_group.id, "appliance_subnet_ids": self.appliance_subnet_ids,
            "tgw_attachment_id": self.tgw_attachment_id, "connector_details": self.connector_details,
        })

    def _private_path(self, name: str, args: ConnectorArgs) -> None:
        """TGW attachment in the attachment subnets: the connector's private path to its edge."""
        self.tgw_attachment = aws.ec2transitgateway.VpcAttachment(
            f"{name}-tgw-attach", transit_gateway_id=args.transit_gateway_id, vpc_id=args.vpc_id,
            subnet_ids=self.network.subnets["attachment"],
            transit_gateway_default_route_table_association=False, transit_gateway_default_route_table_propagation=False,
            tags=args.tags("connector", f"{name}-tgw-attach"), opts=child(self),
        )
        aws.ec2transitgateway.RouteTableAssociation(
            f"{name}-tgw-assoc", transit_gateway_attachment_id=self.tgw_attachment.id,
            transit_gateway_route_table_id=args.transit_gateway_route_table_id, opts=child(self.tgw_attachment),
        )
        # Only the appliance subnets are reachable over the TGW (the private path to the edge). The application
        # CIDRs are not propagated: replies to them must go back through the agents.
        for cidr in args.appliance_cidrs:
            aws.ec2transitgateway.Route(
                f"{name}-tgw-route-{cidr_slug(cidr)}", destination_cidr_block=cidr,
                transit_gateway_attachment_id=self.tgw_attachment.id,
                transit_gateway_route_table_id=args.transit_gateway_route_table_id, opts=child(self.tgw_attachment),
            )
        for index, table in enumerate(self.network.route_tables["appliance"]):
            for cidr in args.edge_cidrs:
                aws.ec2.Route(
                    f"{name}-edge-route-{index}-{cidr_slug(cidr)}", route_table_id=table, destination_cidr_block=cidr,
                    transit_gateway_id=args.transit_gateway_id, opts=child(self.tgw_attachment, depends_on=[self.tgw_attachment]),
                )

    def _connector(self, name: str, args: ConnectorArgs) -> None:
        """Security groups, GWLB, endpoints, egress and the VMs."""
        rules: list[SgRuleSpec] = [("ingress", "udp", GENEVE_PORT, c) for c in args.gwlb_cidrs]
        rules += [("ingress", "tcp", args.health_port, c) for c in args.gwlb_cidrs]
        # Edges dial the internal NLB, which keeps their address; its health checks come from its own nodes.
        rules += [("ingress", "tcp", args.tunnel_port, c) for c in [*args.edge_cidrs, *args.appliance_cidrs]]
        rules += [("ingress", "udp", args.probe_port, c) for c in args.edge_cidrs]
        rules += [("egress", "tcp", args.tunnel_port, "0.0.0.0/0"), ("egress", "udp", args.probe_port, "0.0.0.0/0")]
        if not args.interface_endpoints:  # AWS APIs (SSM, EC2) at boot, wherever this VPC resolves them
            rules += [("egress", "tcp", HTTPS, "0.0.0.0/0")]
        # Delivery into the network; it covers the interface endpoints too, which sit in the appliance subnets.
        rules += [("egress", "-1", None, c) for c in args.network_cidrs]
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id,
            description=f"transit connector {name}: GENEVE and health checks from the GWLB, tunnels out, delivery in the VPC",
            ingress=inline_rules(rules, "ingress"), egress=inline_rules(rules, "egress"),
            tags=args.tags("connector", f"{name}-sg"), opts=child(self),
        )
        ingress = gwlb_ingress(self, name, args, "connector", args.vpc_id, self.network.subnets["gwlb"], args.health_port)
        self.gwlb, self.target_group, self.endpoint_service = ingress.gwlb, ingress.target_group, ingress.service
        self.endpoints.extend(ingress.endpoints)
        groups = [self.target_group]
        # The VMs boot after everything they need at boot: their subnets' routes, the endpoints, the NLB's fixed addresses.
        boot: list[pulumi.Resource] = list(self.network.resources)
        self.tunnel_lb: TunnelLb | None = None
        if args.endpoint_ips:
            self.tunnel_lb = tunnel_lb(
                self, f"{name}-nlb", args, "connector", args.vpc_id,
                [{"subnet_id": s, "private_ipv4_address": ip} for s, ip in zip(self.network.subnets["appliance"], args.endpoint_ips)],
                internal=True, tunnel_port=args.tunnel_port, probe_port=args.probe_port,
            )
            groups += self.tunnel_lb.target_groups
            boot.append(self.tunnel_lb.load_balancer)
        self.interface_endpoints: InterfaceEndpoints | None = None
        if args.interface_endpoints:
            self.interface_endpoints = interface_endpoints(
                self, name, args, args.vpc_id, args.region, self.network.subnets["appliance"], args.network_cidrs,
            )
            boot += self.interface_endpoints.endpoints
        self.egress: NatEgress | None = None
        if args.egress == "nat-gateway":
            self.egress = nat_egress(
                self, name, args, args.vpc_id, internet_gateway_id=args.internet_gateway_id,
                egress_subnet_ids=self.network.subnets["egress"], egress_route_table_ids=self.network.route_tables["egress"],
                appliance_route_table_ids=self.network.route_tables["appliance"], destinations=args.edge_public_ips,
            )
            boot += self.egress.routes
        self.fleet = fleet(
            self, name, args, "connector", image_id=args.image_id, instance_type=args.instance_type,
            agent_config_json=args.agent_config_json, security_group_id=self.security_group.id, public_ip=False,
            subnet_ids=self.network.subnets["appliance"], instances=args.instances, target_group_arns=[g.arn for g in groups], tls=args.tls,
            depends_on=boot,
        )
        self.role, self.asg = self.fleet.role, self.fleet.asg
