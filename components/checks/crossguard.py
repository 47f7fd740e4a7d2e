"""The rules as CrossGuard policies: what `policies/__main__.py` puts in the pack.

Kept importable (the pack's `__main__` starts a gRPC server on import), so tests
call these validators with fake args. Each rule becomes one policy named like
the rule, so one policy config file (`policies/config/<env>.json`) sets levels
and options for `transit check` and for the pack alike. A policy looks at:

- raw cloud resources (security groups, NSGs, firewall rules, circuits, VMs);
- any `transit:*` component whose inputs carry the fabric spec under `spec`
  (the spec rules then run on it, with its plan);
- any resource whose `files` carry an `agent.json` (the local environment's
  agents): the rules run on the filter that agent will enforce.

Rules that also count resources across the stack (circuits, VPC ranges) get a
second, stack policy named `<rule>-in-stack`: a stack policy sees outputs,
not inputs, so the carried spec is read by the resource policy.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from components.checks.config import STACK_SUFFIX
from components.checks.rules import RULES, Context, Options, RuleDef
from components.checks.violation import Resource, Violation
from components.plan import build_plan
from components.spec import validate_spec
from components.spec_types import SpecError
from dataplane.config import AgentConfig

SPEC_PROP = "spec"
AGENT_FILE = "agent.json"
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def plain(value: Any) -> Any:
    """Policy props are read-only proxies with every number a float (protobuf Struct);
    copy them into dicts and lists, and whole floats back into ints."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def config_schema(rule: RuleDef) -> PolicyConfigSchema | None:
    """A JSON-schema config per rule, with the rule's defaults."""
    if not rule.options:
        return None
    return PolicyConfigSchema(
        properties={name: {"type": _JSON_TYPES[type(default)], "default": default} for name, default in rule.options.items()}
    )


def options_of(rule: RuleDef, config: Mapping[str, Any]) -> Options:
    """The rule's defaults overlaid with the policy config the engine passed."""
    return {**rule.options, **{k: plain(v) for k, v in config.items() if k in rule.options}}


def _spec_violations(rule: RuleDef, resource: Resource, options: Options) -> list[Violation]:
    if rule.spec is None or not resource.type.startswith("transit:") or SPEC_PROP not in resource.props:
        return []
    try:
        spec = validate_spec(plain(resource.props[SPEC_PROP]))
    except SpecError as exc:
        return [Violation(rule.name, f"{resource.name}.{SPEC_PROP}", f"the fabric spec is invalid: {exc.problems[0]}")]
    found = rule.spec(Context(spec, build_plan(spec)), options)
    return [Violation(v.rule, f"{resource.name}.{SPEC_PROP}.{v.path}", v.message) for v in found]


def _agent_violations(rule: RuleDef, resource: Resource, options: Options) -> list[Violation]:
    files = resource.props.get("files")
    if rule.agent is None or not isinstance(files, Mapping) or AGENT_FILE not in files:
        return []
    text = files[AGENT_FILE]
    if not isinstance(text, str):
        return []
    where = f"{resource.name}.files[{AGENT_FILE}]"
    try:
        config = AgentConfig.model_validate(json.loads(text))
    except ValueError as exc:  # JSON or pydantic: the agent would refuse this config too
        return [Violation(rule.name, where, f"not a valid AgentConfig, so its filter cannot be checked: {str(exc).splitlines()[0]}")]
    return rule.agent(config, where, options)


def resource_violations(rule: RuleDef, resource: Resource, options: Options) -> list[Violation]:
    """Everything one rule finds on one resource: raw props, a carried spec, a carried agent config."""
    found = rule.resource(resource, options) if rule.resource else []
    return [*found, *_spec_violations(rule, resource, options), *_agent_violations(rule, resource, options)]


def _resource_validator(rule: RuleDef):  # type: ignore[no-untyped-def]
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        resource = Resource(args.resource_type, args.name, args.props, args.urn)
        for violation in resource_violations(rule, resource, options_of(rule, args.get_config())):
            report_violation(f"{violation.path}: {violation.message}", None)

    return validate


def _stack_validator(rule: RuleDef):  # type: ignore[no-untyped-def]
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [Resource(r.resource_type, r.name, r.props, r.urn) for r in args.resources]
        urns = {r.name: r.urn for r in resources}
        for violation in rule.stack(resources, options_of(rule, args.get_config())) if rule.stack else []:
            report_violation(f"{violation.path}: {violation.message}", urns.get(violation.path.split(".")[0]))

    return validate


def policies(level: EnforcementLevel = EnforcementLevel.ADVISORY) -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """One resource policy per rule, plus `<rule>-in-stack` for rules that count resources.

    A stack policy sees outputs, not inputs, so the spec a component carries in
    its inputs is checked by the resource policy; the stack policy only counts.
    """
    out: list[ResourceValidationPolicy | StackValidationPolicy] = []
    for rule in RULES:
        out.append(ResourceValidationPolicy(rule.name, rule.description, _resource_validator(rule), level, config_schema(rule)))
        if rule.stack is not None:
            out.append(StackValidationPolicy(stack_policy_name(rule.name), f"{rule.description} (counted over the stack)",
                                             _stack_validator(rule), level, config_schema(rule)))
    return out


def stack_policy_name(rule: str) -> str:
    """The name of a rule's stack-wide policy in the pack and in policy configs."""
    return f"{rule}{STACK_SUFFIX}"
