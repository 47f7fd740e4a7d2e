"""Named groups of workloads inside one network: Azure application security groups, GCP network tags.

A rule names a group once (as an ASG or a tag) instead of listing its
addresses, so the rule count grows with groups, not with addresses (seed 002).
The workloads whose address is in `members` join the group. The naming rules
of every cloud live here, so a group's name is decided in one place.
"""
from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, collapse_addresses

from pydantic import BaseModel, ConfigDict


class Group(BaseModel):
    """A group (ASG or network tag) of one network and the addresses of the workloads in it."""

    model_config = ConfigDict(frozen=True)

    name: str
    network: str
    members: list[IPv4Network]


def asg_name(network: str, group: str) -> str:
    """An Azure ASG lives in one VNet's resource scope, so its name carries the network."""
    return f"asg-{network}-{group}"


def tag_name(network: str, group: str) -> str:
    """A GCP network tag is a label on instances; the VPC is implied by the instance, so the name does not repeat it."""
    return f"transit-{group}"


class GroupBook:
    """The groups a compile names, each recorded once per network with its members merged."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], Group] = {}

    def add(self, name: str, network: str, members: Iterable[IPv4Network]) -> str:
        """Record that `members` of `network` belong to group `name`; returns `name`."""
        known = self._groups.get((network, name))
        merged = list(collapse_addresses([*(known.members if known else []), *members]))
        self._groups[(network, name)] = Group(name=name, network=network, members=merged)
        return name

    def groups(self) -> list[Group]:
        """Every group recorded, in the order first named."""
        return list(self._groups.values())
