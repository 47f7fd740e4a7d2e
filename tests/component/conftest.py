"""Pulumi mocks for the component tests, set before any code under test is imported.

`Recorder` is the mock monitor: besides answering, it records every
registration (type, name, parent URN, inputs with secrets still marked), so
tests assert the resource graph itself: names, types, parents, wiring.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

PROJECT, STACK = "transit", "test"


class FakeCloud(pulumi.runtime.Mocks):
    """Ids are `<name>-id`; computed outputs are faked per resource type."""

    COMPUTED: dict[str, Callable[[str], dict[str, Any]]] = {
        "aws:ec2/eip:Eip": lambda n: {"publicIp": f"203.0.113.{sum(map(ord, n)) % 250 + 1}", "allocationId": f"{n}-alloc"},
        "aws:ec2/vpcEndpointService:VpcEndpointService": lambda n: {"serviceName": f"com.amazonaws.vpce.mock.{n}"},
        "aws:lb/loadBalancer:LoadBalancer": lambda n: {"dnsName": f"{n}.elb.mock"},
        "aws:ec2/launchTemplate:LaunchTemplate": lambda n: {"latestVersion": 3},
        "aws:directconnect/connectionConfirmation:ConnectionConfirmation": lambda n: {},
        # A hosted connection read back (Connection.get): the partner's VLAN.
        "aws:directconnect/connection:Connection": lambda n: {"vlanId": FakeCloud.HOSTED_VLAN},
    }
    HOSTED_VLAN = 101
    """The VLAN the partner set on every hosted connection (the example fabrics' circuits use 101)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = {**args.inputs, "arn": f"arn:aws:mock::123456789012:{args.name}"}
        outputs.update(self.COMPUTED.get(args.typ, lambda n: {})(args.name))
        return (f"{args.name}-id" if args.custom else "", outputs)

    ZONE_LETTERS = "abc"
    """Zones every mocked region has, as region + letter (a test may give a region other names)."""

    CALLS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "aws:index/getAvailabilityZones:getAvailabilityZones": lambda a: {
            "names": [f"{a['region']}{letter}" for letter in FakeCloud.ZONE_LETTERS], "id": a["region"],
        },
        "aws:index/getCallerIdentity:getCallerIdentity": lambda a: {
            "accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/ci", "userId": "AIDA", "id": "123456789012",
        },
    }

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return self.CALLS.get(args.token, lambda a: {})(dict(args.args))


@dataclass
class Registration:
    """One registered resource as the engine saw it."""

    urn: str
    type: str
    name: str
    parent: str
    inputs: dict[str, Any]
    custom: bool
    provider: str
    dependencies: list[str]
    """URNs it waits for: `depends_on` and the resources whose outputs its inputs use."""


class Recorder(MockMonitor):
    """A mock monitor that keeps every registration for graph assertions."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = rpc.deserialize_properties(request.object)
            self.registrations.append(
                Registration(
                    response.urn, request.type, request.name, request.parent, inputs, bool(request.custom), request.provider,
                    list(request.dependencies),
                )
            )
        return response


RECORDER = Recorder(FakeCloud())


def _set_mocks() -> None:
    pulumi.runtime.set_mocks(FakeCloud(), project=PROJECT, stack=STACK, preview=False, monitor=RECORDER)


_set_mocks()


def _settle() -> None:
    """After a failed program: let its pending registrations finish and start a fresh runtime, so nothing
    of it leaks into the next test's graph (its registrations stay readable until the next build)."""
    loop = asyncio.get_event_loop()
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    _set_mocks()


class Graph:
    """The registrations of one build, with lookups by name and type."""

    def __init__(self, registrations: list[Registration], values: dict[str, Any]) -> None:
        self.all = registrations
        self.values = values
        self.by_name = {r.name: r for r in registrations}
        self.by_urn = {r.urn: r for r in registrations}
        assert len(self.by_name) == len(registrations), "two resources share a name"

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.all if r.type == type_]

    def waits_for(self, name: str, other: str) -> bool:
        """Whether `name` is created only after `other` (an explicit dependency, not just a parent)."""
        return self.by_name[other].urn in self.by_name[name].dependencies

    def parent_of(self, name: str) -> Registration | None:
        parent = self.by_name[name].parent
        return self.by_urn.get(parent)


def build_graph(build: Callable[[], dict[str, Any]]) -> Graph:
    """Run `build` in a mocked Pulumi program; return every registration and the resolved outputs it asked for."""
    RECORDER.registrations.clear()
    values: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        wanted = build()
        return pulumi.Output.all(**wanted).apply(values.update) if wanted else None

    try:
        program()
    except BaseException:
        _settle()
        raise
    return Graph(list(RECORDER.registrations), values)
