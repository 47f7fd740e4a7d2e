"""The AWS edge: autoscaled transit VMs in an edge VPC, public tunnel endpoints, TGW attachment.

Public tunnel endpoints: an internet-facing Network Load Balancer with one
Elastic IP per zone (subnet mappings). Chosen over Elastic IPs on the VMs
because the addresses stay fixed while the autoscaling group replaces VMs
(peers and firewalls allow-list them once), the NLB health-checks and spreads
tunnels over the VMs, and no VM needs the right to move addresses
(`ec2:AssociateAddress`), which keeps the instance role least-privilege.
A second, internal NLB holds one fixed private address per zone (the plan's
`.4` of each edge subnet): the private path that connectors reach over the TGW.
When native networks send traffic through the edge (`ingress_cidrs`), the TGW
routes it to the edge's attachment, whose per-zone route tables hand it to a
GWLB endpoint in front of the edge VMs (the inspection-VPC pattern, appliance
mode on), so requests and replies take the same path through the agents.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from components.aws.base import HTTPS, Common, SgRuleSpec, child, inline_rules, raise_problems
from components.aws.fleet import fleet
from components.aws.parameters import NodeTlsArgs
from components.aws.gwlb import GENEVE_PORT, GwlbIngress, gwlb_ingress
from components.aws.naming import cidr_slug
from components.aws.tunnel_lb import tunnel_lb
from components.plan import METRICS_PORT, PROBE_PORT, TUNNEL_PORT


@dataclass(frozen=True, kw_only=True)
class ExistingVpc:
    """A VPC that already exists: the edge uses it instead of creating one."""

    vpc_id: pulumi.Input[str]
    """The VPC id."""
    public_subnet_ids: list[pulumi.Input[str]]
    """One public subnet per zone (default route to an internet gateway), for the VMs and the NLB."""
    attachment_subnet_ids: list[pulumi.Input[str]]
    """One subnet per zone for the transit gateway attachment."""
    cidr: str
    """The VPC's CIDR (GWLB health checks and GENEVE come from inside it)."""
    route_table_ids: list[pulumi.Input[str]]
    """Route tables of the public subnets: they get routes to the networks behind the transit gateway."""
    private_endpoint_ips: list[str]
    """One free private address per public subnet for the internal NLB (the private tunnel endpoint)."""
    attachment_route_table_ids: list[pulumi.Input[str]] = field(default_factory=list)
    """One route table per attachment subnet (zone); required with `ingress_cidrs`. Defaults to none."""


