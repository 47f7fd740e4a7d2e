"""Fake CrossGuard arguments (as pulumi-policy's own tests build them) and a runner."""
from __future__ import annotations

import asyncio
import inspect
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from components.checks.crossguard import policies


def options() -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[])


def resource_args(type_: str, props: dict[str, Any], name: str = "r", config: dict[str, Any] | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(type_, props, f"urn:pulumi:t::p::{type_}::{name}", name, options(), None, config or {})


def stack_args(resources: list[tuple[str, str, dict[str, Any]]], config: dict[str, Any] | None = None) -> StackValidationArgs:
    return StackValidationArgs(
        [PolicyResource(t, p, f"urn:pulumi:t::p::{t}::{n}", n, options(), None, None, [], {}) for t, n, p in resources],
        config or {},
    )


def violations(policy_name: str, args: ResourceValidationArgs | StackValidationArgs) -> list[str]:
    """Messages the named policy of the pack reports for `args`."""
    [policy] = [p for p in policies() if p.name == policy_name]
    out: list[str] = []
    result = policy.validate(args, lambda message, urn=None: out.append(message))
    if inspect.isawaitable(result):
        asyncio.new_event_loop().run_until_complete(result)
    return out
