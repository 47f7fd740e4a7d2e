"""Render FRR 8.4 configs for the local routers (cloud router, circuit gateways, DC routers).

Pure: a `RouterConfig` in, frr.conf text out. MD5 keys are never in the text:
each neighbor's password is a `{{secret:<config key>}}` placeholder that the
FrrRouter provider fills from a Pulumi secret when it writes the file.
"""
from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

_PLACEHOLDER_RE = re.compile(r"\{\{secret:([A-Za-z0-9_.:-]+)\}\}")

BGP_TIMERS = (3, 9)
"""Keepalive and hold time in seconds: short, so a local fabric converges in seconds."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BgpNeighbor(_Model):
    """One eBGP session."""

    address: str = Field(description="Neighbor address on the shared link.")
    remote_asn: int = Field(description="Neighbor ASN.")
    description: str = Field(description="What the session is (circuit or site), shown by vtysh.")
    md5_secret: str | None = Field(default=None, description="Config key of the TCP MD5 key. Defaults to none.")


class StaticRoute(_Model):
    """A static route owned by FRR (so BGP can announce it with `network`)."""

    dst: str
    via: str


class RouterConfig(_Model):
    """One FRR instance: its BGP speaker, the prefixes it originates and its static routes."""

    name: str = Field(description="FRR pathspace name (`-N`), unique on the machine.")
    asn: int
    router_id: str
    neighbors: list[BgpNeighbor] = Field(default_factory=list)
    networks: list[str] = Field(default_factory=list, description="Prefixes originated with `network`.")
    static_routes: list[StaticRoute] = Field(default_factory=list)


def placeholder(secret_key: str) -> str:
    """The text that stands for a secret in a rendered config."""
    return "{{secret:%s}}" % secret_key


def secret_keys(text: str) -> list[str]:
    """The secret config keys a rendered config refers to, in order, without repeats."""
    return list(dict.fromkeys(_PLACEHOLDER_RE.findall(text)))


def fill_secrets(text: str, secrets: dict[str, str]) -> str:
    """Replace each placeholder with its value; a missing value is an error, never an empty key."""
    missing = [key for key in secret_keys(text) if key not in secrets]
    if missing:
        raise KeyError(f"no value for secret config key(s): {', '.join(missing)}")
    return _PLACEHOLDER_RE.sub(lambda m: secrets[m.group(1)], text)


def render(router: RouterConfig) -> str:
    """frr.conf for one instance: static routes, then one eBGP speaker."""
    keepalive, hold = BGP_TIMERS
    lines = [
        "frr version 8.4",
        "frr defaults traditional",
        f"hostname {router.name}",
        "no ipv6 forwarding",
        "service integrated-vtysh-config",
        "!",
    ]
    lines += [f"ip route {route.dst} {route.via}" for route in router.static_routes]
    lines += [
        "!",
        f"router bgp {router.asn}",
        f" bgp router-id {router.router_id}",
        " no bgp ebgp-requires-policy",
        " no bgp network import-check",
    ]
    for peer in router.neighbors:
        lines += [
            f" neighbor {peer.address} remote-as {peer.remote_asn}",
            f" neighbor {peer.address} description {peer.description}",
            f" neighbor {peer.address} timers {keepalive} {hold}",
            f" neighbor {peer.address} timers connect 2",
        ]
        if peer.md5_secret:
            lines.append(f" neighbor {peer.address} password {placeholder(peer.md5_secret)}")
    lines += [" !", " address-family ipv4 unicast"]
    lines += [f"  network {prefix}" for prefix in router.networks]
    lines += [" exit-address-family", "exit", "!", ""]
    return "\n".join(lines)
