"""The AWS target's pure hooks for the registry (components.targets): no Pulumi, no cloud SDK.

The section is `planning.aws_section`; these read it: the problems found
before any resource exists, the security groups as an enforcement point for
`transit check`, and the tables `transit plan` prints. The builder
(`components.aws.build.build`) is named by the registry and loaded only when a
stack builds AWS.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from components.aws.options import AwsOptions
from components.aws.planning import AwsLayout, AwsPlanSection
from components.aws.quotas import quota_problems
from components.plan_models import Plan
from components.spec import FabricSpec

Decision = tuple[str, str]


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
    return found


def layout_problems(layout: AwsLayout, secrets: Mapping[str, Any], options: AwsOptions) -> list[str]:
    """The layout's needs: the image, MD5 secrets, hosted dxcon ids, one edge per region, AWS homes."""
    out = []
    if (layout.edges or any(n.attach == "connector" for n in layout.networks)) and options.image_id is None:
        out.append("aws.image_id is required: AWS edges and connectors boot the Packer image")
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
    return out


def evaluator(section: AwsPlanSection) -> Callable[[str, str, str, int | None], Decision | None]:
    """AWS security groups as the section lists them (what the components build).

    The source's egress and the destination's ingress must both allow; a rule's
    peer is a prefix list, a security group or a CIDR, read from the section.
    """
    groups = {g.name: [IPv4Network(c) for c in g.cidrs] for g in section.security_groups}
    lists = {p.name: [IPv4Network(c) for c in p.cidrs] for p in section.prefix_lists}

    def peer_has(peer: str, address: IPv4Address) -> bool:
        kind, _, key = peer.partition(":")
        nets = lists[key] if kind == "prefix_list" else groups[key] if kind == "security_group" else [IPv4Network(key)]
        return any(address in net for net in nets)

    def group_of(address: IPv4Address) -> str | None:
        return next((name for name, nets in groups.items() if any(address in n for n in nets)), None)

    def port_ok(ports: str, port: int | None) -> bool:
        if not ports:
            return True
        low, _, high = ports.partition("-")
        return port is not None and int(low) <= port <= int(high or low)

    def grant(group: str, direction: str, peer: IPv4Address, proto: str, port: int | None) -> str | None:
        proto = proto if proto in ("tcp", "udp", "icmp") else "other"
        for rule in section.rules:
            if rule.security_group != group or rule.direction != direction or not peer_has(rule.peer, peer):
                continue
            if rule.protocol == "all" or (rule.protocol == proto and (proto not in ("tcp", "udp") or port_ok(rule.ports, port))):
                return f"{group}/{direction}/{'+'.join(rule.policy_rules)}"
        return None

    def decide(src_ip: str, dst_ip: str, proto: str, port: int | None) -> Decision | None:
        src, dst = IPv4Address(src_ip), IPv4Address(dst_ip)
        src_group, dst_group = group_of(src), group_of(dst)
        if src_group is None and dst_group is None:
            return None
        reasons = []
        for group, direction, peer in ((dst_group, "ingress", src), (src_group, "egress", dst)):
            if group is None:
                continue
            reason = grant(group, direction, peer, proto, port)
            if reason is None:
                return "deny", f"{group}/{direction}: no rule allows it"
            reasons.append(reason)
        return "permit", ", ".join(reasons)

    return decide


def tables(section: AwsPlanSection) -> list[tuple[str, list[str], list[list[str]]]]:
    """AWS routes, then security rules with both counts, then the compiler's notes."""
    routes = [[r.network, r.destination, r.target] for r in section.routes]
    rules = [
        [r.security_group, r.direction, r.protocol, r.ports, r.peer, ", ".join(r.policy_rules)] for r in section.rules
    ]
    title = (
        f"aws security rules: {section.rules_emitted} emitted, {section.rules_cartesian} Cartesian "
        f"({len(section.security_groups)} groups, {len(section.prefix_lists)} prefix lists)"
    )
    out = [
        ("aws routes", ["network", "destination", "target"], routes),
        (title, ["security group", "direction", "protocol", "ports", "peer", "policy rules"], rules),
    ]
    if section.notes:
        out.append(("aws notes", ["note"], [[n] for n in section.notes]))
    return out
