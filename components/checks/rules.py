"""The fabric's policy rules as pure functions, one per rule.

Each rule reads the spec and its plan (what `transit check` sees before any
deploy), the resources of a preview (what the CrossGuard pack sees) and/or an
agent's config (the filter the data plane will enforce), and returns
`Violation`s naming the rule, the field path and what must hold.
The registry at the bottom gives each rule its kebab-case name, a description
starting "Requires" or "Prohibits", and its options with their defaults;
`components.checks.config` sets how strictly each is enforced per environment.
Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, collapse_addresses
from typing import Any

from components.checks.cloud_rules import ALL, cloud_rules
from components.checks.points import build_points
from components.checks.reachability import prove
from components.checks.violation import Resource, Violation
from components.plan import TUNNEL_PORT
from components.plan_models import Plan
from components.segmentation.ports import covers_port
from components.segmentation.resolve import ANY, ResolvedRule, endpoint_cidrs, resolve_rules
from components.spec import FabricSpec
from dataplane.config import AgentConfig
from dataplane.filter_model import FilterRule

Options = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What spec rules read: the spec, its plan, and the stack's config when known."""

    spec: FabricSpec
    plan: Plan
    stack_config: dict[str, Any] | None = None


SpecFn = Callable[[Context, Options], list[Violation]]
AgentFn = Callable[[AgentConfig, str, Options], list[Violation]]
ResourceFn = Callable[[Resource, Options], list[Violation]]
StackFn = Callable[[list[Resource], Options], list[Violation]]


@dataclass(frozen=True)
class RuleDef:
    """A rule: its name, description, option defaults and the checks that implement it."""

    name: str
    description: str
    options: Options = field(default_factory=dict)
    spec: SpecFn | None = None
    resource: ResourceFn | None = None
    stack: StackFn | None = None
    agent: AgentFn | None = None


# --- no-open-admin-ports ---------------------------------------------------------------

def _is_open(nets: tuple[IPv4Network, ...], spec_any: list[IPv4Network], name: str) -> bool:
    return name == ANY or any(net.prefixlen == 0 for net in nets) or (bool(spec_any) and list(collapse_addresses(nets)) == spec_any)


def admin_ports_spec(ctx: Context, options: Options) -> list[Violation]:
    """A permit from `any` (or 0.0.0.0/0) that reaches an administrative port, unless an earlier deny shadows it."""
    admin = list(options["ports"])
    everything = endpoint_cidrs(ctx.spec, ANY)
    rules = resolve_rules(ctx.spec)
    out: list[Violation] = []
    for rule in rules:
        if rule.action != "permit" or rule.proto == "icmp" or not _is_open(rule.src, everything, rule.src_name):
            continue
        open_ports = [p for p in admin if covers_port(rule.ports, p) and not _shadowed(rules[: rule.index], rule, p)]
        if open_ports:
            out.append(Violation("no-open-admin-ports", f"policy.rules[{rule.index}]",
                                 f"rule '{rule.name}' permits {rule.src_name} to administrative port(s) {_list(open_ports)}; "
                                 "administrative ports must only be reachable from named networks or groups"))
    return out


def _shadowed(earlier: list[ResolvedRule], rule: ResolvedRule, port: int) -> bool:
    """True when an earlier deny covers every flow of `rule` on `port`."""
    for deny in earlier:
        if deny.action != "deny" or deny.proto not in ("any", rule.proto) or not covers_port(deny.ports, port):
            continue
        src_ok = all(any(s.subnet_of(d) for d in deny.src) for s in rule.src)
        dst_ok = all(any(s.subnet_of(d) for d in deny.dst) for s in rule.dst)
        if src_ok and dst_ok:
            return True
    return False


def _list(ports: list[int]) -> str:
    return ", ".join(str(p) for p in ports)


