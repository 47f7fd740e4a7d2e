"""AgentConfig: the contract between the Pulumi components and `transit-agent`.

The local environment (and the cloud user data) writes one JSON document per
connector or edge; the agent reads it at start and on SIGHUP. Every field has a
description because the docs (docs/dataplane.md) and the components rely on it.
A bad document is refused with the path of each bad field
(`peers[1].private_addr: ...`), never half-applied.

Routing model: an agent delivers streams whose destination lies in
`local_cidrs` itself (after the egress check) and relays every other stream to
the peer whose `cidrs` hold the destination. It intercepts TCP from
`local_cidrs` to any peer's `cidrs`.
"""
from __future__ import annotations

import json
import os
import re
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from dataplane.filter_model import FilterPolicy

# spiffe://<fabric>/<node>: the identity carried in certificate URI SANs.
_IDENTITY_RE = re.compile(r"^spiffe://[a-z0-9][a-z0-9.-]{0,62}/[A-Za-z0-9][A-Za-z0-9._/-]{0,190}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_identity(value: str) -> str:
    """Validate a spiffe://<fabric>/<node> identity."""
    if not _IDENTITY_RE.match(value):
        raise ValueError("must look like spiffe://<fabric>/<node> (lowercase fabric name, no query or fragment)")
    return value


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("must be lowercase letters, digits and '-' (at most 63 characters)")
    return value


NodeName = Annotated[str, AfterValidator(_check_name)]
"""A node name: the `<node>` of an identity, also used in file and interface names."""
Identity = Annotated[str, AfterValidator(check_identity)]
"""A spiffe://<fabric>/<node> URI, as certificates carry it."""


# Environment variables that override the file (ExaBGP style): name -> dotted field path.
ENV_OVERRIDES: dict[str, str] = {
    "TRANSIT_AGENT_LOG_LEVEL": "log_level",
    "TRANSIT_AGENT_FLOW_LOG": "flow_log",
}


class ConfigError(Exception):
    """A config document that cannot be used; `problems` are `path: message` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Model):
    """An address and port to listen on."""

    host: IPv4Address = Field(description="Address to bind. Defaults to 0.0.0.0 (all addresses).", default=IPv4Address("0.0.0.0"))
    port: int = Field(ge=1, le=65535, description="TCP or UDP port. Valid values: 1-65535.")


class ListenConfig(_Model):
    """Where the agent listens: tunnels from peers, path probes, metrics, interception."""

    tunnel: Endpoint = Field(default=Endpoint(port=7443), description="Mutual-TLS tunnel listener for peers. Defaults to 0.0.0.0:7443.")
    probe: Endpoint = Field(default=Endpoint(port=7444), description="UDP path-probe responder. Defaults to 0.0.0.0:7444.")
    metrics: Endpoint | None = Field(default=Endpoint(host=IPv4Address("127.0.0.1"), port=9464), description="HTTP /metrics and /healthz; null disables. Defaults to 127.0.0.1:9464.")
    intercept_port: int = Field(default=7440, ge=1, le=65535, description="Local port the TPROXY rule sends intercepted TCP to (bound on 127.0.0.1). Defaults to 7440.")


class PeerConfig(_Model):
    """Another agent this one opens tunnels to and accepts tunnels from."""

    name: NodeName = Field(description="Peer node name, unique in the config. Valid values: lowercase letters, digits, '-'.")
    identity: Identity = Field(description="URI SAN the peer's certificate must carry, e.g. spiffe://acme/edge-aws-use1.")
    private_addr: IPv4Address = Field(description="Peer address on the private path (backbone, circuit). Preferred.")
    public_addr: IPv4Address | None = Field(default=None, description="Peer address on the public path (internet); used when the private path fails. Defaults to none (private only).")
    tunnel_port: int = Field(default=7443, ge=1, le=65535, description="Peer's tunnel listener port. Defaults to 7443.")
    probe_port: int = Field(default=7444, ge=1, le=65535, description="Peer's UDP probe responder port. Defaults to 7444.")
    cidrs: list[IPv4Network] = Field(default_factory=list, description="Destinations reached through this peer (relayed or delivered by it). Defaults to [] (accept tunnels from it only).")


class TlsPaths(_Model):
    """Files holding the fabric CA, this node's certificate chain and its private key."""

    ca: Path = Field(description="PEM fabric CA certificate(s) that peer certificates must chain to.")
    cert: Path = Field(description="PEM certificate of this node (URI SAN = `identity`), optionally followed by intermediates.")
    key: Path = Field(description="PEM private key of this node; mode 0600, never logged.")


class Member(_Model):
    """A fabric node and the prefixes it speaks for: the sources it may claim and the destinations it delivers."""

    identity: Identity = Field(description="The node's URI identity, spiffe://<fabric>/<node>.")
    cidrs: list[IPv4Network] = Field(default_factory=list, description="Prefixes the node speaks for: a connector its network's CIDRs, an edge its native networks, an on-prem connector the prefixes its DC router announces. Defaults to [] (it may relay, never originate or deliver).")


def _check_serial(value: str) -> str:
    digits = value.replace(":", "")
    if not digits or len(digits) > 40 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError("must be a certificate serial in hex (up to 20 bytes, colons allowed), e.g. 4F:1A:09 or 4f1a09")
    return digits.upper().lstrip("0") or "0"


Serial = Annotated[str, AfterValidator(_check_serial)]
"""A certificate serial number in hex, normalised to upper case without colons or leading zeros."""


class Denylist(_Model):
    """Revoked certificates: refused at every handshake, whichever side dials."""

    identities: list[Identity] = Field(default_factory=list, description="URI identities whose certificates are refused. Defaults to [].")
    serials: list[Serial] = Field(default_factory=list, description="Certificate serial numbers (hex, colons allowed) refused whatever identity they carry. Defaults to [].")


class Timeouts(_Model):
    """Timers, in seconds."""

    idle: float = Field(default=300.0, gt=0, description="Close a stream with no bytes in either direction for this long; warm tunnels to a peer close after this long unused. Defaults to 300.")
    connect: float = Field(default=3.0, gt=0, description="TCP connect to a peer or to the final destination. Defaults to 3.")
    handshake: float = Field(default=3.0, gt=0, description="TLS handshake plus stream header exchange. Defaults to 3.")
    drain: float = Field(default=5.0, ge=0, description="On SIGTERM, wait this long for open streams before resetting them. Defaults to 5.")
    park: float = Field(default=1.0, ge=0, description="A stream quiet this long gives up its thread and waits in the shared parking thread until bytes arrive (memory per idle flow); 0 disables. Defaults to 1.")
    datagram_idle: float = Field(default=30.0, gt=0, le=3600, description="End a UDP or ICMP echo flow (its session and tunnel stream) after this long without a datagram either way; the next datagram opens a new one. Valid values: more than 0, at most 3600. Defaults to 30.")
    keepalive: float = Field(default=15.0, ge=1, le=3600, description="TCP keepalive on tunnel connections: first probe after this many idle seconds, then every third of it, 3 probes. Defaults to 15.")
    user_timeout: float = Field(default=30.0, ge=1, le=3600, description="TCP_USER_TIMEOUT on tunnel connections: a tunnel whose sent bytes stay unacknowledged this long is dropped (a dead peer or path is noticed without waiting for TCP's minutes of retries). Defaults to 30.")
    metrics_request: float = Field(default=2.0, gt=0, le=60, description="Whole-request deadline on the /metrics and /healthz endpoint: a client that has not sent its request and read the answer by then is cut off. Defaults to 2.")


class LimitSettings(_Model):
    """Caps on what outsiders can make the agent hold; past a cap a new connection is reset at once and counted (`transit_refused_total`)."""

    streams: int = Field(default=16384, ge=1, le=1_000_000, description="Streams in flight (TCP, UDP, ICMP echo; active or parked) plus connections still being set up, all listeners together. Defaults to 16384.")
    streams_per_peer: int = Field(default=8192, ge=1, le=1_000_000, description="Streams in flight from or to one peer (by its authenticated name). Defaults to 8192.")
    handshakes: int = Field(default=512, ge=1, le=16384, description="Connections being set up at once (TLS handshake and stream header on the tunnel port, the tunnel dial for an intercepted connection); each holds a thread until its deadline. Defaults to 512.")
    handshakes_per_source: int = Field(default=16, ge=1, le=16384, description="Connections being set up at once on the tunnel port from one source address that is not a configured peer's. Defaults to 16.")
    datagram_sessions: int = Field(default=4096, ge=1, le=65536, description="Intercepted UDP (and, separately, ICMP echo) sessions at once. Defaults to 4096.")
    datagram_sessions_per_source: int = Field(default=2048, ge=1, le=65536, description="Intercepted UDP (or ICMP echo) sessions at once from one client address. Half the overall cap, so one client can never hold every session; defaults to 2048.")
    metrics_connections: int = Field(default=8, ge=1, le=256, description="Connections the /metrics and /healthz endpoint serves at once; more are closed at once. Defaults to 8.")


class PathSettings(_Model):
    """Probe timing for the private/public path choice (see dataplane/paths.py)."""

    probe_interval: float = Field(default=0.1, gt=0, le=10, description="Seconds between probes on each path. Defaults to 0.1.")
    failover_misses: int = Field(default=3, ge=1, le=100, description="Consecutive missed probes that mark the private path down. Defaults to 3 (failover in about 0.3-0.5 s).")
    failback_hold: float = Field(default=3.0, ge=0, description="Seconds the private path must stay healthy before traffic moves back. Defaults to 3.")


class InterceptSettings(_Model):
    """Kernel objects for transparent interception (nftables TPROXY + policy routing)."""

    fwmark: int = Field(default=0x4D43, ge=1, le=0xFFFFFFFF, description="Packet mark that sends intercepted packets to the local route table. Defaults to 0x4d43.")
    route_table: int = Field(default=4643, ge=1, le=0xFFFFFFF0, description="Policy routing table holding `local 0.0.0.0/0 dev lo`. Defaults to 4643.")
    rule_priority: int = Field(default=4643, ge=1, le=32765, description="`ip rule` priority of the fwmark rule. Defaults to 4643.")
    nft_table: str = Field(default="transit_intercept", pattern=r"^[a-z][a-z0-9_]{0,30}$", description="nftables table (family ip) the agent owns for interception. Defaults to transit_intercept.")
    icmp_tun: str = Field(default="transit-icmp", pattern=r"^[a-z][a-z0-9-]{0,14}$", description="TUN device the agent creates to take intercepted ICMP echo requests (at most 15 characters). Defaults to transit-icmp.")
    icmp_route_table: int = Field(default=4644, ge=1, le=0xFFFFFFF0, description="Policy routing table whose default route is the ICMP TUN. Defaults to 4644.")
    icmp_rule_priority: int = Field(default=4644, ge=1, le=32765, description="`ip rule` priority of the rules sending ICMP from local to remote CIDRs into that table. Defaults to 4644.")

    @model_validator(mode="after")
    def _check_tables(self) -> InterceptSettings:
        if self.icmp_route_table == self.route_table:
            raise ValueError("icmp_route_table must differ from route_table")
        return self


class GeneveNetwork(_Model):
    """Application CIDRs whose traffic reaches this node through a Gateway Load Balancer, and how replies are drawn back."""

    cidrs: list[IPv4Network] = Field(min_length=1, description="Workload CIDRs behind the load balancer (each inside `local_cidrs`).")
    deliver_from: Literal["node", "client"] = Field(default="node", description=(
        "Source address of streams this node delivers into these CIDRs. node: this VM's own address, so the workload's "
        "replies come straight back to this VM whatever the load balancer would hash them to (the flow log keeps the real "
        "client). client: the original client's address (`preserve_source`), correct only while one target serves the "
        "network, since the load balancer may hash the replies to another target. Valid values: node, client. Defaults to node."))


class GeneveSettings(_Model):
    """The AWS Gateway Load Balancer's GENEVE on this node (see docs/aws.md)."""

    listen: Endpoint = Field(default=Endpoint(port=6081), description="Where the load balancer sends GENEVE: UDP 6081 on this VM's address. Defaults to 0.0.0.0:6081 (every VM of an autoscaling group shares one document; replies leave from the address the load balancer sent to).")
    gwlb_cidrs: list[IPv4Network] = Field(min_length=1, description="Where GENEVE may come from: the load balancer's subnets. Anything else is dropped and counted.")
    networks: list[GeneveNetwork] = Field(min_length=1, description="The workload networks behind the load balancer.")
    tun: str = Field(default="transit-gnv", pattern=r"^[a-z][a-z0-9-]{0,14}$", description="TUN device inner packets enter the kernel through (at most 15 characters). Defaults to transit-gnv.")
    mtu: int = Field(default=8500, ge=576, le=8500, description="MTU of that TUN: the largest inner packet. The Gateway Load Balancer carries 8,500 bytes (plus 68 of GENEVE); the VM's interface needs 8,568 or more. Valid values: 576-8500. Defaults to 8500.")
    fwmark: int = Field(default=0x4D45, ge=1, le=0xFFFFFFFF, description="Conntrack and packet mark that routes a GENEVE flow's replies into the TUN. Defaults to 0x4d45.")
    route_table: int = Field(default=4645, ge=1, le=0xFFFFFFF0, description="Policy routing table whose default route is the TUN. Defaults to 4645.")
    rule_priority: int = Field(default=4642, ge=1, le=32765, description="`ip rule` priority of the fwmark rule for that table (before the interception rules). Defaults to 4642.")
    nft_table: str = Field(default="transit_geneve", pattern=r"^[a-z][a-z0-9_]{0,30}$", description="nftables table (family ip) that marks GENEVE flows and keeps anything else from being routed out of or into the TUN. Defaults to transit_geneve.")
    flow_limit: int = Field(default=65536, ge=16, le=1_048_576, description="Flows remembered at once (about 200 bytes each); past that the user-space path drops and counts a new flow until one ages out, and the eBPF path forgets its least recently used flow. Valid values: 16-1048576. Defaults to 65536.")
    flow_idle: float = Field(default=350.0, gt=0, le=3600, description="Forget a flow after this long without a packet either way (the load balancer's own TCP idle timeout is 350 s). Defaults to 350.")
    datapath: Literal["auto", "ebpf", "user"] = Field(default="auto", description=(
        "Who moves the packets. ebpf: the kernel (a tc program decapsulates and wraps replies; what it does not understand "
        "goes to the user-space worker), and the agent fails to start when it cannot load it. user: the user-space worker "
        "alone. auto: ebpf when it loads, else user, with a log line and a metric. Valid values: auto, ebpf, user. Defaults to auto."))

    def network_for(self, address: IPv4Address) -> GeneveNetwork | None:
        """The network behind the load balancer that holds `address`, if any."""
        for network in self.networks:
            if any(address in cidr for cidr in network.cidrs):
                return network
        return None


class AgentConfig(_Model):
    """Everything one `transit-agent` needs; one document per connector or edge VM."""

    name: NodeName = Field(description="This node's name (the `<node>` of its identity). Valid values: lowercase letters, digits, '-'.")
    role: Literal["connector", "edge"] = Field(description="What the node is. Valid values: connector, edge.")
    identity: Identity = Field(description="This node's URI identity, spiffe://<fabric>/<node>; must equal the certificate's URI SAN.")
    listen: ListenConfig = Field(default=ListenConfig(), description="Listening endpoints. Defaults to the ListenConfig defaults.")
    local_cidrs: list[IPv4Network] = Field(default_factory=list, description="Application networks this node delivers to and intercepts from. Defaults to [].")
    peers: list[PeerConfig] = Field(default_factory=list, description="Agents this one talks to. Defaults to [].")
    filter: FilterPolicy = Field(default=FilterPolicy(), description="Zero-trust policy, checked at ingress (interception) and egress (delivery). Defaults to deny all.")
    tls: TlsPaths = Field(description="CA, certificate and key files.")
    timeouts: Timeouts = Field(default=Timeouts(), description="Timers. Defaults to the Timeouts defaults.")
    limits: LimitSettings = Field(default=LimitSettings(), description="Resource caps. Defaults to the LimitSettings defaults.")
    state_dir: Path = Field(default=Path("/run/transit-agent"), description="Directory for state that must survive a crash or SIGKILL but not a reboot: the sysctl values from before the agent first changed them and the kernel objects it owns, one file per network namespace and node. Defaults to /run/transit-agent.")
    paths: PathSettings = Field(default=PathSettings(), description="Path probing and failover. Defaults to the PathSettings defaults.")
    intercept: InterceptSettings = Field(default=InterceptSettings(), description="Interception kernel objects. Defaults to the InterceptSettings defaults.")
    filter_table: str = Field(default="transit_filter", pattern=r"^[a-z][a-z0-9_]{0,30}$", description="nftables table the filter policy is compiled into. Defaults to transit_filter.")
    preserve_source: bool = Field(default=True, description="Deliver streams from the original source address (transparent bind) so servers see the real client. Defaults to true.")
    end_to_end: bool = Field(default=True, description="As an ingress, run each stream's TLS session with the delivering agent itself: relay edges splice the encrypted bytes in the kernel instead of decrypting and re-encrypting them (half the crypto, relays never see plaintext, one more round trip before the first byte). The ingress pins that session to the member whose prefixes hold the destination; the delivering agent accepts a non-peer fabric identity for such streams only if the header names that same identity, its source lies in that member's prefixes and the destination is its own. Every agent refuses headers of the other mode. false: hop-by-hop TLS, each edge decrypts and re-encrypts. Defaults to true.")
    members: list[Member] = Field(default_factory=list, description="The fabric nodes this agent must judge or pin to, with the prefixes each speaks for (the plan gives each agent its share: the members whose prefixes a permit rule lets exchange traffic with what it serves or relays, and itself). A stream is delivered only if its header's identity is a member whose prefixes hold its source, and the end-to-end session to a destination is pinned to the member whose prefixes hold it. Defaults to [] (nothing is delivered and no end-to-end session can be opened).")
    denylist: Denylist = Field(default=Denylist(), description="Revoked identities and certificate serials, refused at every handshake; re-read on reload. Defaults to none.")
    warm_tunnels: int = Field(default=2, ge=0, le=64, description="Ready TLS connections kept per peer while it is in use, so new streams skip the handshake. Defaults to 2.")
    flow_log: Path | None = Field(default=None, description="JSON-lines flow log file, one line per closed stream. Defaults to none.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level. Valid values: debug, info, warning, error. Defaults to info.")
    geneve: GeneveSettings | None = Field(default=None, description="GENEVE from an AWS Gateway Load Balancer, for connectors and edges behind one. Defaults to none.")

    @model_validator(mode="after")
    def _check_peers(self) -> AgentConfig:
        names: set[str] = set()
        owner: dict[IPv4Network, str] = {}
        for index, peer in enumerate(self.peers):
            if peer.name in names:
                raise ValueError(f"peers[{index}].name '{peer.name}' is used by an earlier peer")
            names.add(peer.name)
            if peer.identity == self.identity:
                raise ValueError(f"peers[{index}].identity is this node's own identity")
            for cidr in peer.cidrs:
                for local in self.local_cidrs:
                    if cidr.overlaps(local):
                        raise ValueError(f"peers[{index}].cidrs {cidr} overlaps local_cidrs {local}")
                for other, other_name in owner.items():
                    if cidr.overlaps(other):
                        raise ValueError(f"peers[{index}].cidrs {cidr} overlaps {other} of peer '{other_name}'")
                owner[cidr] = peer.name
        self._check_members()
        if self.identity in self.denylist.identities:
            raise ValueError(f"denylist.identities[{self.denylist.identities.index(self.identity)}]: this node's own identity cannot be denied (replace its certificate instead)")
        return self

    def _check_members(self) -> None:
        """Members are unique and own disjoint prefixes, and this node's entry holds its local_cidrs."""
        seen: dict[str, int] = {}
        for index, member in enumerate(self.members):
            if member.identity in seen:
                raise ValueError(f"members[{index}].identity: {member.identity} is listed by members[{seen[member.identity]}] already")
            seen[member.identity] = index
        # Prefixes nest or are disjoint, so after sorting by first address any overlap shows between neighbours:
        # n log n, where comparing every pair made each config cost members squared (bench.aws_scale).
        owned = sorted((cidr.network_address, -cidr.prefixlen, index, cidr) for index, m in enumerate(self.members) for cidr in m.cidrs)
        for (_, _, a_index, a), (_, _, b_index, b) in zip(owned, owned[1:]):
            if a.overlaps(b):
                (index, cidr), (other_index, other) = sorted([(a_index, a), (b_index, b)], key=lambda x: x[0], reverse=True)
                raise ValueError(f"members[{index}].cidrs: {cidr} overlaps {other} of members[{other_index}] (each prefix has one owner)")
        if not self.members:
            return
        own = self.members[seen[self.identity]].cidrs if self.identity in seen else []
        for cidr in self.local_cidrs:
            if not any(cidr.subnet_of(mine) for mine in own):
                raise ValueError(f"members: local_cidrs {cidr} is not among this node's prefixes; add it to the entry of {self.identity}")

    @model_validator(mode="after")
    def _check_geneve(self) -> AgentConfig:
        geneve = self.geneve
        if geneve is None:
            return self
        for index, network in enumerate(geneve.networks):
            for position, cidr in enumerate(network.cidrs):
                if not any(cidr.subnet_of(local) for local in self.local_cidrs):
                    raise ValueError(f"geneve.networks[{index}].cidrs[{position}] {cidr} is not inside local_cidrs: add it there, GENEVE delivers into the node's own networks")
        if geneve.route_table in (self.intercept.route_table, self.intercept.icmp_route_table):
            raise ValueError(f"geneve.route_table {geneve.route_table} is already used by intercept: pick another table")
        if geneve.fwmark == self.intercept.fwmark:
            raise ValueError(f"geneve.fwmark 0x{geneve.fwmark:x} equals intercept.fwmark: pick another mark")
        if geneve.tun == self.intercept.icmp_tun:
            raise ValueError(f"geneve.tun {geneve.tun} is intercept.icmp_tun: pick another name")
        return self

    def preserve_source_for(self, destination: IPv4Address) -> bool:
        """Deliver to `destination` from the original client's address? (`preserve_source`, and `geneve.networks[].deliver_from`)."""
        if not self.preserve_source:
            return False
        network = self.geneve.network_for(destination) if self.geneve else None
        return network is None or network.deliver_from == "client"

    def peer(self, name: str) -> PeerConfig:
        """The peer called `name` (KeyError if none)."""
        for peer in self.peers:
            if peer.name == name:
                return peer
        raise KeyError(name)

    def remote_cidrs(self) -> list[IPv4Network]:
        """Every destination reachable through a peer: what interception captures."""
        return [cidr for peer in self.peers for cidr in peer.cidrs]




def _path(loc: tuple[object, ...]) -> str:
    """Render a pydantic error location as `peers[1].private_addr`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def validation_problems(exc: ValidationError) -> list[str]:
    """A pydantic error as `path: message` lines (the shape ConfigError carries)."""
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        # Checks across fields are raised at the root and name their own field path.
        problems.append(f"{_path(error['loc'])}: {message}" if error["loc"] else message)
    return problems


def parse_config(data: object) -> AgentConfig:
    """Validate a decoded document; raise ConfigError listing every bad field."""
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc)) from None


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> AgentConfig:
    """Read a JSON config file, apply environment overrides, validate it."""
    env = os.environ if environ is None else environ
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {path}: {exc.strerror}"]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([f"(file): not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(["(root): must be a JSON object"])
    for variable, field in ENV_OVERRIDES.items():
        if variable in env:
            data[field] = env[variable]
    return parse_config(data)
