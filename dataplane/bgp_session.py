"""A connector's BGP session with its data-center router, and its ExaBGP config.

Pure. The connector announces the fabric's cloud CIDRs with itself as next hop
(seed 000), so the data center sends that traffic to the connector. Shared by
the local environment (components/local) and the image's boot step, which is
why it lives in the data plane.
"""
from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

ENVIRONMENT = {
    "exabgp.daemon.user": "root",
    "exabgp.daemon.daemonize": "false",
    "exabgp.log.destination": "stdout",
}
"""ExaBGP refuses to run as root unless told; it runs in the foreground under its supervisor."""


class Session(Protocol):
    """What the renderer reads: the local environment's layout and BgpSession both fit."""

    @property
    def local_ip(self) -> object: ...
    @property
    def local_asn(self) -> int: ...
    @property
    def peer_ip(self) -> object: ...
    @property
    def peer_asn(self) -> int: ...
    @property
    def announce(self) -> Sequence[object]: ...


class BgpSession(BaseModel):
    """The session a data-center connector keeps with the DC router (ExaBGP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    local_ip: IPv4Address = Field(description="This connector's address on the DC side; also the router id and next hop.")
    local_asn: int = Field(ge=1, le=4294967295, description="The fabric's ASN on this session.")
    peer_ip: IPv4Address = Field(description="The DC router's address.")
    peer_asn: int = Field(ge=1, le=4294967295, description="The DC router's ASN.")
    announce: list[IPv4Network] = Field(min_length=1, description="Cloud CIDRs announced with this connector as next hop.")


def render(session: Session, md5_key: str) -> str:
    """The config file; it holds the MD5 key, so it is only ever written as a secret file."""
    routes = "".join(f"        route {prefix} next-hop self;\n" for prefix in session.announce)
    return (
        f"neighbor {session.peer_ip} {{\n"
        f"    router-id {session.local_ip};\n"
        f"    local-address {session.local_ip};\n"
        f"    local-as {session.local_asn};\n"
        f"    peer-as {session.peer_asn};\n"
        f"    md5-password \"{md5_key}\";\n"
        f"    hold-time 9;\n"
        f"    family {{\n        ipv4 unicast;\n    }}\n"
        f"    static {{\n{routes}    }}\n"
        f"}}\n"
    )
