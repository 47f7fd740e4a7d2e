"""Where AWS agents are reached: the addresses, ports and TLS paths the one builder (components.agents) needs.

Peers dial load balancers, never VMs: an AWS edge's private address is its
internal NLB (zone 0), its public address its first Elastic IP (known only
once allocated, so passed in); a connector's address is its internal NLB. A
connector sends its edge only what its route tables bring it (the routed
destinations). Agents behind a Gateway Load Balancer (every connector, and
an edge whose native networks reach it through its own GWLB) get a `geneve`
section: GENEVE only from the load balancer's subnets, the networks behind
it delivered from the node's own address so replies return to the same VM
(docs/aws.md, "GENEVE"). The documents carry no secret: TLS files are written at boot
from SSM parameters under /transit/<fabric>/<environment>/<node> (the
instance role can read only that path). Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address

from components.agents import PeerAddress, agent_config
from components.aws.planning import AwsEdgeLayout, AwsLayout, AwsNetworkLayout
from components.plan_models import AgentPlan
from dataplane.config import AgentConfig, Endpoint, GeneveNetwork, GeneveSettings, ListenConfig, Member, TlsPaths

TLS_DIR = "/etc/transit/tls"
TLS = TlsPaths(ca=f"{TLS_DIR}/ca.pem", cert=f"{TLS_DIR}/node.pem", key=f"{TLS_DIR}/node.key")  # type: ignore[arg-type]


def _listen(tunnel_port: int, probe_port: int, metrics_port: int) -> ListenConfig:
    # Metrics and /healthz listen on all addresses: the load balancers health-check them.
    return ListenConfig(
        tunnel=Endpoint(port=tunnel_port), probe=Endpoint(port=probe_port),
        metrics=Endpoint(host=IPv4Address("0.0.0.0"), port=metrics_port),
    )


def geneve(gwlb_subnets: list[str], cidrs: list[str], deliver_from: str = "node") -> GeneveSettings:
    """GENEVE from the GWLB nodes in `gwlb_subnets` for workloads in `cidrs`, delivered from the node's own address
    (`deliver_from: node`, the default): with two or more VMs behind the load balancer it is the only mode whose
    replies come back to the VM that delivered (the flow log keeps the real client)."""
    return GeneveSettings(gwlb_cidrs=gwlb_subnets, networks=[GeneveNetwork(cidrs=cidrs, deliver_from=deliver_from)])  # type: ignore[arg-type]


def _edge_address(edge: AwsEdgeLayout, public_ips: Mapping[str, str]) -> PeerAddress:
    return PeerAddress(
        private=edge.private_ips[0], public=public_ips.get(edge.name) or None, tunnel_port=edge.tunnel_port, probe_port=edge.probe_port,
    )


def edge_config(
    agent: AgentPlan, members: list[Member], layout: AwsLayout, edge: AwsEdgeLayout, public_ips: Mapping[str, str]
) -> AgentConfig:
    """An AWS edge: delivers to its native networks, relays to the other AWS edges and its connectors."""
    addresses = {f"edge-{other.name}": _edge_address(other, public_ips) for other in layout.edges if other.name != edge.name}
    addresses.update({
        f"connector-{n.name}": PeerAddress(private=n.endpoint_ips[0], tunnel_port=edge.tunnel_port, probe_port=edge.probe_port)
        for n in layout.networks
        if n.edge == edge.name and n.attach == "connector"
    })
    behind = geneve(edge.public_subnets, edge.native_cidrs) if edge.ingress_cidrs and edge.native_cidrs else None  # the edge's GWLB is in its public subnets
    return agent_config(agent, members, addresses, TLS, listen=_listen(edge.tunnel_port, edge.probe_port, edge.metrics_port), geneve=behind)


def connector_config(
    agent: AgentPlan, members: list[Member], layout: AwsLayout, network: AwsNetworkLayout, public_ips: Mapping[str, str]
) -> AgentConfig:
    """A connector: intercepts its network's traffic to the destinations it routes and relays it to its edge."""
    edges = {e.name: e for e in layout.edges}
    if network.edge not in edges:
        raise ValueError(
            f"connector {network.name} is homed at edge {network.edge}, which is not an AWS edge; "
            "an AWS connector needs an AWS edge (set `edge:` on the network)"
        )
    edge = edges[network.edge]
    home = PeerAddress(
        private=edge.private_ips[0], public=public_ips.get(edge.name) or None, tunnel_port=edge.tunnel_port,
        probe_port=edge.probe_port, cidrs=network.destinations,
    )
    return agent_config(
        agent, members, {f"edge-{edge.name}": home}, TLS, listen=_listen(edge.tunnel_port, edge.probe_port, edge.metrics_port),
        geneve=geneve([z.gwlb for z in network.connector_subnets], network.cidrs, network.deliver_from),  # the GWLB's nodes: its subnets
    )
