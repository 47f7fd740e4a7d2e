"""Value types of the fabric spec: problems, names, CIDRs, ASNs, ports.

Each annotated type validates one field on its own and says what to change,
so a bad value is reported next to its field path. Checks that need more than
one field live in `components.spec_checks`.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
"""RFC 1123 label that starts with a letter: usable in DNS, cloud resource names and Pulumi URNs."""

SECRET_KEY_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*:)?[A-Za-z][A-Za-z0-9_-]*$")
"""A Pulumi config key, optionally namespaced (`transit:fraDxMd5`)."""

ASN_MIN, ASN_MAX = 1, 4294967294
ASN_RESERVED = {23456: "AS_TRANS (RFC 6793)"}
VLAN_MIN, VLAN_MAX = 1, 4094
PORT_MIN, PORT_MAX = 1, 65535
RESERVED_NAMES = {"any"}


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a spec: where (field path) and what to change."""

    path: str
    message: str
    line: int | None = field(default=None, compare=False)
    """Line in the spec file, when known; not part of the problem's identity."""

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path}: {self.message}{where}"

    def at_line(self, line: int | None) -> Problem:
        return replace(self, line=line)


class SpecError(Exception):
    """A spec that is not valid; carries every problem found, not only the first.

    Deliberately not a ValueError, so that pydantic lets it through unchanged.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=lambda p: (_path_key(p.path), p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


def _path_key(path: str) -> tuple[Any, ...]:
    """Sort `circuits[10]` after `circuits[2]`."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[\[\].]+", path) if part)


def format_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """Write a pydantic location as `circuits[1].bgp.peering[0]`."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a bad dict key; the key itself is the path
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"'{value}' is not a DNS-safe name; use 1 to 63 lowercase letters, digits and "
            "hyphens, starting with a letter and not ending with a hyphen"
        )
    if value in RESERVED_NAMES:
        raise ValueError(f"'{value}' is reserved (it means every onboarded network); pick another name")
    return value


def parse_network(value: Any) -> ipaddress.IPv4Network:
    """Parse an IPv4 CIDR, refusing host bits with the corrected value in the message."""
    if isinstance(value, ipaddress.IPv4Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 CIDR string like 10.0.0.0/24, got {value!r}")
    if "/" not in value:
        raise ValueError(f"'{value}' has no prefix length; write it as a CIDR like {value}/32")
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.IPv4Network(value, strict=False)
        except ValueError:
            raise ValueError(f"'{value}' is not a valid IPv4 CIDR ({exc})") from None
        raise ValueError(f"'{value}' has host bits set; use {loose}") from None


def parse_address(value: Any) -> ipaddress.IPv4Address:
    """Parse one IPv4 address (no prefix)."""
    if isinstance(value, ipaddress.IPv4Address):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 address string like 192.0.2.1, got {value!r}")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a valid IPv4 address; write it like 192.0.2.1") from None


def _check_asn(value: int) -> int:
    if not ASN_MIN <= value <= ASN_MAX:
        raise ValueError(f"ASN {value} is out of range; use {ASN_MIN} to {ASN_MAX}")
    if value in ASN_RESERVED:
        raise ValueError(f"ASN {value} is reserved ({ASN_RESERVED[value]}); use another ASN")
    return value


def _check_vlan(value: int) -> int:
    if not VLAN_MIN <= value <= VLAN_MAX:
        raise ValueError(f"VLAN {value} is out of range; use {VLAN_MIN} to {VLAN_MAX}")
    return value


def _check_secret_key(value: str) -> str:
    if not SECRET_KEY_RE.match(value):
        raise ValueError(
            f"'{value}' is not a Pulumi config key name; name the secret config key "
            "(like fraDxMd5 or transit:fraDxMd5) that holds the value, never the value itself"
        )
    return value


def parse_port_range(value: Any) -> tuple[int, int]:
    """Parse a port (`5432`) or an inclusive range (`"8000-8080"`) into (lo, hi)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port; use an integer or a 'lo-hi' range")
    if isinstance(value, int):
        lo = hi = value
    elif isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
        lo = hi = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+-\d+", value.strip()):
        lo, hi = (int(x) for x in value.strip().split("-"))
    else:
        raise ValueError(f"{value!r} is not a port; use an integer like 443 or a range like '8000-8080'")
    for port in (lo, hi):
        if not PORT_MIN <= port <= PORT_MAX:
            raise ValueError(f"port {port} is out of range; use {PORT_MIN} to {PORT_MAX}")
    if lo > hi:
        raise ValueError(f"range '{value}' runs backwards; write it as '{hi}-{lo}'")
    return lo, hi


def _check_port_item(value: Any) -> int | str:
    parse_port_range(value)
    return value


Name = Annotated[str, AfterValidator(_check_name)]
Cidr = Annotated[ipaddress.IPv4Network, BeforeValidator(parse_network), PlainSerializer(str, return_type=str)]
Address = Annotated[ipaddress.IPv4Address, BeforeValidator(parse_address), PlainSerializer(str, return_type=str)]
Asn = Annotated[int, AfterValidator(_check_asn)]
Vlan = Annotated[int, AfterValidator(_check_vlan)]
SecretKeyName = Annotated[str, AfterValidator(_check_secret_key)]
PortItem = Annotated[int | str, BeforeValidator(_check_port_item)]