def admin_ports_resource(resource: Resource, options: Options) -> list[Violation]:
    """Security groups, NSG rules and firewall rules open to the world on administrative ports."""
    admin = list(options["ports"])
    found = [(rule.source_path, [p for p in admin if rule.opens(p)])
             for rule in cloud_rules(resource) if rule.direction == "ingress" and rule.allow and rule.from_anywhere]
    return [
        Violation("no-open-admin-ports", f"{resource.name}.{path}",
                  f"{resource.type} opens administrative port(s) {_list(ports)} to the internet; "
                  "administrative ports must only be reachable from named private ranges")
        for path, ports in found if ports
    ]


# --- no-any-to-any-permit ----------------------------------------------------------------

def any_to_any_spec(ctx: Context, options: Options) -> list[Violation]:
    """A permit whose source and destination are both everything."""
    everything = endpoint_cidrs(ctx.spec, ANY)
    return [
        Violation("no-any-to-any-permit", f"policy.rules[{rule.index}]",
                  f"rule '{rule.name}' permits {rule.proto} from {rule.src_name} to {rule.dst_name}; "
                  "a permit must name a network or group on at least one side (zero trust)")
        for rule in resolve_rules(ctx.spec)
        if rule.action == "permit" and _is_open(rule.src, everything, rule.src_name) and _is_open(rule.dst, everything, rule.dst_name)
    ]


def any_to_any_resource(resource: Resource, options: Options) -> list[Violation]:
    """A cloud rule that allows every protocol from anywhere to everything it guards."""
    return [Violation("no-any-to-any-permit", f"{resource.name}.{rule.protocol_path}",
                      f"{resource.type} allows every protocol from anywhere; allow named sources and protocols only")
            for rule in cloud_rules(resource)
            if rule.direction == "ingress" and rule.allow and rule.protocol == ALL and rule.every_port
            and rule.from_anywhere and rule.to_everything]


# --- no-overlapping-cidrs ----------------------------------------------------------------

def overlapping_cidrs_spec(ctx: Context, options: Options) -> list[Violation]:
    """Networks, edges, circuit peering subnets and underlay pools must not share addresses."""
    spec = ctx.spec
    owned: list[tuple[str, IPv4Network]] = [(f"edges[{i}].cidr", e.cidr) for i, e in enumerate(spec.edges)]
    owned += [(f"networks[{i}].cidrs[{j}]", c) for i, n in enumerate(spec.networks) for j, c in enumerate(n.cidrs)]
    owned += [(f"circuits[{i}].bgp.peering[{j}]", c) for i, ci in enumerate(spec.circuits) for j, c in enumerate(ci.bgp.peering)]
    owned += [("underlay.backbone_cidr", spec.underlay.backbone_cidr), ("underlay.internet_cidr", spec.underlay.internet_cidr)]
    out = []
    for i, (path_a, a) in enumerate(owned):
        for path_b, b in owned[i + 1:]:
            if a.overlaps(b):
                out.append(Violation("no-overlapping-cidrs", path_b,
                                     f"{b} overlaps {a} at {path_a}; every network, edge, peering subnet and underlay pool needs its own addresses"))
    return out


_CIDR_PROPS: dict[str, tuple[str, ...]] = {
    "aws:ec2/vpc": ("cidrBlock",),
    "azure-native:network:VirtualNetwork": ("addressSpace", "addressPrefixes"),
    "gcp:compute/subnetwork": ("ipCidrRange",),
}


def overlapping_cidrs_stack(resources: list[Resource], options: Options) -> list[Violation]:
    """VPCs, VNets and subnetworks of one stack must not share addresses (routes would be ambiguous)."""
    owned: list[tuple[str, IPv4Network]] = []
    for r in resources:
        if r.type not in _CIDR_PROPS:
            continue
        value: Any = r.props
        for part in _CIDR_PROPS[r.type]:
            value = value.get(part) if isinstance(value, dict) else None
        for cidr in value if isinstance(value, list) else [value] if isinstance(value, str) else []:
            owned.append((f"{r.name}.{'.'.join(_CIDR_PROPS[r.type])}", IPv4Network(cidr, strict=False)))
    return [
        Violation("no-overlapping-cidrs", path_b, f"{b} overlaps {a} of {path_a.split('.')[0]}; every network needs its own addresses")
        for i, (path_a, a) in enumerate(owned) for path_b, b in owned[i + 1:] if a.overlaps(b)
    ]


