"""The zero-trust filter policy: ordered permit/deny rules and their reference meaning.

This model is the contract between the fabric plan (which compiles segmentation
intent into it), the agent config, the nftables compiler (`filter_table`) and the
user-space checks the agent runs on intercepted streams. `FilterPolicy.evaluate`
is the reference semantics every enforcement point must agree with:

- rules are evaluated in list order and the first rule that matches decides;
- a packet no rule matches gets `default` (deny unless said otherwise);
- a rule matches when the source address is in one of `src`, the destination
  address is in one of `dst` (an empty list means any address), the protocol
  equals `proto` (`any` matches every protocol) and, for tcp/udp rules, the
  destination port is in one of the inclusive `ports` ranges (empty = all);
- `ports` is only allowed on tcp and udp rules: icmp has no ports, and `any`
  with ports would silently mean different things for different protocols.
"""
from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Action = Literal["permit", "deny"]
Proto = Literal["tcp", "udp", "icmp", "any"]

# IANA protocol numbers for the protocols a rule can name.
PROTO_NUMBERS: dict[str, int] = {"icmp": 1, "tcp": 6, "udp": 17}

# Rule names become nftables object names and Prometheus label values.
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")

# The name the default verdict is reported and counted under.
DEFAULT_RULE = "default"

# Up to this many rules a linear scan is as quick as a compiled lookup.
LINEAR_MAX_RULES = 32


class FilterRule(BaseModel):
    """One ordered permit or deny rule of the filter table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique rule name, used for counters and logs. Valid values: letters, digits, '_', '.', '-'; starts with a letter; at most 63 characters.")
    action: Action = Field(description="What a match does. Valid values: permit, deny.")
    src: list[IPv4Network] = Field(default_factory=list, description="Source networks. Defaults to [] (any source).")
    dst: list[IPv4Network] = Field(default_factory=list, description="Destination networks. Defaults to [] (any destination).")
    proto: Proto = Field(default="any", description="Protocol. Valid values: tcp, udp, icmp, any. Defaults to any.")
    ports: list[tuple[int, int]] = Field(default_factory=list, description="Inclusive destination port ranges (tcp/udp only). Defaults to [] (all ports).")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("must start with a letter and hold only letters, digits, '_', '.', '-' (at most 63 characters)")
        if value == DEFAULT_RULE:
            raise ValueError(f"'{DEFAULT_RULE}' is reserved for the default verdict")
        return value

    @field_validator("ports", mode="before")
    @classmethod
    def _single_ports(cls, value: object) -> object:
        """Accept a bare port (22) or a range ([8000, 8080]) for each entry."""
        if isinstance(value, list):
            return [(item, item) if isinstance(item, int) else item for item in value]
        return value

    @field_validator("ports")
    @classmethod
    def _check_ports(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for low, high in value:
            if not 0 <= low <= high <= 65535:
                raise ValueError(f"port range {low}-{high} must satisfy 0 <= low <= high <= 65535")
        return value

    @model_validator(mode="after")
    def _ports_need_tcp_or_udp(self) -> FilterRule:
        if self.ports and self.proto not in ("tcp", "udp"):
            raise ValueError(f"ports are only allowed with proto tcp or udp, not {self.proto}")
        return self

    def matches(self, src: IPv4Address, dst: IPv4Address, proto: int, port: int | None) -> bool:
        """True when this rule matches the packet (see the module docstring)."""
        if self.proto != "any" and PROTO_NUMBERS[self.proto] != proto:
            return False
        if self.src and not any(src in net for net in self.src):
            return False
        if self.dst and not any(dst in net for net in self.dst):
            return False
        if self.ports:
            if port is None:
                return False
            return any(low <= port <= high for low, high in self.ports)
        return True


class FilterPolicy(BaseModel):
    """An ordered list of rules with a default verdict; first match decides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Action = Field(default="deny", description="Verdict when no rule matches. Valid values: deny, permit. Defaults to deny.")
    rules: list[FilterRule] = Field(default_factory=list, description="Ordered rules; the first match decides. Defaults to [].")

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[FilterRule]) -> list[FilterRule]:
        seen: set[str] = set()
        for index, rule in enumerate(value):
            if rule.name in seen:
                raise ValueError(f"rules[{index}].name '{rule.name}' is used by an earlier rule")
            seen.add(rule.name)
        return value

    def evaluate(
        self,
        src_ip: str | IPv4Address,
        dst_ip: str | IPv4Address,
        proto: str | int,
        port: int | None = None,
    ) -> tuple[Action, str | None]:
        """Return (verdict, name of the deciding rule, or None for the default).

        Same answer as `evaluate_reference`; policies longer than
        `LINEAR_MAX_RULES` are answered from the compiled disjoint-box tree
        (built once per policy object, see `filter_compile.compiled_for`), so a
        per-stream check costs a few bisections with 10 or 10,000 rules.
        """
        if len(self.rules) <= LINEAR_MAX_RULES:
            return self.evaluate_reference(src_ip, dst_ip, proto, port)
        from dataplane.filter_compile import NO_MATCH, compiled_for

        index = compiled_for(self).lookup(src_ip, dst_ip, proto, port)
        if index == NO_MATCH:
            return self.default, None
        rule = self.rules[index]
        return rule.action, rule.name

    def evaluate_reference(
        self,
        src_ip: str | IPv4Address,
        dst_ip: str | IPv4Address,
        proto: str | int,
        port: int | None = None,
    ) -> tuple[Action, str | None]:
        """The reference semantics: a linear first-match scan, obviously correct.

        Tests check every compiled form against it.
        """
        src = IPv4Address(src_ip)
        dst = IPv4Address(dst_ip)
        number = proto_number(proto)
        for rule in self.rules:
            if rule.matches(src, dst, number, port):
                return rule.action, rule.name
        return self.default, None


def proto_number(proto: str | int) -> int:
    """Normalise a protocol name or number to its IANA number."""
    if isinstance(proto, int):
        if not 0 <= proto <= 255:
            raise ValueError(f"protocol number {proto} out of range 0-255")
        return proto
    try:
        return PROTO_NUMBERS[proto]
    except KeyError:
        raise ValueError(f"unknown protocol {proto!r}; use tcp, udp, icmp or a number") from None
