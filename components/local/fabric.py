"""LocalFabric: the `local` target, the whole fabric on this machine.

Turns the pure `Layout` into dynamic-provider resources: namespaces, links,
routes, the fabric CA and node certificates, FRR routers, ExaBGP, the agents
and the app servers, each a child of this component with a stable name taken
from the layout (never from a pid or a kernel index).
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from components.local import exabgp_config, frr_config
from components.local.daemon_provider import Daemon
from components.local.frr_provider import FrrRouter
from components.local.layout import Layout, build_layout, name_prefix
from components.local.link_provider import ShapedLink, VethLink
from components.local.netns_provider import Namespace
from components.local.pki_provider import FabricCa, NodeCertificate
from components.local.routes_provider import Routes
from components.local.target import required_secrets
from components.plan import build_plan
from components.plan_models import Plan
from components.spec import FabricSpec

BIN = Path(sys.executable).parent
"""The venv's bin directory: transit-agent, exabgp and python live there."""

CURL = "curl -s --max-time 3"

AGENT_READY_TIMEOUT = 30.0
"""Seconds an agent may take to listen: about one normally, far more on a loaded 2-core machine."""


@dataclass(frozen=True)
class LocalFabricArgs:
    """Inputs of LocalFabric."""

    spec: FabricSpec
    """The validated fabric spec."""
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Value of each secret config key the spec names (`md5_secret`). Defaults to none."""
    stack: str = "local"
    """Stack name, part of every namespace name so stacks never collide. Defaults to local."""
    plan: Plan | None = None
    """The spec's plan when the caller already has it. Defaults to building it."""


UDP_SEND = ("python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); "
            "s.sendto(b'hello', ('{dst}', {port})); print(s.recv(100))\"")


def flow_command(flow: Any) -> str:
    """A command a user can paste to send one policy test's flow (tcp: curl; udp: one datagram echoed; icmp: ping)."""
    if flow.proto == "udp":
        return f"ip netns exec {flow.src_ns} " + UDP_SEND.format(dst=flow.dst, port=flow.port)
    if flow.proto == "icmp":
        return f"ip netns exec {flow.src_ns} ping -c 1 -W 1 {flow.dst}"
    return f"ip netns exec {flow.src_ns} {CURL} http://{flow.dst}:{flow.port}/"