# --- edges-multi-az --------------------------------------------------------------------

def multi_az_spec(ctx: Context, options: Options) -> list[Violation]:
    """Each edge must spread over `min_zones` zones with at least one VM per zone."""
    need = int(options["min_zones"])
    out = []
    for i, (edge, planned) in enumerate(zip(ctx.spec.edges, ctx.plan.edges)):
        zones = len(set(planned.zones))
        if zones < need:
            out.append(Violation("edges-multi-az", f"edges[{i}].zones",
                                 f"edge '{edge.name}' spans {zones} availability zone(s); it must span at least {need}"))
        elif edge.instances < zones:
            out.append(Violation("edges-multi-az", f"edges[{i}].instances",
                                 f"edge '{edge.name}' has {edge.instances} VM(s) for {zones} zones; it needs one VM per zone"))
    return out


_ZONE_PROPS: dict[str, tuple[str, ...]] = {
    "aws:autoscaling/group": ("vpcZoneIdentifiers", "availabilityZones"),
    "azure-native:compute:VirtualMachineScaleSet": ("zones",),
}
"""Where a VM group lists its zones (or one subnet per zone), first property first; violations point at the first."""


def multi_az_resource(resource: Resource, options: Options) -> list[Violation]:
    """An autoscaling group or scale set pinned to fewer than `min_zones` zones."""
    need = int(options["min_zones"])
    props = _ZONE_PROPS.get(resource.type)
    if props is None:
        return []
    zones = next((value for prop in props if (value := resource.props.get(prop))), [])
    path = props[0]
    if len(zones) >= need:
        return []
    return [Violation("edges-multi-az", f"{resource.name}.{path}",
                      f"{resource.type} spans {len(zones)} zone(s)/subnet(s); it must span at least {need} availability zones")]


# --- circuit-bgp-auth ------------------------------------------------------------------

def bgp_auth_spec(ctx: Context, options: Options) -> list[Violation]:
    """Every BGP session names an MD5 key, and the stack holds that key as a secret."""
    sessions = [(f"circuits[{i}].bgp.md5_secret", c.bgp.md5_secret) for i, c in enumerate(ctx.spec.circuits)]
    sessions += [(f"networks[{i}].bgp.md5_secret", n.bgp.md5_secret) for i, n in enumerate(ctx.spec.networks) if n.bgp]
    out = []
    for path, key in sessions:
        if not key:
            out.append(Violation("circuit-bgp-auth", path, "every BGP session must be authenticated; name the secret config key of its MD5 key"))
            continue
        if ctx.stack_config is None:
            continue
        full = key if ":" in key else f"{options['config_namespace']}:{key}"
        value = ctx.stack_config.get(full)
        if value is None:
            out.append(Violation("circuit-bgp-auth", path, f"the stack has no config key {full}; set it with `pulumi config set --secret {full} ...`"))
        elif not (isinstance(value, dict) and "secure" in value):
            out.append(Violation("circuit-bgp-auth", path, f"{full} is stored in plain text; the MD5 key must be a Pulumi secret (`pulumi config set --secret`)"))
    return out


_VIF_TYPES = (
    "aws:directconnect/privateVirtualInterface",
    "aws:directconnect/transitVirtualInterface",
    "aws:directconnect/hostedPrivateVirtualInterface",
    "aws:directconnect/hostedTransitVirtualInterface",
)


