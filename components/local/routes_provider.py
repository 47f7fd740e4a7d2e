"""Routes: the static routes of one namespace (the VPC route table of a local node).

Kept apart from links because a route needs the link toward its next hop to
exist first; Pulumi orders that through `depends_on`.
"""
from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource

from components.local import sh
from components.local.provider_base import LocalProvider


def installed_routes(ns: str) -> set[tuple[str, str]]:
    """(dst, via) pairs of the main table of `ns`."""
    out = sh.ip(ns, "-j", "route", "show", "table", "main", check=False).stdout or "[]"
    routes = set()
    for route in json.loads(out):
        dst = route.get("dst", "")
        dst = "0.0.0.0/0" if dst == "default" else dst if "/" in dst else f"{dst}/32"
        if "gateway" in route:
            routes.add((dst, route["gateway"]))
    return routes


class RoutesProvider(LocalProvider):
    """Installs `routes` ([{dst, via}]) in `ns` with `ip route replace`; id is `ns/routes`."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        ns = props["ns"]
        for route in props["routes"]:
            sh.ip(ns, "route", "replace", route["dst"], "via", route["via"])
        return CreateResult(id_=f"{ns}/routes", outs=dict(props))

    def alive(self, id_: str, outs: dict[str, Any]) -> bool:
        if not sh.netns_exists(outs["ns"]):
            return False
        wanted = {(r["dst"], r["via"]) for r in outs["routes"]}
        return wanted <= installed_routes(outs["ns"])

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not self.alive(id_, props):
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        ns = props["ns"]
        if not sh.netns_exists(ns):
            return
        for route in props["routes"]:
            sh.ip(ns, "route", "del", route["dst"], "via", route["via"], check=False)


class Routes(Resource, module="local", name="Routes"):
    """Static routes [{dst, via}] in namespace `ns`."""

    def __init__(self, resource_name: str, *, ns: Any, routes: list[dict[str, str]],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(RoutesProvider(), resource_name, {"ns": ns, "routes": routes}, opts)
