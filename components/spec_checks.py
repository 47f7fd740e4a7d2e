"""Cross-field checks of a fabric spec: references, overlaps, BGP, circuits, policy.

Each check is a small function that yields `Problem`s; `check` runs them all,
so every problem is reported at once. The checks also run on a partial spec
(the items that parsed), with `KnownNames` taken from the raw input, so an item
that failed to parse never causes a second, misleading "unknown name" problem.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from components.spec_providers import BANDWIDTHS_MBPS, PEERING_RULES, PROVIDER_CLOUD, format_mbps
from components.spec_types import NAME_RE, Problem, parse_address, parse_network

if TYPE_CHECKING:
    from components.spec import Edge, FabricSpec, Network

REGION_RE: dict[str, re.Pattern[str]] = {
    "aws": re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$"),
    "azure": re.compile(r"^[a-z][a-z0-9]+$"),
    "gcp": re.compile(r"^[a-z]+-[a-z]+\d+$"),
}
REGION_EXAMPLE = {"aws": "us-east-1", "azure": "westeurope", "gcp": "europe-west3"}

CONNECTOR_SUBNET_PREFIX = 28
"""Smallest subnet every cloud accepts for a load balancer (AWS allows /28 at least)."""

EDGE_MAX_PREFIX = 26
"""An edge CIDR is cut in four: up to three zone subnets and a gateway subnet, each at least /28."""


@dataclass
class KnownNames:
    """Names that exist in the input, even if their item failed to parse."""

    edges: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    circuits: set[str] = field(default_factory=set)
    declared: list[tuple[str, str]] = field(default_factory=list)
    """(path, name) of every declared name, in spec order, for the uniqueness check."""

    @classmethod
    def from_spec(cls, spec: FabricSpec) -> KnownNames:
        declared = [(f"{s}[{i}].name", item.name) for s in _SECTIONS for i, item in _each(getattr(spec, s))]
        return cls(
            edges={e.name for _, e in _each(spec.edges)},
            networks={n.name for _, n in _each(spec.networks)},
            groups=set(spec.groups),
            circuits={c.name for _, c in _each(spec.circuits)},
            declared=declared + [(f"groups.{g}", g) for g in spec.groups],
        )

    @classmethod
    def from_raw(cls, data: dict[str, Any]) -> KnownNames:
        declared = []
        for section in _SECTIONS:
            items = data.get(section)
            for i, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    declared.append((f"{section}[{i}].name", item["name"]))
        groups = data.get("groups")
        group_names = [g for g in groups if isinstance(g, str)] if isinstance(groups, dict) else []

        def names(section: str) -> set[str]:
            return {name for path, name in declared if path.startswith(f"{section}[")}

        return cls(
            edges=names("edges"),
            networks=names("networks"),
            groups=set(group_names),
            circuits=names("circuits"),
            declared=declared + [(f"groups.{g}", g) for g in group_names],
        )


_SECTIONS = ("edges", "networks", "circuits")

Check = Callable[["FabricSpec", KnownNames], Iterator[Problem]]
CHECKS: list[Check] = []


def _check(fn: Check) -> Check:
    CHECKS.append(fn)
    return fn


def check(spec: FabricSpec, known: KnownNames) -> list[Problem]:
    """Run every cross-field check and return all problems found."""
    return [problem for fn in CHECKS for problem in fn(spec, known)]


def required_connector_prefix(zones: int) -> int:
    """The connector CIDR size that gives one /28 per zone (rounded up to a power of two)."""
    blocks = 1
    while blocks < zones:
        blocks *= 2
    return CONNECTOR_SUBNET_PREFIX - (blocks.bit_length() - 1)


def home_edge(spec: FabricSpec, network: Network) -> Edge | None:
    """The edge a network's traffic enters the fabric at.

    The named `edge` if set; else the edge of the same cloud and region; for an
    on-prem network without `edge`, the first edge of the spec.
    """
    edges = [e for _, e in _each(spec.edges)]
    if network.edge:
        return next((e for e in edges if e.name == network.edge), None)
    if network.cloud == "onprem":
        return edges[0] if edges else None
    return next((e for e in edges if e.cloud == network.cloud and e.region == network.region), None)


def _each(items: list[Any]) -> Iterator[tuple[int, Any]]:
    """(index, item) for the items that parsed; a partial spec holds None for the others."""
    return ((i, item) for i, item in enumerate(items) if item is not None)


def _all_parsed(spec: FabricSpec, section: str) -> bool:
    """True when every item of a section parsed, so "not found" really means absent."""
    return all(item is not None for item in getattr(spec, section))


# --- names ---------------------------------------------------------------


@_check
def _at_least_one_edge(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    if not spec.edges and not known.edges:
        yield Problem("edges", "needs at least one edge; a fabric without an edge carries nothing")


@_check
def _unique_names(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    """Edges, networks, groups and circuits share one namespace (rules name networks and groups)."""
    seen: dict[str, str] = {}
    for path, name in known.declared:
        if name in seen:
            yield Problem(path, f"name '{name}' is already used by {seen[name]}; names must be unique across the fabric")
        else:
            seen[name] = path
    rules_seen: dict[str, int] = {}
    for i, rule in _each(spec.policy.rules):
        if rule.name in rules_seen:
            yield Problem(f"policy.rules[{i}].name", f"rule name '{rule.name}' is already used by policy.rules[{rules_seen[rule.name]}]")
        else:
            rules_seen[rule.name] = i


# --- addresses -----------------------------------------------------------


def _owned_cidrs(spec: FabricSpec) -> list[tuple[str, ipaddress.IPv4Network]]:
    """Every address range the fabric owns or routes, with the path that declares it."""
    out: list[tuple[str, ipaddress.IPv4Network]] = []
    out += [(f"edges[{i}].cidr", e.cidr) for i, e in _each(spec.edges)]
    for i, n in _each(spec.networks):
        out += [(f"networks[{i}].cidrs[{j}]", c) for j, c in enumerate(n.cidrs)]
    for i, c in _each(spec.circuits):
        out += [(f"circuits[{i}].bgp.peering[{j}]", p) for j, p in enumerate(c.bgp.peering)]
    out.append(("underlay.backbone_cidr", spec.underlay.backbone_cidr))
    out.append(("underlay.internet_cidr", spec.underlay.internet_cidr))
    return out


@_check
def _no_overlaps(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    owned = _owned_cidrs(spec)
    for j, (path_b, net_b) in enumerate(owned):
        for path_a, net_a in owned[:j]:
            if net_a.overlaps(net_b):
                yield Problem(path_b, f"{net_b} overlaps {path_a} ({net_a}); choose a range that overlaps nothing else")


@_check
def _groups(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    """A group lists CIDRs inside onboarded networks, or network names."""
    network_cidrs = [c for _, n in _each(spec.networks) for c in n.cidrs]
    for group, members in spec.groups.items():
        if not members:
            yield Problem(f"groups.{group}", "is empty; list CIDRs or network names")
        listed: list[tuple[int, ipaddress.IPv4Network]] = []
        for j, member in enumerate(members):
            path = f"groups.{group}[{j}]"
            if NAME_RE.match(member):
                if member in known.groups:
                    yield Problem(path, f"'{member}' is a group; groups cannot contain groups, list its members instead")
                elif member not in known.networks:
                    yield Problem(path, f"unknown network '{member}'; name a network from networks or write a CIDR")
            else:
                try:
                    cidr = parse_network(member)
                except ValueError as exc:
                    yield Problem(path, str(exc))
                    continue
                if _all_parsed(spec, "networks") and not any(cidr.subnet_of(c) for c in network_cidrs):
                    yield Problem(
                        path, f"{cidr} is not inside any onboarded network; its traffic never crosses the fabric"
                    )
                for k, other in listed:
                    if cidr.overlaps(other):
                        yield Problem(path, f"{cidr} overlaps groups.{group}[{k}] ({other}); list each address once")
                listed.append((j, cidr))


# --- edges and networks --------------------------------------------------


@_check
def _regions(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    items = [(f"edges[{i}]", e.cloud, e.region) for i, e in _each(spec.edges)]
    items += [(f"networks[{i}]", n.cloud, n.region) for i, n in _each(spec.networks) if n.cloud != "onprem"]
    for path, cloud, region in items:
        if region is not None and not REGION_RE[cloud].match(region):
            yield Problem(f"{path}.region", f"'{region}' is not a {cloud} region name; write it like {REGION_EXAMPLE[cloud]}")


@_check
def _one_edge_per_region(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    seen: dict[tuple[str, str], int] = {}
    for i, e in _each(spec.edges):
        key = (e.cloud, e.region)
        if key in seen:
            yield Problem(f"edges[{i}].region", f"edges[{seen[key]}] is already the {e.cloud} edge in {e.region}; one edge per cloud and region (raise instances instead)")
        else:
            seen[key] = i


@_check
def _edge_size(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    for i, e in _each(spec.edges):
        if e.cidr.prefixlen > EDGE_MAX_PREFIX:
            yield Problem(f"edges[{i}].cidr", f"{e.cidr} is too small; an edge needs /{EDGE_MAX_PREFIX} or larger (one /28 per zone and a gateway subnet)")


@_check
def _network_shape(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    """Cloud networks have a region; on-prem networks have a site, a connector and BGP."""
    for i, n in _each(spec.networks):
        path = f"networks[{i}]"
        if n.cloud == "onprem":
            if n.site is None:
                yield Problem(f"{path}.site", "is required for an onprem network (the data center or branch, like fra)")
            if n.region is not None:
                yield Problem(f"{path}.region", "an onprem network has a site, not a region; remove region")
            if n.attach != "connector":
                yield Problem(f"{path}.attach", "an onprem network can only attach through a connector; set attach: connector")
            elif n.bgp is None:
                yield Problem(f"{path}.bgp", "is required: the connector peers BGP with the data-center router (asn, peer_ip, peer_asn, md5_secret)")
            if n.connector_cidr is not None:
                yield Problem(f"{path}.connector_cidr", "only cloud networks get connector subnets; remove it")
        else:
            if n.region is None:
                yield Problem(f"{path}.region", f"is required for a {n.cloud} network")
            if n.site is not None:
                yield Problem(f"{path}.site", "only onprem networks have a site; remove it")
            if n.bgp is not None:
                yield Problem(f"{path}.bgp", f"the {n.cloud} network's routes come from the cloud, not from BGP; remove bgp")
            if n.attach == "native" and n.connector_cidr is not None:
                yield Problem(f"{path}.connector_cidr", "a native attachment has no connector; remove it or set attach: connector")


@_check
def _network_edge(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    for i, n in _each(spec.networks):
        path = f"networks[{i}]"
        if n.edge is not None:
            if n.edge not in known.edges:
                yield Problem(f"{path}.edge", f"unknown edge '{n.edge}'; name one of edges")
                continue
            edge = next((e for _, e in _each(spec.edges) if e.name == n.edge), None)
            if edge is not None and n.attach == "native" and edge.cloud != n.cloud:
                yield Problem(f"{path}.edge", f"a native attachment needs an edge in {n.cloud}, but '{n.edge}' is in {edge.cloud}")
        elif n.cloud != "onprem" and n.region is not None and _all_parsed(spec, "edges") and home_edge(spec, n) is None:
            yield Problem(
                f"{path}.region",
                f"no {n.cloud} edge in {n.region}; add an edge there or name one with edge: <edge name>",
            )


@_check
def _connector_subnets(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    for i, n in _each(spec.networks):
        if n.cloud == "onprem" or n.attach != "connector":
            continue
        edge = home_edge(spec, n)
        need = required_connector_prefix(edge.zones if edge else 2)
        if n.connector_cidr is not None:
            path = f"networks[{i}].connector_cidr"
            if not any(n.connector_cidr.subnet_of(c) for c in n.cidrs):
                yield Problem(path, f"{n.connector_cidr} is not inside the network's cidrs; pick a range inside one of them")
            if n.connector_cidr.prefixlen > need:
                yield Problem(path, f"{n.connector_cidr} is too small; the connector needs a /{need} (one /{CONNECTOR_SUBNET_PREFIX} per zone)")
        elif n.cidrs[0].prefixlen > need:
            yield Problem(
                f"networks[{i}].cidrs[0]",
                f"{n.cidrs[0]} is too small to carve the connector's /{need} from; set connector_cidr to a free /{need} inside the network",
            )


@_check
def _onprem_bgp(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    for i, n in _each(spec.networks):
        if n.bgp is None or n.cloud != "onprem":
            continue
        path = f"networks[{i}].bgp"
        if n.bgp.asn == n.bgp.peer_asn:
            yield Problem(f"{path}.peer_asn", f"equals asn {n.bgp.asn}; the session is eBGP, give the connector and the router different ASNs")
        if not any(n.bgp.peer_ip in c for c in n.cidrs):
            yield Problem(f"{path}.peer_ip", f"{n.bgp.peer_ip} is outside the network's cidrs; use the router's address inside them")
        local = n.bgp.local_ip or n.bgp.peer_ip + 1
        where = f"{local}" if n.bgp.local_ip else f"the default connector address {local} (peer_ip + 1)"
        if not any(usable(c, local) for c in n.cidrs):
            yield Problem(f"{path}.local_ip", f"{where} is not a usable address of the network's cidrs; set local_ip inside them")
        if local == n.bgp.peer_ip:
            yield Problem(f"{path}.local_ip", "equals peer_ip; the connector needs its own address")


# --- circuits ------------------------------------------------------------


def usable(subnet: ipaddress.IPv4Network, address: ipaddress.IPv4Address) -> bool:
    """True when `address` may be a router address in `subnet` (a /31 has no network or broadcast)."""
    if address not in subnet:
        return False
    if subnet.prefixlen >= 31:
        return True
    return address not in (subnet.network_address, subnet.broadcast_address)


@_check
def _circuit_peering(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    for i, c in _each(spec.circuits):
        rule = PEERING_RULES[c.provider]
        path = f"circuits[{i}].bgp"
        peering = c.bgp.peering
        wrong_size = [p for p in peering if p.prefixlen not in rule.prefixes]
        if len(peering) != rule.count or wrong_size:
            got = ", ".join(str(p) for p in peering)
            yield Problem(f"{path}.peering", f"{c.provider} needs {rule.describe}; got {got}")
        if rule.within is not None:
            within = ipaddress.IPv4Network(rule.within)
            for j, p in enumerate(peering):
                if not p.subnet_of(within):
                    yield Problem(f"{path}.peering[{j}]", f"{p} is outside {within}; {c.provider} peers on link-local addresses")
        for key in ("customer_ips", "peer_ips"):
            ips = getattr(c.bgp, key)
            if ips is None:
                continue
            if len(ips) != len(peering):
                yield Problem(f"{path}.{key}", f"has {len(ips)} addresses for {len(peering)} peering subnets; give one per subnet, in the same order")
                continue
            for j, (ip, subnet) in enumerate(zip(ips, peering)):
                if not usable(subnet, ip):
                    yield Problem(f"{path}.{key}[{j}]", f"{ip} is not a usable address of its peering subnet {subnet}")
        if c.bgp.customer_ips and c.bgp.peer_ips:
            for j, (a, b) in enumerate(zip(c.bgp.customer_ips, c.bgp.peer_ips)):
                if a == b:
                    yield Problem(f"{path}.peer_ips[{j}]", f"{b} is also the customer address; the two ends need different addresses")


@_check
def _circuit_asns(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    for i, c in _each(spec.circuits):
        rule = PEERING_RULES[c.provider]
        path = f"circuits[{i}].bgp"
        if c.bgp.customer_asn == c.bgp.peer_asn:
            yield Problem(f"{path}.peer_asn", f"equals customer_asn {c.bgp.customer_asn}; an eBGP session needs two different ASNs")
        if c.bgp.customer_asn in rule.reserved_customer_asns:
            yield Problem(
                f"{path}.customer_asn",
                f"ASN {c.bgp.customer_asn} is reserved by Azure (65515 to 65520); pick another customer ASN",
            )
        if rule.fixed_peer_asn is not None and c.bgp.peer_asn != rule.fixed_peer_asn:
            yield Problem(f"{path}.peer_asn", f"{c.provider} always peers from ASN {rule.fixed_peer_asn}; set peer_asn: {rule.fixed_peer_asn}")


@_check
def _circuit_bandwidth(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    for i, c in _each(spec.circuits):
        sold = BANDWIDTHS_MBPS[(c.provider, c.connection)]
        if c.bandwidth_mbps not in sold:
            offer = ", ".join(str(b) for b in sold)
            yield Problem(
                f"circuits[{i}].bandwidth_mbps",
                f"{c.provider} does not sell {format_mbps(c.bandwidth_mbps)} as a {c.connection} connection; use one of {offer} (Mbps)",
            )


@_check
def _circuit_vlans(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    seen: dict[tuple[str, int], int] = {}
    for i, c in _each(spec.circuits):
        key = (c.location.strip().lower(), c.vlan)
        if key in seen:
            yield Problem(f"circuits[{i}].vlan", f"VLAN {c.vlan} is already used at {c.location} by circuits[{seen[key]}]; pick another VLAN")
        else:
            seen[key] = i


@_check
def _circuit_attaches(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    by_name = {n.name: n for _, n in _each(spec.networks)}
    for i, c in _each(spec.circuits):
        cloud = PROVIDER_CLOUD[c.provider]
        seen: set[str] = set()
        for j, name in enumerate(c.attaches):
            path = f"circuits[{i}].attaches[{j}]"
            if name in seen:
                yield Problem(path, f"'{name}' is listed twice; remove the repeat")
            seen.add(name)
            if name not in known.networks:
                yield Problem(path, f"unknown network '{name}'; name one of networks")
            elif name in by_name and by_name[name].cloud != cloud:
                yield Problem(path, f"'{name}' is in {by_name[name].cloud}, but {c.provider} circuits reach only {cloud} networks")


@_check
def _cloud_router(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    router = spec.cloud_router
    if router is None:
        return
    by_name = {c.name: (i, c) for i, c in _each(spec.circuits)}
    seen: set[str] = set()
    for j, name in enumerate(router.circuits):
        path = f"cloud_router.circuits[{j}]"
        if name in seen:
            yield Problem(path, f"'{name}' is listed twice; remove the repeat")
        seen.add(name)
        if name not in known.circuits:
            yield Problem(path, f"unknown circuit '{name}'; name one of circuits")
        elif name in by_name and by_name[name][1].bgp.customer_asn != router.asn:
            index, circuit = by_name[name]
            yield Problem(
                f"circuits[{index}].bgp.customer_asn",
                f"{circuit.bgp.customer_asn} differs from cloud_router.asn {router.asn}; the cloud router is this circuit's customer side",
            )


# --- policy --------------------------------------------------------------


def _endpoint_problem(value: str, known: KnownNames, allow_any: bool, allow_ip: bool) -> str | None:
    if value == "any":
        return None if allow_any else "'any' is not a concrete endpoint here; name a network or a group, or give an address"
    if value in known.networks or value in known.groups:
        return None
    if allow_ip:
        try:
            parse_address(value)
            return None
        except ValueError:
            pass
    what = "a network, a group or 'any'" if allow_any else "a network, a group or an IPv4 address"
    return f"unknown endpoint '{value}'; name {what}"


@_check
def _policy_refs(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    for i, rule in _each(spec.policy.rules):
        for key, value in (("from", rule.from_), ("to", rule.to)):
            problem = _endpoint_problem(value, known, allow_any=True, allow_ip=False)
            if problem:
                yield Problem(f"policy.rules[{i}].{key}", problem)
    network_cidrs = [c for _, n in _each(spec.networks) for c in n.cidrs]
    for i, test in _each(spec.policy.tests):
        for key, value in (("from", test.from_), ("to", test.to)):
            path = f"policy.tests[{i}].{key}"
            problem = _endpoint_problem(value, known, allow_any=False, allow_ip=True)
            if problem:
                yield Problem(path, problem)
            elif value not in known.networks and value not in known.groups and _all_parsed(spec, "networks"):
                address = parse_address(value)
                if not any(address in c for c in network_cidrs):
                    yield Problem(path, f"{address} is not inside any onboarded network; its traffic never crosses the fabric")


@_check
def _policy_ports(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    """Ports belong to tcp and udp only; an empty list would silently match nothing."""
    for i, rule in _each(spec.policy.rules):
        path = f"policy.rules[{i}].ports"
        if rule.ports is not None and rule.proto not in ("tcp", "udp"):
            yield Problem(path, f"ports are only allowed with proto tcp or udp, not {rule.proto}; remove ports or write one rule per protocol")
        elif rule.ports is not None and not rule.ports:
            yield Problem(path, "is empty; remove the key to match every port")
    for i, test in _each(spec.policy.tests):
        path = f"policy.tests[{i}].port"
        if test.proto == "icmp" and test.port is not None:
            yield Problem(path, "icmp has no port; remove port")
        elif test.proto != "icmp" and test.port is None:
            yield Problem(path, f"a {test.proto} test needs a port (1 to 65535)")


@_check
def _underlay(spec: FabricSpec, known: KnownNames) -> Iterator[Problem]:
    """Each pool's halves must hold a /31 per edge pair and per network (see plan._edge_links)."""
    edges = len(spec.edges)
    need = max(edges * (edges - 1) // 2, len(spec.networks), 1)
    for key in ("backbone_cidr", "internet_cidr"):
        pool = getattr(spec.underlay, key)
        if pool.num_addresses // 2 < 2 * need:
            yield Problem(f"underlay.{key}", f"{pool} is too small for {need} links per half; use a larger pool like /20")