def bgp_auth_resource(resource: Resource, options: Options) -> list[Violation]:
    """Virtual interfaces, router peers and ExpressRoute peerings without a BGP key."""
    key_prop = {**{t: "bgpAuthKey" for t in _VIF_TYPES}, "gcp:compute/routerPeer": "md5AuthenticationKey",
                "azure-native:network:ExpressRouteCircuitPeering": "sharedKey"}.get(resource.type)
    if key_prop is None or resource.props.get(key_prop):
        return []
    return [Violation("circuit-bgp-auth", f"{resource.name}.{key_prop}",
                      f"{resource.type} has no BGP authentication key; set {key_prop} from a Pulumi secret")]


# --- circuit-redundancy ----------------------------------------------------------------

def redundancy_spec(ctx: Context, options: Options) -> list[Violation]:
    """Each circuit-attached network needs two circuits (DX, Interconnect) or both sessions (ExpressRoute)."""
    out = []
    reach: dict[tuple[str, str], list[int]] = {}
    for i, circuit in enumerate(ctx.spec.circuits):
        if circuit.provider == "azure-expressroute":
            if len(ctx.plan.circuits[i].sessions) < 2:
                out.append(Violation("circuit-redundancy", f"circuits[{i}].bgp.peering",
                                     f"ExpressRoute circuit '{circuit.name}' must run both its primary and secondary links"))
            continue
        for network in circuit.attaches:
            reach.setdefault((circuit.provider, network), []).append(i)
    need = int(options["min_circuits"])
    for (provider, network), indexes in reach.items():
        if len(indexes) < need:
            kind = "Direct Connect connections" if provider == "aws-direct-connect" else "interconnect attachments"
            out.append(Violation("circuit-redundancy", f"circuits[{indexes[0]}].attaches",
                                 f"network '{network}' is reached by {len(indexes)} {provider} circuit(s); it needs at least {need} {kind}"))
    return out


def redundancy_stack(resources: list[Resource], options: Options) -> list[Violation]:
    """Count the circuits a preview creates: a lone DX connection or interconnect attachment is a single point of failure."""
    need = int(options["min_circuits"])
    out = []
    for types, kind in ((("aws:directconnect/connection", "aws:directconnect/connectionConfirmation"), "Direct Connect connections"),
                        (("gcp:compute/interconnectAttachment",), "interconnect attachments")):
        found = [r for r in resources if r.type in types]
        if 0 < len(found) < need:
            out.append(Violation("circuit-redundancy", found[0].name, f"the stack has {len(found)} {kind}; it needs at least {need}"))
    for r in resources:
        if r.type == "azure-native:network:ExpressRouteCircuitPeering" and not (r.props.get("primaryPeerAddressPrefix") and r.props.get("secondaryPeerAddressPrefix")):
            out.append(Violation("circuit-redundancy", f"{r.name}.secondaryPeerAddressPrefix",
                                 "an ExpressRoute peering must configure both the primary and the secondary link"))
    return out


# --- encrypted-transit -----------------------------------------------------------------

def encryption_spec(ctx: Context, options: Options) -> list[Violation]:
    """Traffic on circuits must ride the fabric's TLS: a natively attached network on a circuit bypasses it."""
    waived = set(options["plaintext_circuits"])
    networks = {n.name: n for n in ctx.spec.networks}
    out = []
    for i, circuit in enumerate(ctx.spec.circuits):
        if circuit.name in waived:
            continue
        for j, name in enumerate(circuit.attaches):
            network = networks.get(name)
            if network is not None and network.attach != "connector":
                out.append(Violation("encrypted-transit", f"circuits[{i}].attaches[{j}]",
                                     f"network '{name}' is attached natively, so its traffic crosses circuit '{circuit.name}' unencrypted "
                                     "(circuits do not encrypt, seed 003); attach it with a connector or waive the circuit in plaintext_circuits"))
    return out


