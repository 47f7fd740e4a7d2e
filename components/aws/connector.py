"""How an application VPC joins the fabric through connector VMs (a native TGW attachment is `Attachment`).

Seed 000: connector VMs behind a Gateway Load Balancer (GENEVE,
UDP 6081), an endpoint service with one GWLB endpoint per zone, and in each
zone's workload route table a route per reachable remote CIDR to that zone's
endpoint (zone-local, so a zone failure never blackholes another zone). The
connector subnets reach the edge privately over the TGW when one is given, and
an internal NLB with fixed addresses lets the edge dial the connector back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network
import pulumi
import pulumi_aws as aws

from components.aws.base import HTTPS, Common, SgRuleSpec, child, inline_rules, raise_problems
from components.aws.fleet import fleet
from components.aws.parameters import NodeTlsArgs
from components.aws.gwlb import GENEVE_PORT, gwlb_ingress
from components.aws.naming import cidr_slug
from components.aws.tunnel_lb import TunnelLb, tunnel_lb
from components.plan import METRICS_PORT, PROBE_PORT, TUNNEL_PORT



@dataclass(frozen=True, kw_only=True)
class ConnectorArgs(Common):
    """Inputs of one onboarded application VPC's connector."""

    vpc_id: pulumi.Input[str]
    """The application VPC."""
    network_cidrs: list[str]
    """The application network's CIDRs (what the connector delivers to)."""
    subnet_ids: list[pulumi.Input[str]]
    """One connector subnet per zone (GWLB, endpoints, VMs)."""
    route_table_ids: list[pulumi.Input[str]]
    """Workload route tables that get the routes, one per zone, aligned with `subnet_ids`."""
    destination_cidrs: list[str]
    """Remote CIDRs the policy lets this network reach (routing.reachable_destinations)."""
    connector_cidrs: list[str]
    """The connector subnets' CIDRs (GWLB health checks and GENEVE come from there), one per subnet."""
    image_id: pulumi.Input[str]
    """AMI id of the Packer-built image."""
    agent_config_json: pulumi.Input[str]
    """The AgentConfig JSON (no secrets)."""
    tls: NodeTlsArgs
    """Its identity and the fabric CA: the fleet issues its certificate into the SSM parameters its VMs read at boot."""
    connector_route_table_ids: list[pulumi.Input[str]] = field(default_factory=list)
    """The connector subnets' route tables, which get `edge_cidrs` via the TGW. Defaults to none."""
    instance_type: str = "c6in.large"
    """Connector VM size. Defaults to c6in.large."""
    instances: int = 2
    """Connector VMs. Defaults to 2 (HA)."""
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
    """One free address per connector subnet for the internal NLB edges dial. Defaults to none (edges never dial)."""
    probe_port: int = PROBE_PORT
    """UDP port of the path probes. Defaults to the plan's (components.plan.PROBE_PORT, 8444)."""

    def problems(self) -> list[str]:
        out = self.check_common()
        cidrs = [*self.network_cidrs, *self.destination_cidrs, *self.connector_cidrs, *self.edge_cidrs]
        for cidr in cidrs:
            try:
                IPv4Network(cidr)
            except ValueError as exc:
                out.append(f"{cidr!r}: {exc}")
        if not self.network_cidrs:
            out.append("network_cidrs is empty")
        if not self.subnet_ids:
            out.append("subnet_ids is empty")
        if "0.0.0.0/0" in self.destination_cidrs:
            out.append("destination_cidrs holds 0.0.0.0/0; route only the remote CIDRs the policy reaches")
        if (self.transit_gateway_id is None) != (self.transit_gateway_route_table_id is None):
            out.append("transit_gateway_id and transit_gateway_route_table_id go together")
        if len(self.route_table_ids) != len(self.subnet_ids):
            out.append("a connector needs one workload route table per connector subnet (zone-aligned)")
        if len(self.connector_cidrs) != len(self.subnet_ids):
            out.append("connector_cidrs needs one CIDR per connector subnet")
        if self.endpoint_ips and len(self.endpoint_ips) != len(self.subnet_ids):
            out.append("endpoint_ips needs one address per connector subnet")
        if self.edge_cidrs and self.transit_gateway_id is None:
            out.append("edge_cidrs are reached over the transit gateway; give transit_gateway_id")
        if not 1 <= self.instances <= 16:
            out.append(f"instances {self.instances} must be 1 to 16")
        return out


