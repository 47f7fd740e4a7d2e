"""What a rule reports: the rule's name, where (field path or resource), and what must hold."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["advisory", "mandatory", "disabled"]


@dataclass(frozen=True)
class Violation:
    """One broken rule at one place; `path` is a spec field path or a resource's property path."""

    rule: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class Resource:
    """A resource as a rule sees it: its type, name and input properties.

    `type` is the short form rules compare against (`aws:ec2/securityGroup`):
    the engine's full token (`aws:ec2/securityGroup:SecurityGroup`) is
    shortened on construction, while tokens whose module part names no
    resource (`azure-native:network:NetworkSecurityGroup`,
    `transit:index:Fabric`) stay whole.
    """

    type: str
    name: str
    props: dict[str, Any]
    urn: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", short_type(self.type))


def short_type(token: str) -> str:
    """`aws:ec2/vpc:Vpc` -> `aws:ec2/vpc`; tokens without a `module/resource` part are kept."""
    parts = token.split(":")
    if len(parts) == 3 and "/" in parts[1] and parts[1].rsplit("/", 1)[1].lower() == parts[2].lower():
        return f"{parts[0]}:{parts[1]}"
    return token
