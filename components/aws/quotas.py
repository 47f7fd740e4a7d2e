"""AWS quotas the compiled security plan must fit, checked before anything exists. Pure.

AWS refuses, mid-`pulumi up`, a rule that pushes a security group over its
rule quota or a prefix list over the region's prefix-list quota, leaving the
fabric half-built. `transit validate`, `transit plan` and the build check the
same numbers first and name the policy rules that fill the group.
AWS counts a rule that references a managed prefix list as that list's
`max_entries` rules (the components set `max_entries` to the list's length).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from components.segmentation.aws_security_groups import SecurityPlan


@dataclass(frozen=True, kw_only=True)
class AwsQuotas:
    """The account's quotas the plan is checked against; AWS's defaults unless raised (Service Quotas)."""

    security_group_rules: int = 60
    """Inbound rules per security group, and separately outbound rules. Defaults to 60 (AWS default)."""
    prefix_lists_per_region: int = 100
    """Customer-managed prefix lists per region. Defaults to 100 (AWS default)."""
    elastic_ips_per_region: int = 5
    """Elastic IP addresses per region (EC2-VPC Elastic IPs). Defaults to 5 (AWS default)."""
    nat_gateways_per_zone: int = 5
    """NAT gateways per Availability Zone. Defaults to 5 (AWS default)."""
    internet_gateways_per_region: int = 5
    """Internet gateways per region (one per VPC, tied to the VPCs-per-region quota). Defaults to 5 (AWS default)."""
    endpoints_per_vpc: int = 50
    """Interface and Gateway Load Balancer endpoints per VPC (one combined quota). Defaults to 50 (AWS default)."""


def rule_weight(plan: SecurityPlan, peer_kind: str, peer: str) -> int:
    """How many rules AWS counts for one rule resource: a prefix-list peer counts its max_entries."""
    if peer_kind != "prefix_list":
        return 1
    return next(len(p.cidrs) for p in plan.prefix_lists if p.key == peer)


def quota_problems(plan: SecurityPlan, quotas: AwsQuotas) -> list[str]:
    """Every security group and region of `plan` over `quotas`, each naming the policy rules involved and the quota."""
    counts: Counter[tuple[str, str]] = Counter()
    sources: dict[tuple[str, str], list[str]] = defaultdict(list)
    for rule in plan.rules:
        key = (rule.member, rule.direction)
        counts[key] += rule_weight(plan, rule.peer_kind, rule.peer)
        sources[key] += [r for r in rule.rules if r not in sources[key]]
    out = []
    for (member, direction), count in sorted(counts.items()):
        if count > quotas.security_group_rules:
            out.append(
                f"policy.rules[{', '.join(sources[(member, direction)])}]: security group {member} would hold {count} "
                f"{'inbound' if direction == 'ingress' else 'outbound'} rules (each prefix-list reference counts its "
                f"max_entries), over the AWS quota of {quotas.security_group_rules} {direction} rules per security group; "
                "merge or summarise those rules' endpoints, or raise the quota and set aws.quotas.security_group_rules"
            )
    per_region = Counter(p.region for p in plan.prefix_lists)
    for region, count in sorted(per_region.items()):
        if count > quotas.prefix_lists_per_region:
            out.append(
                f"policy.rules: region {region} would need {count} managed prefix lists (one per distinct peer address set), "
                f"over the AWS quota of {quotas.prefix_lists_per_region} per region; use named groups so rules share peers, "
                "or raise the quota and set aws.quotas.prefix_lists_per_region"
            )
    return out