@dataclass(frozen=True, kw_only=True)
class EdgeArgs(Common):
    """Inputs of an AWS edge."""

    zones: list[pulumi.Input[str]]
    """Availability zone names, one per zone (e.g. [us-east-1a, us-east-1b]; the Fabric reads them from
    aws.get_availability_zones for the plan's zone positions). Valid values: 2 or 3 zones."""
    image_id: pulumi.Input[str]
    """AMI id of the Packer-built edge image. Valid values: an AMI id in `region`."""
    agent_config_json: pulumi.Input[str]
    """The AgentConfig JSON the agent reads from user data. It must hold no secret: VMs fetch keys from SSM."""
    tls: NodeTlsArgs
    """Its identity and the fabric CA: the fleet issues its certificate into the SSM parameters its VMs read at boot."""
    cidr: str | None = None
    """Edge VPC CIDR (/26 or larger). Required unless `existing_vpc` is given."""
    public_subnets: list[str] = field(default_factory=list)
    """With `cidr`: the public subnet of each zone, inside `cidr` (the plan's edge subnets). Defaults to none."""
    attachment_subnets: list[str] = field(default_factory=list)
    """With `cidr`: the /28 transit-gateway attachment subnet of each zone, inside `cidr`. Defaults to none."""
    private_ips: list[str] = field(default_factory=list)
    """With `cidr`: the internal NLB's fixed address in each public subnet (the private tunnel endpoint). Defaults to none."""
    existing_vpc: ExistingVpc | None = None
    """Use this VPC instead of creating one. Defaults to creating the edge VPC from `cidr`."""
    instance_type: str = "c6in.large"
    """VM size. Defaults to c6in.large (network-optimised)."""
    instances: int = 2
    """Desired VMs; the group keeps between `instances` and 2 x `instances`. Defaults to 2."""
    tunnel_port: int = TUNNEL_PORT
    """TCP port of the mutual-TLS tunnels. Defaults to the plan's (components.plan.TUNNEL_PORT, 8443)."""
    probe_port: int = PROBE_PORT
    """UDP port of the path probes. Defaults to the plan's (components.plan.PROBE_PORT, 8444)."""
    tunnel_sources: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    """CIDRs allowed to open tunnels and send probes (peers authenticate by mTLS). Defaults to 0.0.0.0/0."""
    transit_gateway_id: pulumi.Input[str] | None = None
    """Attach the edge VPC to this TGW. Defaults to no attachment."""
    transit_gateway_route_table_id: pulumi.Input[str] | None = None
    """TGW route table to associate and propagate to. Required with `transit_gateway_id`."""
    native_cidrs: list[str] = field(default_factory=list)
    """CIDRs of native (TGW-attached) networks this edge delivers to. Defaults to none."""
    remote_edge_cidrs: list[str] = field(default_factory=list)
    """Edge CIDRs of other regions, reached over TGW peering (the private backbone). Defaults to none."""
    connector_cidrs: list[str] = field(default_factory=list)
    """Connector subnets of this region's connectors, reached over the TGW (the private path: replies to
    connectors, which the NLBs deliver with the connector's address, and edges dialling a connector). Defaults to none."""
    ingress_cidrs: list[str] = field(default_factory=list)
    """Destinations native networks reach through this edge: the TGW sends them to the edge's attachment and
    its subnets send them into the edge's GWLB (appliance mode keeps both directions on one zone). Defaults to none."""
    health_port: int = METRICS_PORT
    """TCP port of the agent's /healthz, checked by the edge's GWLB. Defaults to the plan's metrics port (9108)."""
    elastic_ips: list[aws.ec2.Eip] | None = None
    """Pre-allocated Elastic IPs, one per zone (peers' configs need them first). Defaults to allocating them here."""

    def problems(self) -> list[str]:
        out = self.check_common()
        if (self.cidr is None) == (self.existing_vpc is None):
            out.append("give exactly one of cidr (create the edge VPC) or existing_vpc")
        zones = len(self.zones)
        if self.cidr is not None:
            out += self._planned_vpc_problems(zones)
        if self.existing_vpc is not None:
            v = self.existing_vpc
            if {len(v.public_subnet_ids), len(v.attachment_subnet_ids), len(v.private_endpoint_ips)} != {zones}:
                out.append(
                    f"existing_vpc needs {zones} public subnets, attachment subnets and private endpoint IPs (one per zone)"
                )
        if zones not in (2, 3):
            out.append(f"zones {self.zones} must name 2 or 3 zones")
        if not 1 <= self.instances <= 16:
            out.append(f"instances {self.instances} must be 1 to 16")
        for port_name in ("tunnel_port", "probe_port"):
            if not 1 <= getattr(self, port_name) <= 65535:
                out.append(f"{port_name} must be 1 to 65535")
        if (self.transit_gateway_id is None) != (self.transit_gateway_route_table_id is None):
            out.append("transit_gateway_id and transit_gateway_route_table_id go together")
        if self.elastic_ips is not None and len(self.elastic_ips) != zones:
            out.append(f"elastic_ips needs one Elastic IP per zone ({zones})")
        if (self.native_cidrs or self.remote_edge_cidrs or self.ingress_cidrs or self.connector_cidrs) and self.transit_gateway_id is None:
            out.append("native_cidrs, remote_edge_cidrs, connector_cidrs and ingress_cidrs go over the transit gateway; give transit_gateway_id")
        if self.ingress_cidrs and self.existing_vpc is not None and len(self.existing_vpc.attachment_route_table_ids) != zones:
            out.append("ingress_cidrs in an existing VPC need existing_vpc.attachment_route_table_ids, one per zone")
        for cidr in [*self.tunnel_sources, *self.native_cidrs, *self.remote_edge_cidrs, *self.ingress_cidrs, *self.connector_cidrs]:
            try:
                IPv4Network(cidr)
            except ValueError as exc:
                out.append(f"{cidr!r}: {exc}")
        return out

    def _planned_vpc_problems(self, zones: int) -> list[str]:
        """The planned subnets and addresses: one per zone, inside `cidr` (the plan carved them; nothing here re-carves)."""
        try:
            net = IPv4Network(self.cidr)  # type: ignore[arg-type]
        except ValueError as exc:
            return [f"cidr {self.cidr!r}: {exc}"]
        out = [f"cidr {self.cidr} is too small; use /26 or larger"] if net.prefixlen > 26 else []
        if {len(self.public_subnets), len(self.attachment_subnets), len(self.private_ips)} != {zones}:
            out.append(f"cidr needs {zones} public subnets, attachment subnets and private ips (one per zone, from the plan)")
        for subnet in [*self.public_subnets, *self.attachment_subnets]:
            try:
                if not IPv4Network(subnet).subnet_of(net):
                    out.append(f"subnet {subnet} is outside cidr {self.cidr}")
            except ValueError as exc:
                out.append(f"{subnet!r}: {exc}")
        return out


