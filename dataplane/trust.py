"""Who may say what: a stream header's claims judged against the identity that authenticated it.

The fabric CA vouches for an identity; `AgentConfig.members` binds each
identity to the prefixes it speaks for (a connector its network's CIDRs, an
edge its native networks). Every agent that reads a stream header (relay or
delivery) refuses it when:

- its flags contradict this agent's mode (a hop-by-hop header at an
  end-to-end agent, or the reverse);
- its identity is not the authenticated one, unless a hop-by-hop relay peer
  forwards it and the source lies behind that peer (`peers[].cidrs`): only
  a relay that decrypts may carry another node's header;
- its source lies outside the prefixes of the identity it names.

And an ingress pins the end-to-end session of a stream to the member whose
prefixes hold the destination (`Trust.deliverer`). docs/security.md has the
threat model these rules implement. Pure: no sockets, one prefix walk per
stream set-up, nothing per byte.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from dataplane.config import AgentConfig, PeerConfig
from dataplane.header import StreamHeader


def _mode(end_to_end: bool) -> str:
    return "end-to-end" if end_to_end else "hop-by-hop"


@dataclass(frozen=True)
class Trust:
    """The prefixes each fabric identity speaks for, and the mode this agent runs (built once per (re)load)."""

    prefixes: dict[str, tuple[IPv4Network, ...]]
    owners: tuple[tuple[IPv4Network, str], ...]  # every member prefix, most specific first
    end_to_end: bool

    @classmethod
    def from_config(cls, config: AgentConfig) -> Trust:
        """The trust rules `config` states."""
        prefixes = {member.identity: tuple(member.cidrs) for member in config.members}
        owners = sorted(((cidr, identity) for identity, cidrs in prefixes.items() for cidr in cidrs), key=lambda item: -item[0].prefixlen)
        return cls(prefixes=prefixes, owners=tuple(owners), end_to_end=config.end_to_end)

    def speaks_for(self, identity: str, address: IPv4Address) -> bool:
        """May `identity` claim `address` as a source?"""
        return any(address in cidr for cidr in self.prefixes.get(identity, ()))

    def deliverer(self, dst: IPv4Address) -> str | None:
        """The identity that delivers `dst` (its prefixes hold it), or None when no member does."""
        for cidr, identity in self.owners:
            if dst in cidr:
                return identity
        return None

    def refusal(self, header: StreamHeader, authenticated: str, via: PeerConfig | None, *, check_mode: bool = True) -> str | None:
        """Why this agent must refuse the stream, or None to go on.

        `authenticated` is the identity of the TLS session that carried the
        header here; `via` is the peer holding that identity (None when the
        sender is no peer of this agent). `check_mode` False skips the mode
        check (a reload judging streams that started under the old mode).
        """
        if check_mode and header.end_to_end != self.end_to_end:
            return f"a {_mode(header.end_to_end)} header at a {_mode(self.end_to_end)} agent"
        if header.identity != authenticated:
            if header.end_to_end or via is None:
                return f"header identity {header.identity} is not the authenticated {authenticated}"
            if not any(header.src in cidr for cidr in via.cidrs):
                return f"source {header.src} is not behind relay {via.name}"
        if not self.speaks_for(header.identity, header.src):
            return f"source {header.src} is outside the prefixes of {header.identity}"
        return None
