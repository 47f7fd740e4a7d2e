"""Cloud firewall resources in one shape, so a CrossGuard rule reads every provider the same way.

A preview hands the pack raw resources: AWS security groups and their rule
resources, Azure NSGs and security rules, GCP firewalls, each with its own
field names and conventions (`-1` and `*` and `all` for every protocol, port
pairs, port strings, singular and plural prefixes). One normaliser per
provider turns a resource into `CloudRule`s; the rules in `checks.rules`
then ask one question of each (is it an inbound allow, from where, for which
protocol and ports) instead of walking a chain of resource types. The
lookup table `NORMALISERS` says which resource types each provider has.
Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from components.checks.violation import Resource
from components.segmentation.intervals import ALL_PORTS, Interval
from components.segmentation.ports import port_range

ALL = "all"
EVERY_PORT: tuple[Interval, ...] = (ALL_PORTS,)
OPEN_SOURCES = frozenset({"0.0.0.0/0", "::/0", "*", "Internet", "any", "Any"})
"""How the clouds write "anywhere": CIDRs, Azure's `*` and `Internet` tag, and the spec's `any`."""
_PROTOCOLS = {"-1": ALL, "*": ALL, ALL: ALL, "6": "tcp", "17": "udp", "1": "icmp"}


@dataclass(frozen=True)
class CloudRule:
    """One firewall rule of any cloud, as the policy rules read it.

    `protocol` is `all`, tcp, udp, icmp or the cloud's own word for another;
    `ports` are the destination ports it covers (`EVERY_PORT` for all of
    them, empty for none); `to_everything` is False when the rule only
    guards some of its resource's workloads (GCP target tags, an Azure
    destination prefix). `source_path` and `protocol_path` name the property
    a violation points at, inside the resource.
    """

    direction: Literal["ingress", "egress"]
    allow: bool
    protocol: str
    ports: tuple[Interval, ...]
    sources: tuple[str, ...]
    to_everything: bool
    source_path: str
    protocol_path: str

    @property
    def from_anywhere(self) -> bool:
        return any(source in OPEN_SOURCES for source in self.sources)

    @property
    def every_port(self) -> bool:
        return any(lo <= 0 and hi >= 65535 for lo, hi in self.ports)

    def opens(self, port: int) -> bool:
        """Does this rule cover tcp or udp traffic to `port`?"""
        return self.protocol in (ALL, "tcp", "udp") and any(lo <= port <= hi for lo, hi in self.ports)


def _protocol(value: Any) -> str:
    text = str(value).lower()
    return _PROTOCOLS.get(text, text)


def _texts(*values: Any) -> tuple[str, ...]:
    """Every prefix a rule lists, from singular and plural fields alike."""
    out: list[str] = []
    for value in values:
        if isinstance(value, (list, tuple)):
            out.extend(str(v) for v in value if v)
        elif value:
            out.append(str(value))
    return tuple(out)


def _port_items(items: Iterable[Any]) -> tuple[Interval, ...]:
    return tuple(port_range(item) for item in items)


# --- AWS ---------------------------------------------------------------------------------

def _aws_rule(rule: dict[str, Any], direction: str, protocol_key: str, sources: tuple[str, ...],
              source_path: str, protocol_path: str) -> CloudRule:
    protocol = _protocol(rule.get(protocol_key))
    low, high = rule.get("fromPort"), rule.get("toPort")
    ports = EVERY_PORT if protocol == ALL else ((int(low or 0), int(high if high is not None else 65535)),)
    return CloudRule(direction, True, protocol, ports, sources, True, source_path, protocol_path)  # type: ignore[arg-type]


def aws_rules(resource: Resource) -> list[CloudRule]:
    """Security groups (inline ingress and egress), security group rules, and the VPC ingress/egress rule resources.

    AWS rules only allow, and apply to every workload holding the group.
    """
    props = resource.props
    if resource.type == "aws:ec2/securityGroup":
        return [
            _aws_rule(rule, direction, "protocol", _texts(rule.get("cidrBlocks"), rule.get("ipv6CidrBlocks")), path, path)
            for direction in ("ingress", "egress")
            for i, rule in enumerate(props.get(direction) or [])
            for path in [f"{direction}[{i}]"]
        ]
    if resource.type == "aws:ec2/securityGroupRule":
        direction = "ingress" if props.get("type") == "ingress" else "egress"
        return [_aws_rule(props, direction, "protocol", _texts(props.get("cidrBlocks"), props.get("ipv6CidrBlocks")), "cidrBlocks", "protocol")]
    direction = "ingress" if resource.type == "aws:vpc/securityGroupIngressRule" else "egress"
    return [_aws_rule(props, direction, "ipProtocol", _texts(props.get("cidrIpv4"), props.get("cidrIpv6")), "cidrIpv4", "ipProtocol")]


# --- Azure -------------------------------------------------------------------------------

def _azure_rule(rule: dict[str, Any], path: str, protocol_path: str) -> CloudRule:
    destinations = _texts(rule.get("destinationAddressPrefixes"), rule.get("destinationAddressPrefix"))
    return CloudRule(
        direction="ingress" if rule.get("direction", "Inbound") == "Inbound" else "egress",
        allow=rule.get("access") == "Allow",
        protocol=_protocol(rule.get("protocol", "*")),
        ports=_port_items(_texts(rule.get("destinationPortRanges"), rule.get("destinationPortRange"))),
        sources=_texts(rule.get("sourceAddressPrefixes"), rule.get("sourceAddressPrefix")),
        to_everything=any(d in OPEN_SOURCES for d in destinations),
        source_path=path,
        protocol_path=protocol_path,
    )


def azure_rules(resource: Resource) -> list[CloudRule]:
    """An NSG's inline security rules, or one security rule resource (Azure's defaults are not resources)."""
    if resource.type == "azure-native:network:SecurityRule":
        return [_azure_rule(resource.props, "(rule)", "protocol")]
    return [_azure_rule(rule, f"securityRules[{i}]", f"securityRules[{i}]") for i, rule in enumerate(resource.props.get("securityRules") or [])]


# --- GCP ---------------------------------------------------------------------------------

def gcp_rules(resource: Resource) -> list[CloudRule]:
    """A VPC firewall: one rule per `allows` and `denies` entry, sharing its direction, ranges and targets."""
    props = resource.props
    direction = "ingress" if props.get("direction", "INGRESS") == "INGRESS" else "egress"
    sources = _texts(props.get("sourceRanges"))
    everything = not props.get("targetTags") and not props.get("targetServiceAccounts")
    return [
        CloudRule(direction, allow, _protocol(entry.get("protocol")), _port_items(entry.get("ports") or ["*"]),  # type: ignore[arg-type]
                  sources, everything, path, path)
        for key, allow in (("allows", True), ("denies", False))
        for i, entry in enumerate(props.get(key) or [])
        for path in [f"{key}[{i}]"]
    ]


NORMALISERS: dict[str, Callable[[Resource], list[CloudRule]]] = {
    "aws:ec2/securityGroup": aws_rules,
    "aws:ec2/securityGroupRule": aws_rules,
    "aws:vpc/securityGroupIngressRule": aws_rules,
    "aws:vpc/securityGroupEgressRule": aws_rules,
    "azure-native:network:NetworkSecurityGroup": azure_rules,
    "azure-native:network:SecurityRule": azure_rules,
    "gcp:compute/firewall": gcp_rules,
}
"""Resource type -> its provider's normaliser; every other resource has no firewall rules."""


def cloud_rules(resource: Resource) -> list[CloudRule]:
    """The firewall rules a resource holds, in one shape (none for a resource that is not a firewall)."""
    normalise = NORMALISERS.get(resource.type)
    return normalise(resource) if normalise else []