class LocalFabric(pulumi.ComponentResource):
    """The fabric in network namespaces with real agents, FRR and ExaBGP."""

    layout: Layout
    namespaces: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: LocalFabricArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        plan = args.plan or build_plan(args.spec)
        layout = build_layout(args.spec, name_prefix(args.spec.name, args.stack), plan)
        missing = [k for k in required_secrets(plan) if k not in args.secrets]
        if missing:
            raise ValueError(f"set these secret config keys first (pulumi config set --secret KEY): {', '.join(missing)}")
        super().__init__("transit:local:LocalFabric", name, None, opts)
        self.layout = layout
        child = pulumi.ResourceOptions(parent=self)

        def short(ns: str) -> str:
            return ns.removeprefix(f"{layout.prefix}-")

        self.namespace_resources = {
            ns.name: Namespace(f"{name}-ns-{short(ns.name)}", name=ns.name,
                               bridge=ns.bridge.model_dump() if ns.bridge else None, opts=child)
            for ns in layout.namespaces
        }
        links_of: dict[str, list[pulumi.Resource]] = {ns: [] for ns in self.namespace_resources}
        for link in layout.links:
            deps = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace_resources[link.ns_a],
                                                                  self.namespace_resources[link.ns_b]])
            common = dict(ns_a=link.ns_a, if_a=link.if_a, addr_a=link.addr_a, ns_b=link.ns_b, if_b=link.if_b,
                          addr_b=link.addr_b)
            if link.rate_mbps:
                res: pulumi.Resource = ShapedLink(f"{name}-link-{link.key}", rate_mbps=link.rate_mbps, opts=deps,
                                                  **common)
            else:
                res = VethLink(f"{name}-link-{link.key}", master_a=link.master_a, master_b=link.master_b, opts=deps,
                               **common)
            links_of[link.ns_a].append(res)
            links_of[link.ns_b].append(res)

        ready_of = {ns: [self.namespace_resources[ns], *links] for ns, links in links_of.items()}
        for table in layout.route_tables:
            routes = Routes(f"{name}-routes-{short(table.ns)}", ns=table.ns,
                            routes=[r.model_dump() for r in table.routes],
                            opts=pulumi.ResourceOptions(parent=self, depends_on=list(ready_of[table.ns])))
            ready_of[table.ns].append(routes)

        routers = {}
        for router in layout.routers:
            text = frr_config.render(router.config)
            routers[router.ns] = FrrRouter(
                f"{name}-frr-{short(router.ns)}", name=router.config.name, ns=router.ns, config=text,
                secrets={k: args.secrets[k] for k in frr_config.secret_keys(text)},
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(ready_of[router.ns])))

        for session in layout.exabgp:
            conf = pulumi.Output.secret(args.secrets[session.md5_secret]).apply(
                lambda key, s=session: exabgp_config.render(s, key))
            Daemon(f"{name}-exabgp-{short(session.ns)}", name=session.name, ns=session.ns,
                   argv=[str(BIN / "exabgp"), "{dir}/exabgp.conf"], secret_files={"exabgp.conf": conf},
                   env=exabgp_config.ENVIRONMENT,
                   opts=pulumi.ResourceOptions(parent=self, depends_on=list(ready_of[session.ns])))

        self.ca = FabricCa(f"{name}-ca", fabric=args.spec.name, opts=child)
        for agent in layout.agents:
            cert = NodeCertificate(f"{name}-cert-{agent.config.name}", ca=self.ca, identity=agent.identity, opts=child)
            Daemon(f"{name}-agent-{agent.config.name}", name=agent.name, ns=agent.ns,
                   argv=[str(BIN / "transit-agent"), "--config", "{dir}/agent.json"],
                   files={"agent.json": agent.config.model_dump_json(indent=2), "ca.pem": self.ca.cert_pem,
                          "node.pem": cert.cert_pem},
                   secret_files={"node.key": cert.key_pem}, ready_port=agent.config.listen.tunnel.port,
                   ready_timeout=AGENT_READY_TIMEOUT,
                   opts=pulumi.ResourceOptions(parent=self, depends_on=list(ready_of[agent.ns])))

        for host in layout.hosts:
            if not host.ports and not host.udp_ports:
                continue
            argv = [str(BIN / "python"), "-m", "components.local.app_server", "--bind", host.address]
            for port in host.ports:
                argv += ["--port", str(port)]
            for port in host.udp_ports:
                argv += ["--udp-port", str(port)]
            # Ready once its first TCP port listens (UDP ports are bound before it); UDP-only hosts are ready at start.
            Daemon(f"{name}-app-{short(host.ns)}", name=f"{host.ns}-app", ns=host.ns, argv=argv,
                   ready_port=host.ports[0] if host.ports else None,
                   opts=pulumi.ResourceOptions(parent=self, depends_on=list(ready_of[host.ns])))

        self.namespaces = pulumi.Output.from_input({short(ns.name): ns.name for ns in layout.namespaces})
        self.outputs = {
            "prefix": layout.prefix,
            "namespaces": self.namespaces,
            "hosts": [h.model_dump() for h in layout.hosts],
            "links": [link.model_dump(exclude_none=True) for link in layout.links],
            "routers": [{"ns": r.ns, "name": r.config.name, "asn": r.config.asn} for r in layout.routers],
            "flows": [{**f.model_dump(), "command": flow_command(f)} for f in layout.flows],
            "bgp_commands": [f"ip netns exec {r.ns} vtysh -N {r.config.name} -c 'show bgp summary'"
                             for r in layout.routers],
            "ca_cert_pem": self.ca.cert_pem,
        }
        self.register_outputs(self.outputs)