def encryption_resource(resource: Resource, options: Options) -> list[Violation]:
    """Listeners and VPN tunnels that carry fabric traffic in clear text."""
    props = resource.props
    if resource.type == "aws:lb/listener" and str(props.get("protocol", "")).upper() in ("HTTP", "UDP") and props.get("port") in options["tunnel_ports"]:
        return [Violation("encrypted-transit", f"{resource.name}.protocol",
                          f"listener on tunnel port {props.get('port')} uses {props.get('protocol')}; tunnels must be TLS or TCP passthrough to the mTLS agent")]
    if resource.type.startswith("transit:") and props.get("encryption") in ("none", False):
        return [Violation("encrypted-transit", f"{resource.name}.encryption", f"{resource.type} turns encryption off; connectors and tunnels must encrypt")]
    return []


# --- required-tags ---------------------------------------------------------------------

_TAG_PROP = {"aws": "tags", "azure-native": "tags", "gcp": "labels"}
TAGGABLE = frozenset({
    "aws:ec2/vpc", "aws:ec2/subnet", "aws:ec2/routeTable", "aws:ec2/securityGroup", "aws:ec2/instance",
    "aws:ec2/launchTemplate", "aws:ec2/eip", "aws:ec2/internetGateway", "aws:ec2/natGateway", "aws:ec2/vpnGateway",
    "aws:ec2/vpcEndpoint", "aws:ec2/vpcEndpointService", "aws:ec2/managedPrefixList", "aws:lb/loadBalancer",
    "aws:lb/targetGroup", "aws:ec2transitgateway/transitGateway", "aws:ec2transitgateway/vpcAttachment",
    "aws:ec2transitgateway/routeTable", "aws:directconnect/connection", "aws:directconnect/privateVirtualInterface",
    "aws:directconnect/transitVirtualInterface", "aws:iam/role",
    "azure-native:network:VirtualNetwork", "azure-native:network:NetworkSecurityGroup",
    "azure-native:network:ApplicationSecurityGroup", "azure-native:network:ExpressRouteCircuit",
    "azure-native:network:VirtualNetworkGateway", "azure-native:network:PublicIPAddress", "azure-native:network:LoadBalancer",
    "azure-native:compute:VirtualMachineScaleSet", "azure-native:compute:VirtualMachine",
    "gcp:compute/instance", "gcp:compute/instanceTemplate", "gcp:compute/interconnectAttachment",
})
"""Resource types that carry tags (AWS, Azure) or labels (GCP); associations and rules do not."""


def tags_resource(resource: Resource, options: Options) -> list[Violation]:
    """A taggable cloud resource missing one of the required tag keys."""
    if resource.type not in TAGGABLE:
        return []
    prop = _TAG_PROP[resource.type.split(":")[0]]
    tags = resource.props.get(prop) or {}
    missing = [t for t in options["tags"] if t not in tags]
    if not missing:
        return []
    return [Violation("required-tags", f"{resource.name}.{prop}",
                      f"{resource.type} is missing tag(s) {', '.join(missing)}; every resource must carry {', '.join(options['tags'])}")]


# --- circuit-route-propagation ---------------------------------------------------------

def propagation_spec(ctx: Context, options: Options) -> list[Violation]:
    """Each circuit must land somewhere: it attaches networks whose routes it propagates."""
    return [
        Violation("circuit-route-propagation", f"circuits[{i}].attaches",
                  f"circuit '{c.name}' attaches no network, so no route table learns its routes; list the networks it serves")
        for i, c in enumerate(ctx.plan.circuits) if not c.attaches
    ]


def propagation_stack(resources: list[Resource], options: Options) -> list[Violation]:
    """A Direct Connect gateway association with a VGW needs VGW route propagation into route tables."""
    associations = [r for r in resources if r.type == "aws:directconnect/gatewayAssociation"]
    propagations = [r for r in resources if r.type == "aws:ec2/vpnGatewayRoutePropagation"
                    or (r.type == "aws:ec2/routeTable" and r.props.get("propagatingVgws"))
                    or r.type == "aws:ec2transitgateway/routeTablePropagation"]
    if associations and not propagations:
        return [Violation("circuit-route-propagation", associations[0].name,
                          "a Direct Connect gateway association has no route propagation; enable VGW or TGW route propagation where the circuit lands")]
    return []


