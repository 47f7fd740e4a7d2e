"""The local fabric's layout: which namespaces, links, addresses, routes and daemons.

Pure (spec in, `Layout` out), so it is tested with golden files and the Pulumi
code only turns it into resources. The model:

- every edge, connector, application network, circuit gateway, host and the
  cloud router is a namespace; an application network is a router with a
  bridge for its subnet (the VPC, VNet or data-center LAN), and its hosts and
  connector plug into that bridge with addresses from the network's CIDR;
- edges are joined pairwise twice: a private backbone link and an internet
  link, with the plan's addresses (`underlay.backbone_cidr`, `internet_cidr`);
  a connector reaches its home edge the same two ways;
- a native network is attached to its edge by one private link (the vWAN hub
  or TGW attachment);
- a circuit is a tbf-shaped link per peering subnet between the cloud router
  and the circuit's gateway namespace (the VGW or ER gateway), which peers
  eBGP with MD5 and announces the networks it attaches; those networks route
  everything not in the fabric to their gateway;
- an on-prem network's router (FRR) peers with its connector, where ExaBGP
  announces the fabric's cloud CIDRs with the connector as next hop.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from components.agents import PeerAddress, agent_config
from components.segmentation.resolve import endpoint_cidrs
from components.local.frr_config import BgpNeighbor, RouterConfig, StaticRoute
from components.plan import build_plan
from components.plan_models import CircuitPlan, ConnectorPlan, Plan
from components.spec import Edge, FabricSpec, Network
from components.spec_checks import home_edge
from dataplane.config import AgentConfig, TlsPaths

RUN_ROOT = "/run/transit"
"""Where daemons keep their files (must equal daemon_provider.RUN_ROOT)."""

HOST_INDEX = 10
"""Default app host: the 10th address of a network's first CIDR (10.30.40.10 in seed 000)."""

CONNECTOR_OFFSET = 4
"""Connector address in its first zone subnet (clouds reserve the first four addresses)."""

ATTACHMENT_POOL_PREFIX = 24
"""Local-only attachment links (edge to native network, gateway to network) come from the
last /24 of the backbone pool, which the plan's uplinks (one /31 per network) never reach."""

MAX_PREFIX_LEN = 24
"""Longest name prefix, so names stay readable in `ip netns list`."""

MAX_FRR_NAME_LEN = 60
"""Longest FRR pathspace name: /var/run/frr/<name>/<daemon>.vty must fit a 108-byte Unix socket path."""