class Edge(pulumi.ComponentResource):
    """One regional edge: VPC, VMs in an autoscaling group behind an NLB, TGW attachment."""

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raise_problems("Edge", name, args.problems())
        super().__init__("transit:aws:Edge", name, None, opts)
        zones = args.zones

        if args.existing_vpc is None:
            assert args.cidr is not None
            public_cidrs, attach_cidrs = args.public_subnets, args.attachment_subnets
            self.vpc = aws.ec2.Vpc(
                f"{name}-vpc", cidr_block=args.cidr, enable_dns_hostnames=True, enable_dns_support=True,
                tags=args.tags("edge", f"{name}-vpc"), opts=child(self),
            )
            vpc_id: pulumi.Input[str] = self.vpc.id
            igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=args.tags("edge", f"{name}-igw"), opts=child(self.vpc))
            route_table = aws.ec2.RouteTable(f"{name}-rt", vpc_id=self.vpc.id, tags=args.tags("edge", f"{name}-rt"), opts=child(self.vpc))
            aws.ec2.Route(f"{name}-rt-default", route_table_id=route_table.id, destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=child(route_table))
            public: list[pulumi.Input[str]] = []
            attach: list[pulumi.Input[str]] = []
            attach_tables: list[pulumi.Input[str]] = []
            for index, (zone, pub, att) in enumerate(zip(zones, public_cidrs, attach_cidrs)):
                for role, cidr, bucket in (("public", pub, public), ("attach", att, attach)):
                    subnet = aws.ec2.Subnet(
                        f"{name}-{role}-{index}", vpc_id=self.vpc.id, cidr_block=str(cidr), availability_zone=zone,
                        map_public_ip_on_launch=role == "public", tags=args.tags("edge", f"{name}-{role}-{index}"), opts=child(self.vpc),
                    )
                    table = route_table
                    if role == "attach":  # its own table per zone: where traffic from the TGW goes next
                        table = aws.ec2.RouteTable(
                            f"{name}-attach-rt-{index}", vpc_id=self.vpc.id, tags=args.tags("edge", f"{name}-attach-rt-{index}"),
                            opts=child(self.vpc),
                        )
                        attach_tables.append(table.id)
                    aws.ec2.RouteTableAssociation(f"{name}-{role}-{index}-rta", subnet_id=subnet.id, route_table_id=table.id, opts=child(subnet))
                    bucket.append(subnet.id)
            route_tables: list[pulumi.Input[str]] = [route_table.id]
            private_ips = list(args.private_ips)
            vpc_cidr = args.cidr
            gwlb_sources = [str(c) for c in public_cidrs]  # the edge's GWLB has its nodes in the public subnets
        else:
            vpc_id = args.existing_vpc.vpc_id
            public = list(args.existing_vpc.public_subnet_ids)
            attach = list(args.existing_vpc.attachment_subnet_ids)
            route_tables = list(args.existing_vpc.route_table_ids)
            attach_tables = list(args.existing_vpc.attachment_route_table_ids)
            private_ips = list(args.existing_vpc.private_endpoint_ips)
            vpc_cidr = args.existing_vpc.cidr
            gwlb_sources = [vpc_cidr]  # the public subnets' CIDRs are not given for an existing VPC

        # The NLB health-checks from inside the VPC; keep that open even when tunnel_sources is narrow.
        sources = list(dict.fromkeys([*args.tunnel_sources, vpc_cidr]))
        rules: list[SgRuleSpec] = [("ingress", "tcp", args.tunnel_port, source) for source in sources]
        rules += [("ingress", "udp", args.probe_port, source) for source in args.tunnel_sources]
        if args.ingress_cidrs:  # GENEVE and health checks from the edge's GWLB nodes only
            rules += [r for c in gwlb_sources for r in (("ingress", "udp", GENEVE_PORT, c), ("ingress", "tcp", args.health_port, c))]
        rules += [("egress", "tcp", args.tunnel_port, "0.0.0.0/0"), ("egress", "udp", args.probe_port, "0.0.0.0/0")]
        rules += [("egress", "tcp", HTTPS, "0.0.0.0/0")]  # AWS APIs (SSM) at boot
        rules += [("egress", "-1", None, cidr) for cidr in args.native_cidrs]
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=vpc_id, description=f"transit edge {name}: tunnel tcp/{args.tunnel_port} and probe udp/{args.probe_port} only",
            ingress=inline_rules(rules, "ingress"), egress=inline_rules(rules, "egress"),
            tags=args.tags("edge", f"{name}-sg"), opts=child(self),
        )

        self.eips = args.elastic_ips or [
            aws.ec2.Eip(f"{name}-eip-{index}", domain="vpc", tags=args.tags("edge", f"{name}-eip-{index}"), opts=child(self))
            for index in range(len(zones))
        ]
        self.public_lb = tunnel_lb(
            self, f"{name}-nlb", args, "edge", vpc_id,
            [{"subnet_id": subnet, "allocation_id": eip.id} for subnet, eip in zip(public, self.eips)],
            internal=False, tunnel_port=args.tunnel_port, probe_port=args.probe_port,
        )
        self.private_lb = tunnel_lb(
            self, f"{name}-nlb-private", args, "edge", vpc_id,
            [{"subnet_id": subnet, "private_ipv4_address": ip} for subnet, ip in zip(public, private_ips)],
            internal=True, tunnel_port=args.tunnel_port, probe_port=args.probe_port,
        )
        self.nlb = self.public_lb.load_balancer
        target_groups = self.public_lb.target_groups + self.private_lb.target_groups
        self.ingress: GwlbIngress | None = None
        if args.ingress_cidrs:
            self.ingress = gwlb_ingress(self, name, args, "edge", vpc_id, public, args.health_port)
            target_groups.append(self.ingress.target_group)

        self.fleet = fleet(
            self, name, args, "edge", image_id=args.image_id, instance_type=args.instance_type, agent_config_json=args.agent_config_json,
            security_group_id=self.security_group.id, public_ip=True, subnet_ids=public, instances=args.instances,
            target_group_arns=[tg.arn for tg in target_groups], tls=args.tls, depends_on=[self.public_lb.load_balancer, self.private_lb.load_balancer],
        )
        self.role, self.asg = self.fleet.role, self.fleet.asg

        self.tgw_attachment: aws.ec2transitgateway.VpcAttachment | None = None
        if args.transit_gateway_id is not None:
            self.tgw_attachment = aws.ec2transitgateway.VpcAttachment(
                f"{name}-tgw-attach", transit_gateway_id=args.transit_gateway_id, vpc_id=vpc_id, subnet_ids=attach,
                transit_gateway_default_route_table_association=False, transit_gateway_default_route_table_propagation=False,
                appliance_mode_support="enable" if args.ingress_cidrs else "disable",
                tags=args.tags("edge", f"{name}-tgw-attach"), opts=child(self),
            )
            aws.ec2transitgateway.RouteTableAssociation(
                f"{name}-tgw-assoc", transit_gateway_attachment_id=self.tgw_attachment.id,
                transit_gateway_route_table_id=args.transit_gateway_route_table_id, opts=child(self.tgw_attachment),
            )
            aws.ec2transitgateway.RouteTablePropagation(
                f"{name}-tgw-prop", transit_gateway_attachment_id=self.tgw_attachment.id,
                transit_gateway_route_table_id=args.transit_gateway_route_table_id, opts=child(self.tgw_attachment),
            )
            # Connector subnets too: the NLBs keep the connectors' addresses, so their replies must go back over the
            # TGW, not out of the internet gateway. Each route waits for the attachment (AWS refuses a route to a
            # TGW the VPC is not attached to yet; `parent` orders nothing).
            for table_index, table in enumerate(route_tables):
                for cidr in [*args.native_cidrs, *args.remote_edge_cidrs, *args.connector_cidrs]:
                    aws.ec2.Route(
                        f"{name}-rt-{table_index}-{cidr_slug(cidr)}", route_table_id=table, destination_cidr_block=cidr,
                        transit_gateway_id=args.transit_gateway_id, opts=child(self.tgw_attachment, depends_on=[self.tgw_attachment]),
                    )
            if self.ingress is not None:
                self._native_ingress(name, args, self.ingress, attach_tables)

        self.vpc_id = pulumi.Output.from_input(vpc_id)
        self.public_subnet_ids = pulumi.Output.all(*public)
        self.public_ips = pulumi.Output.all(*[eip.public_ip for eip in self.eips])
        self.tgw_attachment_id = self.tgw_attachment.id if self.tgw_attachment else pulumi.Output.from_input("")
        self.edge_details = pulumi.Output.all(
            vpc_id=self.vpc_id, public_ips=self.public_ips, private_ips=private_ips, nlb_dns_name=self.nlb.dns_name,
            tgw_attachment_id=self.tgw_attachment_id, security_group_id=self.security_group.id,
        ).apply(lambda d: {**d, "tunnel_port": args.tunnel_port, "probe_port": args.probe_port})
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "security_group_id": self.security_group.id,
                "public_ips": self.public_ips,
                "private_ips": private_ips,
                "nlb_dns_name": self.nlb.dns_name,
                "asg_name": self.asg.name,
                "role_arn": self.role.arn,
                "tgw_attachment_id": self.tgw_attachment_id,
                "edge_details": self.edge_details,
            }
        )

    def _native_ingress(self, name: str, args: EdgeArgs, ingress: GwlbIngress, attach_tables: list[pulumi.Input[str]]) -> None:
        """Native networks' traffic for `ingress_cidrs`: TGW -> edge attachment -> zone's GWLB endpoint -> edge VMs."""
        assert self.tgw_attachment is not None
        for cidr in args.ingress_cidrs:
            aws.ec2transitgateway.Route(
                f"{name}-tgw-route-{cidr_slug(cidr)}", destination_cidr_block=cidr, transit_gateway_attachment_id=self.tgw_attachment.id,
                transit_gateway_route_table_id=args.transit_gateway_route_table_id, opts=child(self.tgw_attachment),
            )
            for index, (table, endpoint) in enumerate(zip(attach_tables, ingress.endpoints)):
                aws.ec2.Route(
                    f"{name}-attach-rt-{index}-{cidr_slug(cidr)}", route_table_id=table, destination_cidr_block=cidr,
                    vpc_endpoint_id=endpoint.id, opts=child(endpoint),
                )