# --- allowed-instance-sizes ------------------------------------------------------------

_SIZE_PROPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "aws:ec2/launchTemplate": ("aws", ("instanceType",)),
    "aws:ec2/instance": ("aws", ("instanceType",)),
    "azure-native:compute:VirtualMachineScaleSet": ("azure", ("sku", "name")),
    "azure-native:compute:VirtualMachine": ("azure", ("hardwareProfile", "vmSize")),
    "gcp:compute/instanceTemplate": ("gcp", ("machineType",)),
    "gcp:compute/instance": ("gcp", ("machineType",)),
}


def sizes_resource(resource: Resource, options: Options) -> list[Violation]:
    """Edge and connector VMs must use a size from the allowed list of their cloud."""
    if resource.type not in _SIZE_PROPS:
        return []
    cloud, path = _SIZE_PROPS[resource.type]
    value: Any = resource.props
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    allowed = options["sizes"][cloud]
    if value is None or value in allowed:
        return []
    return [Violation("allowed-instance-sizes", f"{resource.name}.{'.'.join(path)}",
                      f"{value} is not an allowed {cloud} size; use one of {', '.join(allowed)}")]


# --- the same rules on an agent's filter (what the data plane enforces) --------------------

def _known_space(config: AgentConfig) -> list[IPv4Network]:
    """Every address this agent can deliver to or receive from: its view of `any`."""
    return list(collapse_addresses([*config.local_cidrs, *(c for peer in config.peers for c in peer.cidrs)]))


def _covers_all(nets: list[IPv4Network], space: list[IPv4Network]) -> bool:
    return not nets or any(n.prefixlen == 0 for n in nets) or (bool(space) and all(any(s.subnet_of(n) for n in nets) for s in space))


def _agent_shadowed(earlier: list[FilterRule], rule: FilterRule, port: int) -> bool:
    for deny in earlier:
        if deny.action != "deny" or deny.proto not in ("any", rule.proto) or not covers_port(tuple(deny.ports), port):
            continue
        if _covers_all(list(deny.src), list(rule.src)) and _covers_all(list(deny.dst), list(rule.dst)):
            return True
    return False


def admin_ports_agent(config: AgentConfig, where: str, options: Options) -> list[Violation]:
    """A filter rule that permits every source to an administrative port."""
    space, rules, out = _known_space(config), config.filter.rules, []
    for i, rule in enumerate(rules):
        if rule.action != "permit" or rule.proto == "icmp" or not _covers_all(list(rule.src), space):
            continue
        open_ports = [p for p in options["ports"] if covers_port(tuple(rule.ports), p) and not _agent_shadowed(rules[:i], rule, p)]
        if open_ports:
            out.append(Violation("no-open-admin-ports", f"{where}.filter.rules[{i}]",
                                 f"agent {config.name}: rule '{rule.name}' permits every source to administrative port(s) {_list(open_ports)}; "
                                 "administrative ports must only be reachable from named networks or groups"))
    return out


def any_to_any_agent(config: AgentConfig, where: str, options: Options) -> list[Violation]:
    """A filter rule that permits every source to every destination."""
    space = _known_space(config)
    return [
        Violation("no-any-to-any-permit", f"{where}.filter.rules[{i}]",
                  f"agent {config.name}: rule '{rule.name}' permits {rule.proto} from every source to every destination; "
                  "a permit must name a network or group on at least one side (zero trust)")
        for i, rule in enumerate(config.filter.rules)
        if rule.action == "permit" and _covers_all(list(rule.src), space) and _covers_all(list(rule.dst), space)
    ]