Role = Literal["edge", "connector", "network", "gateway", "cloud-router", "host"]
LinkKind = Literal["backbone", "internet", "attachment", "circuit", "lan"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bridge(_Model):
    """The subnet of an application network: a bridge holding the network's gateway address."""

    name: str
    address: str = Field(description="Gateway address with the subnet's prefix length (CIDR form).")


class NamespaceSpec(_Model):
    """One namespace and what fabric node it stands for."""

    name: str
    role: Role
    node: str = Field(description="Spec name of the edge, network or circuit (host: network name).")
    bridge: Bridge | None = None


class LinkSpec(_Model):
    """A veth pair; `rate_mbps` makes it a shaped circuit link."""

    key: str = Field(description="Stable resource name suffix.")
    kind: LinkKind
    ns_a: str
    if_a: str
    addr_a: str | None = None
    master_a: str | None = None
    ns_b: str
    if_b: str
    addr_b: str | None = None
    master_b: str | None = None
    rate_mbps: int | None = None


class Route(_Model):
    dst: str
    via: str


class RouteTable(_Model):
    ns: str
    routes: list[Route]


class HostSpec(_Model):
    """An app host: one address in a network, the TCP ports it serves and the UDP ports it echoes on."""

    ns: str
    network: str
    address: str
    gateway: str
    ports: list[int]
    udp_ports: list[int] = Field(default_factory=list)


class AgentSpec(_Model):
    """One transit-agent: its namespace, identity and config."""

    ns: str
    name: str = Field(description="Daemon instance name (its directory under RUN_ROOT).")
    identity: str
    config: AgentConfig


class RouterSpec(_Model):
    """One FRR instance in a namespace."""

    ns: str
    config: RouterConfig


class ExaBgpSpec(_Model):
    """ExaBGP on an on-prem connector: the session with the DC router."""

    ns: str
    name: str
    local_ip: str
    local_asn: int
    peer_ip: str
    peer_asn: int
    md5_secret: str
    announce: list[str]


class FlowSpec(_Model):
    """A policy test turned into a real flow between two hosts."""

    test: str
    src_ns: str
    src: str
    dst: str
    proto: str
    port: int | None
    expect: str


class Layout(_Model):
    """Everything the local fabric is made of, in creation order."""

    prefix: str
    fabric: str
    namespaces: list[NamespaceSpec]
    links: list[LinkSpec]
    route_tables: list[RouteTable]
    hosts: list[HostSpec]
    agents: list[AgentSpec]
    routers: list[RouterSpec]
    exabgp: list[ExaBgpSpec]
    flows: list[FlowSpec]


def name_prefix(fabric: str, stack: str) -> str:
    """Namespace name prefix for one stack of one fabric: readable, short, unique per pair."""
    prefix = f"{fabric}-{stack}"
    if len(prefix) <= MAX_PREFIX_LEN:
        return prefix
    digest = hashlib.sha1(prefix.encode()).hexdigest()[:8]
    return f"{fabric[:MAX_PREFIX_LEN - 9]}-{digest}"


def frr_instance_name(ns: str) -> str:
    """The FRR pathspace (`-N`) of the router in namespace `ns`: the namespace name, hashed when too long."""
    if len(ns) <= MAX_FRR_NAME_LEN:
        return ns
    return f"{ns[:MAX_FRR_NAME_LEN - 9]}-{hashlib.sha1(ns.encode()).hexdigest()[:8]}"


def attachment_pool_capacity() -> int:
    """How many attachment links the local pool holds: one /31 each in a /ATTACHMENT_POOL_PREFIX."""
    return 2 ** (31 - ATTACHMENT_POOL_PREFIX)


def attachment_links_needed(spec: FabricSpec, plan: Plan) -> int:
    """Attachment links a local build makes: one per native network, one per network a circuit attaches."""
    return sum(n.attach == "native" for n in spec.networks) + sum(len(c.attaches) for c in plan.circuits)


class _Pool:
    """Hands out /31 link subnets from a CIDR in order; running out is an error naming the limit."""

    def __init__(self, cidr: IPv4Network) -> None:
        self._cidr = cidr
        self._subnets: Iterator[IPv4Network] = cidr.subnets(new_prefix=31)

    def pair(self) -> tuple[str, str]:
        subnet = next(self._subnets, None)
        if subnet is None:
            raise ValueError(
                f"the local attachment pool {self._cidr} (last /{ATTACHMENT_POOL_PREFIX} of underlay.backbone_cidr) "
                f"holds {attachment_pool_capacity()} links; this fabric needs more (native networks plus circuit attachments)"
            )
        return f"{subnet[0]}/31", f"{subnet[1]}/31"


def _ip(cidr_addr: str) -> str:
    return cidr_addr.split("/")[0]


def _usable(subnet: IPv4Network) -> list[IPv4Address]:
    return list(subnet) if subnet.prefixlen >= 31 else list(subnet.hosts())


class _Builder:
    """Walks the spec once; every allocation happens in spec order, so names never move."""

    def __init__(self, spec: FabricSpec, plan: Plan, prefix: str) -> None:
        self.spec, self.plan, self.prefix = spec, plan, prefix
        pool = spec.underlay.backbone_cidr
        size = 2 ** (32 - ATTACHMENT_POOL_PREFIX)
        self.attachments = _Pool(IPv4Network((int(pool.broadcast_address) + 1 - size, ATTACHMENT_POOL_PREFIX)))
        self.connectors = {c.network: c for c in plan.connectors}
        self.planned_agents = {a.name: a for a in plan.agents}
        self.namespaces: list[NamespaceSpec] = []
        self.links: list[LinkSpec] = []
        self.routes: dict[str, list[Route]] = {}
        self.hosts: list[HostSpec] = []
        self.agents: list[AgentSpec] = []
        self.routers: list[RouterSpec] = []
        self.exabgp: list[ExaBgpSpec] = []
        # (edge name, peer key) -> (edge-side address, peer-side address) on private / public paths
        self.private: dict[tuple[str, str], tuple[str, str]] = {}
        self.public: dict[tuple[str, str], tuple[str, str]] = {}

    # names ---------------------------------------------------------------
    def ns(self, role: str, node: str) -> str:
        short = {"edge": "e", "connector": "c", "network": "n", "gateway": "g", "host": "h"}
        return f"{self.prefix}-cr" if role == "cloud-router" else f"{self.prefix}-{short[role]}-{node}"

    def add_ns(self, role: Role, node: str, bridge: Bridge | None = None, name: str | None = None) -> str:
        ns = name or self.ns(role, node)
        self.namespaces.append(NamespaceSpec(name=ns, role=role, node=node, bridge=bridge))
        return ns

    def add_route(self, ns: str, dst: str, via: str) -> None:
        self.routes.setdefault(ns, []).append(Route(dst=dst, via=via))

    # addressing ----------------------------------------------------------
    def gateway_ip(self, network: Network) -> IPv4Address:
        """The network router's address on its bridge (the DC router is the BGP peer_ip)."""
        if network.bgp is not None:
            return network.bgp.peer_ip
        return network.cidrs[0].network_address + 1

    def connector_ip(self, connector: ConnectorPlan) -> IPv4Address:
        if connector.bgp is not None:
            return IPv4Address(connector.bgp.local_ip)
        return IPv4Network(connector.subnets[0].cidr).network_address + CONNECTOR_OFFSET

    def subnet_of(self, network: Network, address: IPv4Address) -> IPv4Network:
        subnet = next((c for c in network.cidrs if address in c), None)
        if subnet is None:  # the spec checks refuse such addresses; reaching here is a bug
            raise ValueError(f"network {network.name}: {address} is outside its cidrs {[str(c) for c in network.cidrs]}")
        return subnet

    def host_addresses(self, network: Network) -> list[IPv4Address]:
        """The default host plus every policy-test target address inside this network."""
        out = [network.cidrs[0].network_address + HOST_INDEX]
        for test in self.spec.policy.tests:
            address = self.target_address(test.to)
            if address is not None and any(address in c for c in network.cidrs) and address not in out:
                out.append(address)
        return out

    def target_address(self, endpoint: str) -> IPv4Address | None:
        """The host address a policy test endpoint is exercised at."""
        networks = {n.name: n for n in self.spec.networks}
        if endpoint in networks:
            return networks[endpoint].cidrs[0].network_address + HOST_INDEX
        cidrs = endpoint_cidrs(self.spec, endpoint)
        if not cidrs:
            return None
        first = cidrs[0]
        if first.num_addresses > HOST_INDEX:  # a subnet: its usual host, never the gateway (.1)
            return first.network_address + HOST_INDEX
        return _usable(first)[0]

    # nodes ---------------------------------------------------------------
    def build(self) -> Layout:
        for edge in self.spec.edges:
            self.add_ns("edge", edge.name)
        self.edge_mesh()
        for network in self.spec.networks:
            self.network(network)
        self.circuits()
        for edge in self.spec.edges:
            self.edge_agent(edge)
        return Layout(
            prefix=self.prefix, fabric=self.spec.name, namespaces=self.namespaces, links=self.links,
            route_tables=[RouteTable(ns=ns, routes=r) for ns, r in self.routes.items()],
            hosts=self.hosts, agents=self.agents, routers=self.routers, exabgp=self.exabgp,
            flows=self.flows(),
        )

    def plan_node_ns(self, node: str) -> tuple[str, str]:
        """(namespace, peer key) of a plan link end: an edge or a connector."""
        for connector in self.plan.connectors:
            if connector.name == node:
                return self.ns("connector", connector.network), f"connector:{connector.network}"
        return self.ns("edge", node), f"edge:{node}"

    def edge_mesh(self) -> None:
        """The plan's links: edge to edge and connector to edge, private and public."""
        for index, link in enumerate(self.plan.links):
            tag = "bb" if link.kind == "backbone" else "in"
            (ns_a, key_a), (ns_b, key_b) = self.plan_node_ns(link.a), self.plan_node_ns(link.b)
            plen = IPv4Network(link.subnet).prefixlen
            self.links.append(LinkSpec(
                key=link.name, kind=link.kind, ns_a=ns_a, if_a=f"{tag}{index}", addr_a=f"{link.a_ip}/{plen}",
                ns_b=ns_b, if_b=f"{tag}{index}", addr_b=f"{link.b_ip}/{plen}"))
            table = self.private if link.kind == "backbone" else self.public
            for (key_self, ip_self), (key_peer, ip_peer) in (((key_a, link.a_ip), (key_b, link.b_ip)),
                                                               ((key_b, link.b_ip), (key_a, link.a_ip))):
                if key_self.startswith("edge:"):
                    table[(key_self.split(":", 1)[1], key_peer)] = (ip_self, ip_peer)

    def network(self, network: Network) -> None:
        index = self.spec.networks.index(network)
        gw = self.gateway_ip(network)
        subnet = self.subnet_of(network, gw)
        net_ns = self.add_ns("network", network.name, Bridge(name="br0", address=f"{gw}/{subnet.prefixlen}"))
        for other in network.cidrs:
            if other != subnet:  # extra CIDRs of the network are served from the same bridge
                self.add_route(net_ns, str(other), str(gw))
        for h, address in enumerate(self.host_addresses(network)):
            host_ns = self.add_ns("host", network.name, name=f"{self.ns('host', network.name)}-{h}")
            hsub = self.subnet_of(network, address)
            self.links.append(LinkSpec(
                key=f"lan-{network.name}-host-{h}", kind="lan", ns_a=host_ns, if_a="eth0",
                addr_a=f"{address}/{hsub.prefixlen}", ns_b=net_ns, if_b=f"h{h}", master_b="br0"))
            self.add_route(host_ns, "0.0.0.0/0", str(gw))
            self.hosts.append(HostSpec(ns=host_ns, network=network.name, address=str(address),
                                       gateway=str(gw), ports=self.ports_at(address),
                                       udp_ports=self.ports_at(address, "udp")))
        edge = home_edge(self.spec, network)
        remote = [str(c) for c in self.remote_cidrs(network)]
        if network.attach == "native":
            edge_side, net_side = self.attachments.pair()
            self.links.append(LinkSpec(
                key=f"attachment-{network.name}", kind="attachment", ns_a=self.ns("edge", edge.name),
                if_a=f"na{index}", addr_a=edge_side, ns_b=net_ns, if_b="edge", addr_b=net_side))
            for cidr in network.cidrs:
                self.add_route(self.ns("edge", edge.name), str(cidr), _ip(net_side))
            for cidr in remote:
                self.add_route(net_ns, cidr, _ip(edge_side))
            return
        self.connector(network, index, edge, net_ns, remote)

    def connector(self, network: Network, index: int, edge: Edge, net_ns: str, remote: list[str]) -> None:
        c_ns = self.add_ns("connector", network.name)
        c_ip = self.connector_ip(self.connectors[network.name])
        subnet = self.subnet_of(network, c_ip)
        gw = self.gateway_ip(network)
        self.links.append(LinkSpec(
            key=f"lan-{network.name}-connector", kind="lan", ns_a=c_ns, if_a="lan",
            addr_a=f"{c_ip}/{subnet.prefixlen}", ns_b=net_ns, if_b="cn", master_b="br0"))
        for cidr in network.cidrs:
            if cidr != subnet:
                self.add_route(c_ns, str(cidr), str(gw))
        key = f"connector:{network.name}"
        if network.bgp is None:
            for cidr in remote:
                self.add_route(net_ns, cidr, str(c_ip))
        else:
            self.dc_bgp(network, net_ns, c_ns, c_ip, remote)
        edge_private, _ = self.private[(edge.name, key)]
        edge_public, _ = self.public[(edge.name, key)]
        self.add_agent(c_ns, f"connector-{network.name}", {f"edge-{edge.name}": PeerAddress(private=edge_private, public=edge_public)})

    def dc_bgp(self, network: Network, net_ns: str, c_ns: str, c_ip: IPv4Address, remote: list[str]) -> None:
        bgp = network.bgp
        self.routers.append(RouterSpec(ns=net_ns, config=RouterConfig(
            name=frr_instance_name(net_ns), asn=bgp.peer_asn, router_id=str(bgp.peer_ip), networks=[str(c) for c in network.cidrs],
            neighbors=[BgpNeighbor(address=str(c_ip), remote_asn=bgp.asn, description=f"connector-{network.name}",
                                   md5_secret=bgp.md5_secret)])))
        self.exabgp.append(ExaBgpSpec(
            ns=c_ns, name=f"{self.prefix}-exabgp-{network.name}", local_ip=str(c_ip), local_asn=bgp.asn,
            peer_ip=str(bgp.peer_ip), peer_asn=bgp.peer_asn, md5_secret=bgp.md5_secret, announce=remote))

    def circuits(self) -> None:
        """Each circuit: a gateway namespace (the provider's side) and, through the cloud
        router, one shaped link per BGP session with the plan's addresses."""
        router = self.plan.cloud_router
        cr_ns = self.add_ns("cloud-router", router.name) if router else None
        for ci, circuit in enumerate(self.plan.circuits):
            g_ns = self.add_ns("gateway", circuit.name)
            statics = []
            for attached in circuit.attaches:
                g_side, n_side = self.attachments.pair()
                n_index = [n.name for n in self.spec.networks].index(attached.network)
                self.links.append(LinkSpec(
                    key=f"attachment-{circuit.name}-{attached.network}", kind="attachment", ns_a=g_ns,
                    if_a=f"n{n_index}", addr_a=g_side, ns_b=self.ns("network", attached.network),
                    if_b=f"gw{ci}", addr_b=n_side))
                statics += [StaticRoute(dst=c, via=_ip(n_side)) for c in attached.cidrs]
                self.add_route(self.ns("network", attached.network), "0.0.0.0/0", _ip(g_side))
            if cr_ns:
                for j, session in enumerate(circuit.sessions):
                    self.links.append(LinkSpec(
                        key=f"circuit-{circuit.name}-{session.role}", kind="circuit", ns_a=cr_ns, if_a=f"c{ci}s{j}",
                        addr_a=f"{session.customer_ip}/{session.prefix_length}", ns_b=g_ns, if_b=f"cr{j}",
                        addr_b=f"{session.peer_ip}/{session.prefix_length}", rate_mbps=circuit.bandwidth_mbps))
            self.routers.append(RouterSpec(ns=g_ns, config=self.gateway_router(g_ns, circuit, statics)))
        if router and cr_ns:
            self.routers.append(RouterSpec(ns=cr_ns, config=RouterConfig(
                name=frr_instance_name(cr_ns), asn=router.asn, router_id=router.neighbors[0].local_ip,
                neighbors=[BgpNeighbor(address=n.peer_ip, remote_asn=n.peer_asn, md5_secret=n.md5_secret,
                                       description=f"{n.circuit}-{n.role}") for n in router.neighbors])))

    @staticmethod
    def gateway_router(ns: str, circuit: CircuitPlan, statics: list[StaticRoute]) -> RouterConfig:
        """The provider's router (VGW, ER gateway): announces the attached networks' CIDRs."""
        return RouterConfig(
            name=frr_instance_name(ns), asn=circuit.peer_asn, router_id=circuit.sessions[0].peer_ip, static_routes=statics,
            networks=[c for a in circuit.attaches for c in a.cidrs],
            neighbors=[BgpNeighbor(address=s.customer_ip, remote_asn=circuit.customer_asn, md5_secret=circuit.md5_secret,
                                   description=f"{circuit.name}-{s.role}") for s in circuit.sessions])

    def edge_agent(self, edge: Edge) -> None:
        addresses = {}
        for (owner, key), (_, peer_private) in self.private.items():
            if owner == edge.name:
                role, node = key.split(":", 1)
                addresses[f"{role}-{node}"] = PeerAddress(private=peer_private, public=self.public[(owner, key)][1])
        self.add_agent(self.ns("edge", edge.name), f"edge-{edge.name}", addresses)

    def add_agent(self, ns: str, agent: str, addresses: dict[str, PeerAddress]) -> None:
        """The plan's agent, placed at the local link addresses, with its files under RUN_ROOT."""
        planned = self.planned_agents[agent]
        name = f"{self.prefix}-agent-{agent}"
        config = agent_config(planned, self.plan.members, addresses, self.tls(name), flow_log=f"{RUN_ROOT}/{name}/flows.jsonl")
        self.agents.append(AgentSpec(ns=ns, name=name, identity=planned.identity, config=config))

    # helpers -------------------------------------------------------------

    @staticmethod
    def tls(name: str) -> TlsPaths:
        base = f"{RUN_ROOT}/{name}"
        return TlsPaths(ca=f"{base}/ca.pem", cert=f"{base}/node.pem", key=f"{base}/node.key")

    def remote_cidrs(self, network: Network) -> list[IPv4Network]:
        return [c for n in self.spec.networks if n.name != network.name for c in n.cidrs]

    def ports_at(self, address: IPv4Address, proto: str = "tcp") -> list[int]:
        """The `proto` ports the policy tests aim at `address` (what its app server must serve)."""
        return sorted({t.port for t in self.spec.policy.tests
                       if t.proto == proto and t.port and self.target_address(t.to) == address})

    def flows(self) -> list[FlowSpec]:
        by_address = {h.address: h for h in self.hosts}
        out = []
        for i, test in enumerate(self.spec.policy.tests):
            src, dst = self.target_address(test.from_), self.target_address(test.to)
            if src is None or dst is None or str(src) not in by_address:
                continue
            out.append(FlowSpec(test=f"policy.tests[{i}]", src_ns=by_address[str(src)].ns, src=str(src),
                                dst=str(dst), proto=test.proto, port=test.port, expect=test.expect))
        return out


def build_layout(spec: FabricSpec, prefix: str, plan: Plan | None = None) -> Layout:
    """The local layout of `spec` (through its plan), with every name starting with `prefix`."""
    return _Builder(spec, plan or build_plan(spec), prefix).build()
