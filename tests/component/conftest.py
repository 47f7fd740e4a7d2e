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

from testbed.fake_cloud import FakeCloud

PROJECT, STACK = "transit", "test"


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

    def in_plain(self, secret: Callable[[str], bool]) -> list[str]:
        """The resources whose inputs hold, outside a Pulumi secret, a string for which `secret` is true."""

        def plain(value: Any) -> bool:
            if rpc.is_rpc_secret(value):
                return False
            if isinstance(value, dict):
                return any(plain(v) for v in value.values())
            if isinstance(value, list):
                return any(plain(v) for v in value)
            return isinstance(value, str) and secret(value)

        return [r.name for r in self.all if plain(r.inputs)]


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
