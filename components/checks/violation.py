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
    """A resource as a rule sees it: its type token, name and input properties."""

    type: str
    name: str
    props: dict[str, Any]
    urn: str = ""
