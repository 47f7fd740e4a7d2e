"""Zero-trust segmentation in one region: security groups, managed prefix lists, rules.

Turns the pure `SecurityPlan` (segmentation.aws_security_groups.compile_security) into
resources: one security group per member (workloads attach the group of the
addresses they hold), one managed prefix list per distinct peer address set,
and one rule resource per compiled rule, whose peer is a prefix list, a
security group of the same VPC or 0.0.0.0/0, never a list of addresses.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child, raise_problems
from components.segmentation.aws_security_groups import SecurityPlan


@dataclass(frozen=True, kw_only=True)
class SegmentationArgs(Common):
    """Inputs of one region's segmentation."""

    region: str
    """Only the members and prefix lists of this region are built."""
    plan: SecurityPlan
    """The compiled policy (segmentation.aws_security_groups.compile_security)."""
    vpc_ids: Mapping[str, pulumi.Input[str]]
    """VPC id of every AWS network of the region, by network name."""

    def problems(self) -> list[str]:
        out = self.check_common()
        missing = sorted({m.network for m in self.plan.members if m.region == self.region} - set(self.vpc_ids))
        if missing:
            out.append(f"vpc_ids has no VPC for networks {missing}")
        return out


class Segmentation(pulumi.ComponentResource):
    """Security groups per member, prefix lists per peer set, rules between them."""

    def __init__(self, name: str, args: SegmentationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raise_problems("Segmentation", name, args.problems())
        super().__init__("transit:aws:Segmentation", name, None, opts)
        members = [m for m in args.plan.members if m.region == args.region]
        keys = {m.key for m in members}
        self.prefix_lists: dict[str, aws.ec2.ManagedPrefixList] = {
            p.key: aws.ec2.ManagedPrefixList(
                f"{name}-pl-{p.key}", name=f"{args.fabric}-{args.environment}-{p.key}", address_family="IPv4",
                max_entries=len(p.cidrs), entries=[{"cidr": c} for c in p.cidrs],
                tags=args.tags("segmentation", f"{name}-pl-{p.key}"), opts=child(self),
            )
            for p in args.plan.prefix_lists
            if p.region == args.region
        }
        self.security_groups: dict[str, aws.ec2.SecurityGroup] = {
            m.key: aws.ec2.SecurityGroup(
                f"{name}-sg-{m.key}", vpc_id=args.vpc_ids[m.network],
                description=f"transit segment {m.key}: attach to workloads in {', '.join(m.cidrs[:4])}{' ...' if len(m.cidrs) > 4 else ''}",
                tags=args.tags("segmentation", f"{name}-sg-{m.key}"), opts=child(self),
            )
            for m in members
        }
        self.rules: list[pulumi.CustomResource] = []
        for rule in args.plan.rules:
            if rule.member not in keys:
                continue
            peer: dict[str, pulumi.Input[str]]
            if rule.peer_kind == "prefix_list":
                peer = {"prefix_list_id": self.prefix_lists[rule.peer].id}
            elif rule.peer_kind == "security_group":
                peer = {"referenced_security_group_id": self.security_groups[rule.peer].id}
            else:
                peer = {"cidr_ipv4": rule.peer}
            ports = {} if rule.protocol == "-1" else {"from_port": rule.from_port, "to_port": rule.to_port}
            label = f"{rule.member}-{rule.direction}-{'all' if rule.protocol == '-1' else rule.protocol}"
            if rule.protocol in ("tcp", "udp"):
                label += f"-{rule.from_port}-{rule.to_port}"
            label += f"-{rule.peer.replace('/', '-').replace('.', '-')}"
            rule_cls = aws.vpc.SecurityGroupIngressRule if rule.direction == "ingress" else aws.vpc.SecurityGroupEgressRule
            self.rules.append(
                rule_cls(
                    f"{name}-rule-{label}", security_group_id=self.security_groups[rule.member].id,
                    ip_protocol=rule.protocol, description=f"policy {', '.join(rule.rules)}"[:255], **ports, **peer,
                    tags=args.tags("segmentation", f"{name}-{label}"), opts=child(self.security_groups[rule.member]),
                )
            )
        self.security_group_ids = pulumi.Output.from_input({key: sg.id for key, sg in self.security_groups.items()})
        self.prefix_list_ids = pulumi.Output.from_input({key: pl.id for key, pl in self.prefix_lists.items()})
        self.register_outputs(
            {
                "security_group_ids": self.security_group_ids,
                "prefix_list_ids": self.prefix_list_ids,
                "rules_emitted": len(self.rules),
            }
        )