class Connector(pulumi.ComponentResource):
    """Brings one application VPC's traffic to the fabric through connector VMs behind a GWLB."""

    def __init__(self, name: str, args: ConnectorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raise_problems("Connector", name, args.problems())
        super().__init__("transit:aws:Connector", name, None, opts)
        self.endpoints: list[aws.ec2.VpcEndpoint] = []
        self.tgw_attachment: aws.ec2transitgateway.VpcAttachment | None = None
        outputs: dict[str, pulumi.Input[object]] = {}
        if args.transit_gateway_id is not None:
            self._private_path(name, args)
        self._connector(name, args)
        outputs.update(
            gwlb_arn=self.gwlb.arn, endpoint_service_name=self.endpoint_service.service_name,
            endpoint_ids=pulumi.Output.all(*[e.id for e in self.endpoints]), asg_name=self.asg.name,
            security_group_id=self.security_group.id,
        )
        self.routes: list[aws.ec2.Route] = [
            aws.ec2.Route(
                f"{name}-route-{index}-{cidr_slug(cidr)}", route_table_id=table, destination_cidr_block=cidr,
                vpc_endpoint_id=self.endpoints[index].id, opts=child(self, depends_on=[x for x in [self.tgw_attachment] if x]),
            )
            for index, table in enumerate(args.route_table_ids)
            for cidr in args.destination_cidrs
        ]
        self.tgw_attachment_id = self.tgw_attachment.id if self.tgw_attachment else pulumi.Output.from_input("")
        self.connector_details = pulumi.Output.all(
            vpc_id=args.vpc_id, mode="connector", tgw_attachment_id=self.tgw_attachment_id,
            endpoint_ids=pulumi.Output.all(*[e.id for e in self.endpoints]), destination_cidrs=list(args.destination_cidrs),
        )
        self.register_outputs({**outputs, "tgw_attachment_id": self.tgw_attachment_id, "connector_details": self.connector_details})

    def _private_path(self, name: str, args: ConnectorArgs) -> None:
        """TGW attachment: the connector's private path to its edge."""
        self.tgw_attachment = aws.ec2transitgateway.VpcAttachment(
            f"{name}-tgw-attach", transit_gateway_id=args.transit_gateway_id, vpc_id=args.vpc_id, subnet_ids=args.subnet_ids,
            transit_gateway_default_route_table_association=False, transit_gateway_default_route_table_propagation=False,
            tags=args.tags("connector", f"{name}-tgw-attach"), opts=child(self),
        )
        aws.ec2transitgateway.RouteTableAssociation(
            f"{name}-tgw-assoc", transit_gateway_attachment_id=self.tgw_attachment.id,
            transit_gateway_route_table_id=args.transit_gateway_route_table_id, opts=child(self.tgw_attachment),
        )
        # Only the connector subnets are reachable over the TGW (the private path to the edge). The
        # application CIDRs are not propagated: replies to them must go back through the agents.
        for cidr in args.connector_cidrs:
            aws.ec2transitgateway.Route(
                f"{name}-tgw-route-{cidr_slug(cidr)}", destination_cidr_block=cidr,
                transit_gateway_attachment_id=self.tgw_attachment.id,
                transit_gateway_route_table_id=args.transit_gateway_route_table_id, opts=child(self.tgw_attachment),
            )
        for index, table in enumerate(args.connector_route_table_ids):
            for cidr in args.edge_cidrs:
                aws.ec2.Route(
                    f"{name}-edge-route-{index}-{cidr_slug(cidr)}", route_table_id=table, destination_cidr_block=cidr,
                    transit_gateway_id=args.transit_gateway_id, opts=child(self.tgw_attachment, depends_on=[self.tgw_attachment]),
                )

    def _connector(self, name: str, args: ConnectorArgs) -> None:
        """GWLB, GENEVE target group, VMs, endpoint service and one endpoint per zone."""
        rules: list[SgRuleSpec] = [("ingress", "udp", GENEVE_PORT, c) for c in args.connector_cidrs]
        rules += [("ingress", "tcp", args.health_port, c) for c in args.connector_cidrs]
        rules += [("ingress", "tcp", args.tunnel_port, c) for c in [*args.edge_cidrs, *args.connector_cidrs]]
        rules += [("ingress", "udp", args.probe_port, c) for c in args.edge_cidrs]
        rules += [("egress", "tcp", args.tunnel_port, "0.0.0.0/0"), ("egress", "udp", args.probe_port, "0.0.0.0/0")]
        rules += [("egress", "tcp", HTTPS, "0.0.0.0/0")]  # AWS APIs (SSM) at boot
        rules += [("egress", "-1", None, c) for c in args.network_cidrs]
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id,
            description=f"transit connector {name}: GENEVE and health checks from the GWLB, tunnels out, delivery in the VPC",
            ingress=inline_rules(rules, "ingress"), egress=inline_rules(rules, "egress"),
            tags=args.tags("connector", f"{name}-sg"), opts=child(self),
        )

        ingress = gwlb_ingress(self, name, args, "connector", args.vpc_id, args.subnet_ids, args.health_port)
        self.gwlb, self.target_group, self.endpoint_service = ingress.gwlb, ingress.target_group, ingress.service
        self.endpoints.extend(ingress.endpoints)
        groups = [self.target_group]
        self.tunnel_lb: TunnelLb | None = None
        if args.endpoint_ips:
            self.tunnel_lb = tunnel_lb(
                self, f"{name}-nlb", args, "connector", args.vpc_id,
                [{"subnet_id": s, "private_ipv4_address": ip} for s, ip in zip(args.subnet_ids, args.endpoint_ips)],
                internal=True, tunnel_port=args.tunnel_port, probe_port=args.probe_port,
            )
            groups += self.tunnel_lb.target_groups
        self.fleet = fleet(
            self, name, args, "connector", image_id=args.image_id, instance_type=args.instance_type,
            agent_config_json=args.agent_config_json, security_group_id=self.security_group.id, public_ip=False,
            subnet_ids=args.subnet_ids, instances=args.instances, target_group_arns=[g.arn for g in groups], tls=args.tls,
        )
        self.role, self.asg = self.fleet.role, self.fleet.asg
