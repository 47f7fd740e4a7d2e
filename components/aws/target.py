"""The AWS target's pure hooks for the registry (components.targets): no Pulumi, no cloud SDK.

The section is `planning.aws_section`; these read it: the problems found
before any resource exists, the security groups as an enforcement point for
`transit check`, and the tables `transit plan` prints. The builder
(`components.aws.build.build`) is named by the registry and loaded only when a
stack builds AWS.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.aws.network_quotas import network_quota_problems
from components.aws.options import AwsOptions
from components.aws.parameter_tier import tier_problems
from components.aws.planning import AwsLayout, AwsPlanSection
from components.aws.quotas import quota_problems
from components.aws.subnets import ROLES
from components.fabric_ca import HOW
from components.plan_models import Plan
from components.segmentation.aws_security_groups import AWS_SECURITY_GROUPS, SecurityPlan
from components.segmentation.protocol import Point, point
from components.spec import FabricSpec


def problems(spec: FabricSpec, plan: Plan, section: AwsPlanSection, options: AwsOptions | None, secrets: Mapping[str, Any]) -> list[str]:
    """Everything the AWS build needs beyond the spec, checked before any resource exists."""
    options = options or AwsOptions()
    found = plan_problems(section, options)
    if section.layout is None:
        return found
    return found + layout_problems(section.layout, secrets, options)


def plan_problems(section: AwsPlanSection, options: AwsOptions) -> list[str]:
    """What AWS would refuse in the spec itself (circuits, layout, quotas), found by `transit validate` and `plan` too."""
    found = list(section.problems)
    if section.layout is not None:
        found += quota_problems(section.layout.security, options.quotas)
        found += network_quota_problems(
            section.layout, options.quotas, options.egress, options.creates_internet_gateway, options.interface_endpoints,
        )
    return found


def layout_problems(layout: AwsLayout, secrets: Mapping[str, Any], options: AwsOptions) -> list[str]:
    """The layout's needs: the image, the fabric CA, MD5 secrets, hosted dxcon ids, one edge per region, AWS homes."""
    out = []
    if layout.edges or any(n.attach == "connector" for n in layout.networks):
        if options.image_id is None:
            out.append("aws.image_id is required: AWS edges and connectors boot the Packer image")
        if options.fabric_ca is None:
            out.append(f"aws.fabric_ca is required: AWS edges and connectors get certificates from the fabric CA; {HOW}")
        else:
            out += options.fabric_ca.problems() + tier_problems(options.fabric_ca.cert_pem)
    for region, arn in options.parameter_kms_key_ids.items():
        if not (arn.startswith(f"arn:aws:kms:{region}:") and ":key/" in arn):
            out.append(f"aws.parameter_kms_key_ids[{region}] {arn!r}: give the ARN of a key in {region} "
                       f"(arn:aws:kms:{region}:<account>:key/<id>); the node roles' kms:Decrypt statement names it")
    for c in layout.circuits:
        if c.md5_secret not in secrets:
            out.append(f"circuit {c.name}: no secret for md5 key name {c.md5_secret!r} in secrets")
        if c.connection == "hosted" and c.name not in options.hosted_connection_ids:
            out.append(f"circuit {c.name}: a hosted connection needs its dxcon id in aws.hosted_connection_ids")
    named: dict[str, list[str]] = {}
    for circuit, dxcon in options.hosted_connection_ids.items():
        if isinstance(dxcon, str):
            named.setdefault(dxcon, []).append(circuit)
    for dxcon, circuits in named.items():
        if len(circuits) > 1:
            out.append(
                f"aws.hosted_connection_ids: circuits {', '.join(circuits)} name one hosted connection {dxcon}, which carries "
                "one virtual interface; ask the partner for a hosted connection per circuit"
            )
    aws_edges = {e.name for e in layout.edges}
    regions = [e.region for e in layout.edges]
    for region in sorted({r for r in regions if regions.count(r) > 1}):
        out.append(f"region {region} has more than one AWS edge; they would share one TGW route table (one edge per region)")
    for n in layout.networks:
        if n.attach == "connector" and n.edge not in aws_edges:
            out.append(f"network {n.name}: its connector is homed at {n.edge}, which is not an AWS edge; set `edge:` to an AWS edge")
    names = {n.name for n in layout.networks}
    for unknown in sorted(set(options.existing_networks) - names):
        out.append(f"aws.existing_networks names {unknown!r}, which is not an AWS network of the spec")
    for n in layout.networks:
        existing = options.existing_networks.get(n.name)
        if n.attach == "connector" and existing is not None and (existing.fabric_subnet_ids or existing.fabric_route_table_ids):
            out.append(
                f"aws.existing_networks.{n.name}.fabric_subnet_ids: a connector creates its own subnets and route tables from "
                f"the plan's addresses ({', '.join(n.fabric_subnets)} and the GWLB, attachment and egress /28s); remove "
                "fabricSubnetIds and fabricRouteTableIds and keep those ranges free in the VPC"
            )
    return out


def evaluator(section: AwsPlanSection) -> Point:
    """AWS security groups as the section lists them (what the components build), read back and judged as AWS would."""
    return point(AWS_SECURITY_GROUPS, SecurityPlan.from_rows(section))


def tables(section: AwsPlanSection) -> list[tuple[str, list[str], list[list[str]]]]:
    """AWS routes, the connector subnets, then security rules with both counts, then the compiler's notes."""
    routes = [[r.network, r.destination, r.target] for r in section.routes]
    rules = [
        [r.security_group, r.direction, r.protocol, r.ports, r.peer, ", ".join(r.policy_rules)] for r in section.rules
    ]
    title = (
        f"aws security rules: {section.rules_emitted} emitted, {section.rules_cartesian} Cartesian "
        f"({len(section.security_groups)} groups, {len(section.prefix_lists)} prefix lists)"
    )
    out = [("aws routes", ["network", "destination", "target"], routes)]
    subnets = [
        [n.name, z.zone, role, getattr(z, role)]
        for n in (section.layout.networks if section.layout else []) for z in n.connector_subnets for role in ROLES
    ]
    if subnets:
        out.append(("aws connector subnets (per zone; docs/aws.md)", ["network", "zone", "subnet", "cidr"], subnets))
    out.append((title, ["security group", "direction", "protocol", "ports", "peer", "policy rules"], rules))
    if section.notes:
        out.append(("aws notes", ["note"], [[n] for n in section.notes]))
    return out
