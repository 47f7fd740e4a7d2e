"""AgentConfigs of the AWS edge and connector VMs, built from the AWS layout: pure.

Peers dial load balancers, never VMs: an AWS edge's private address is its
internal NLB (zone 0), its public address its first Elastic IP (known only
once allocated, so passed in); a connector's address is its internal NLB. The
documents carry no secret: TLS files are written at boot from SSM parameters
under /transit/<fabric>/<environment>/<node> (the instance role can read only
that path). Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network

from components.aws.planning import AwsEdgeLayout, AwsLayout, AwsNetworkLayout
from components.segmentation.agent_filters import edge_scope
from components.segmentation.members import fabric_members
from components.segmentation.resolve import ResolvedRule, endpoint_cidrs, resolve_rules
from components.spec import FabricSpec
from dataplane.config import AgentConfig, Endpoint, ListenConfig, PeerConfig, TlsPaths
from dataplane.filter_model import FilterPolicy, FilterRule

TLS_DIR = "/etc/transit/tls"


class ScopedFilters:
    """Each agent's FilterPolicy, with the policy resolved once per fabric instead of once per agent.

    Same meaning as agent_filters.connector_filter and edge_filter (the tests
    hold them equal): a point keeps, in order, the rules whose source or
    destination can overlap its scope.
    """

    def __init__(self, spec: FabricSpec) -> None:
        self.spec = spec
        self.rules: list[ResolvedRule] = resolve_rules(spec)

    def scoped(self, scope: list[IPv4Network]) -> FilterPolicy:
        def overlaps(nets: tuple[IPv4Network, ...]) -> bool:
            return any(net.overlaps(other) for net in nets for other in scope)

        kept = [r for r in self.rules if overlaps(r.src) or overlaps(r.dst)]
        return FilterPolicy(
            default=self.spec.policy.default,
            rules=[
                FilterRule(name=r.name, action=r.action, src=list(r.src), dst=list(r.dst), proto=r.proto, ports=list(r.ports))  # type: ignore[arg-type]
                for r in kept
            ],
        )

    def connector(self, network: str) -> FilterPolicy:
        return self.scoped(endpoint_cidrs(self.spec, network))

    def edge(self, edge: str) -> FilterPolicy:
        return self.scoped(edge_scope(self.spec, edge))


def _tls() -> TlsPaths:
    return TlsPaths(ca=f"{TLS_DIR}/ca.pem", cert=f"{TLS_DIR}/node.pem", key=f"{TLS_DIR}/node.key")


def _listen(tunnel_port: int, probe_port: int, metrics_port: int) -> ListenConfig:
    # Metrics and /healthz listen on all addresses: the load balancers health-check them.
    return ListenConfig(
        tunnel=Endpoint(port=tunnel_port), probe=Endpoint(port=probe_port),
        metrics=Endpoint(host=IPv4Address("0.0.0.0"), port=metrics_port),
    )


def _identity(spec: FabricSpec, role: str, node: str) -> str:
    return f"spiffe://{spec.name}/{role}-{node}"


def edge_config(
    spec: FabricSpec, layout: AwsLayout, edge: AwsEdgeLayout, public_ips: Mapping[str, str], filters: ScopedFilters | None = None
) -> AgentConfig:
    """An AWS edge: delivers to its native networks, relays to the other AWS edges and its connectors."""
    homed = {n.name: n.edge for n in layout.networks}
    peers = [
        PeerConfig(
            name=f"edge-{other.name}", identity=_identity(spec, "edge", other.name), private_addr=IPv4Address(other.private_ips[0]),
            public_addr=IPv4Address(public_ips[other.name]) if public_ips.get(other.name) else None,
            tunnel_port=other.tunnel_port, probe_port=other.probe_port,
            cidrs=[IPv4Network(c) for n in layout.networks if homed[n.name] == other.name for c in n.cidrs],
        )
        for other in layout.edges
        if other.name != edge.name
    ]
    peers += [
        PeerConfig(
            name=f"connector-{n.name}", identity=_identity(spec, "connector", n.name), private_addr=IPv4Address(n.endpoint_ips[0]),
            tunnel_port=edge.tunnel_port, probe_port=edge.probe_port, cidrs=[IPv4Network(c) for c in n.cidrs],
        )
        for n in layout.networks
        if n.edge == edge.name and n.attach == "connector"
    ]
    return AgentConfig(
        name=f"edge-{edge.name}", role="edge", identity=_identity(spec, "edge", edge.name),
        listen=_listen(edge.tunnel_port, edge.probe_port, edge.metrics_port),
        local_cidrs=[IPv4Network(c) for c in edge.native_cidrs], peers=peers,
        filter=(filters or ScopedFilters(spec)).edge(edge.name), tls=_tls(), members=fabric_members(spec),
    )


def connector_config(
    spec: FabricSpec, layout: AwsLayout, network: AwsNetworkLayout, public_ips: Mapping[str, str], filters: ScopedFilters | None = None
) -> AgentConfig:
    """A connector: intercepts its network's traffic to the destinations it routes and relays it to its edge."""
    edges = {e.name: e for e in layout.edges}
    if network.edge not in edges:
        raise ValueError(
            f"connector {network.name} is homed at edge {network.edge}, which is not an AWS edge; "
            "an AWS connector needs an AWS edge (set `edge:` on the network)"
        )
    edge = edges[network.edge]
    peer = PeerConfig(
        name=f"edge-{edge.name}", identity=_identity(spec, "edge", edge.name),
        private_addr=IPv4Address(edge.private_ips[0]),
        public_addr=IPv4Address(public_ips[edge.name]) if public_ips.get(edge.name) else None,
        tunnel_port=edge.tunnel_port, probe_port=edge.probe_port,
        cidrs=[IPv4Network(c) for c in network.destinations],
    )
    return AgentConfig(
        name=f"connector-{network.name}", role="connector", identity=_identity(spec, "connector", network.name),
        listen=_listen(edge.tunnel_port, edge.probe_port, edge.metrics_port),
        local_cidrs=[IPv4Network(c) for c in network.cidrs], peers=[peer],
        filter=(filters or ScopedFilters(spec)).connector(network.name), tls=_tls(), members=fabric_members(spec),
    )