def encryption_agent(config: AgentConfig, where: str, options: Options) -> list[Violation]:
    """Every tunnel peer must be authenticated by its certificate identity over mutual TLS."""
    return [
        Violation("encrypted-transit", f"{where}.peers[{i}].identity",
                  f"agent {config.name}: peer {peer.name} has no certificate identity; tunnels must be mutual TLS")
        for i, peer in enumerate(config.peers) if not peer.identity
    ]


# --- policy-tests-hold -------------------------------------------------------------------

REACHABILITY_RULE = "policy-tests-hold"


def policy_tests_spec(ctx: Context, options: Options) -> list[Violation]:
    """Every assertion at every enforcement point, then parity over sampled flows."""
    findings, _ = prove(ctx.spec, build_points(ctx.spec, ctx.plan), int(options["samples"]), int(options["seed"]))
    return [Violation(REACHABILITY_RULE, f.path, f.describe()) for f in findings]


RULES: list[RuleDef] = [
    RuleDef("no-open-admin-ports",
            "Prohibits permitting any source or 0.0.0.0/0 to administrative ports (SSH, RDP, WinRM, Telnet).",
            {"ports": [22, 23, 3389, 5985, 5986]}, spec=admin_ports_spec, resource=admin_ports_resource, agent=admin_ports_agent),
    RuleDef("no-any-to-any-permit", "Prohibits permit rules whose source and destination are both any.",
            spec=any_to_any_spec, resource=any_to_any_resource, agent=any_to_any_agent),
    RuleDef("no-overlapping-cidrs", "Prohibits address space shared by networks, edges, circuit peering subnets and underlay pools.",
            spec=overlapping_cidrs_spec, stack=overlapping_cidrs_stack),
    RuleDef("edges-multi-az", "Requires every edge to span at least two availability zones.",
            {"min_zones": 2}, spec=multi_az_spec, resource=multi_az_resource),
    RuleDef("circuit-bgp-auth", "Requires BGP authentication (an MD5 key held as a Pulumi secret) on every circuit and connector session.",
            {"config_namespace": "transit"}, spec=bgp_auth_spec, resource=bgp_auth_resource),
    RuleDef("circuit-redundancy",
            "Requires redundant circuits: two Direct Connect connections, both ExpressRoute links, two interconnect attachments.",
            {"min_circuits": 2}, spec=redundancy_spec, stack=redundancy_stack),
    RuleDef("encrypted-transit", "Prohibits connectors, tunnels and circuits that carry fabric traffic without encryption.",
            {"plaintext_circuits": [], "tunnel_ports": [TUNNEL_PORT]}, spec=encryption_spec, resource=encryption_resource, agent=encryption_agent),
    RuleDef("required-tags", "Requires the fabric's tags on every taggable cloud resource.",
            {"tags": ["transit:fabric", "transit:environment"]}, resource=tags_resource),
    RuleDef("circuit-route-propagation", "Requires route propagation where a circuit lands.",
            spec=propagation_spec, stack=propagation_stack),
    RuleDef(REACHABILITY_RULE,
            "Requires every policy.tests assertion to hold at every enforcement point, and every point to agree with the intent.",
            {"samples": 500, "seed": 0}, spec=policy_tests_spec),
    RuleDef("allowed-instance-sizes", "Requires edge and connector VMs to use an allowed instance size.",
            {"sizes": {"aws": ["c6in.large", "c6in.xlarge", "c6in.2xlarge", "c6in.4xlarge", "c5n.large", "c5n.xlarge", "c5n.2xlarge"],
                       "azure": ["Standard_D2s_v5", "Standard_D4s_v5", "Standard_D8s_v5", "Standard_F4s_v2", "Standard_F8s_v2"],
                       "gcp": ["n2-standard-2", "n2-standard-4", "n2-standard-8", "c3-standard-4", "c3-standard-8"]}},
            resource=sizes_resource),
]
"""Every rule, in the order reports list them."""

RULES_BY_NAME: dict[str, RuleDef] = {rule.name: rule for rule in RULES}
