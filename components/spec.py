"""The fabric spec: the user-facing pydantic models and their validation.

The field names are the shape in docs/architecture.md and must stay stable. Every
construction of a `FabricSpec` runs all checks; `validate_spec` additionally
validates each list item on its own, so one bad item never hides the problems
of the others: all problems come back at once in a `SpecError`.
This module never imports Pulumi.
"""
from __future__ import annotations

from ipaddress import IPv4Network
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from components import spec_checks
from components.spec_providers import Connection, Provider
from components.spec_types import (
    Address,
    Asn,
    Cidr,
    Name,
    PortItem,
    Problem,
    SecretKeyName,
    SpecError,
    Vlan,
    format_path,
)

Cloud = Literal["aws", "azure", "gcp"]
NetworkCloud = Literal["aws", "azure", "gcp", "onprem"]


class _Model(BaseModel):
    """Strict models: an unknown key is a problem, not something to ignore."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Edge(_Model):
    """A regional transit gateway cluster in one cloud region."""

    name: Name
    cloud: Cloud
    region: str = Field(min_length=1)
    cidr: Cidr
    instances: int = Field(2, ge=1, le=16, description="Edge VMs (HA). Defaults to 2.")
    zones: int = Field(2, ge=1, le=3, description="Availability zones to spread over. Defaults to 2.")


class OnPremBgp(_Model):
    """The connector's BGP session with the data-center router (seed 000)."""

    asn: Asn
    peer_ip: Address
    peer_asn: Asn
    md5_secret: SecretKeyName
    local_ip: Address | None = Field(None, description="Connector address. Defaults to peer_ip + 1.")


class Network(_Model):
    """An onboarded application network: a VPC/VNet or a data-center site."""

    name: Name
    cloud: NetworkCloud
    region: str | None = Field(None, min_length=1)
    site: Name | None = None
    cidrs: list[Cidr] = Field(min_length=1)
    attach: Literal["connector", "native"]
    edge: Name | None = None
    bgp: OnPremBgp | None = None
    connector_cidr: Cidr | None = None
    instances: int = Field(2, ge=1, le=16, description="Connector VMs (HA). Defaults to 2.")
    deliver_from: Literal["node", "client"] = Field("node", description=(
        "Where a cloud connector delivers inbound flows from: its own address (`node`: replies come straight back to "
        "it; the workloads' security rules admit the connector subnets) or the client's (`client`: one connector VM "
        "only). Defaults to node."))


class CircuitBgp(_Model):
    """The BGP sessions of a circuit; `customer` is our side (router or cloud router)."""

    customer_asn: Asn
    peer_asn: Asn
    peering: list[Cidr] = Field(min_length=1)
    md5_secret: SecretKeyName
    customer_ips: list[Address] | None = None
    peer_ips: list[Address] | None = None


class Circuit(_Model):
    """A dedicated connection (Direct Connect, ExpressRoute, Interconnect)."""

    name: Name
    provider: Provider
    connection: Connection = "hosted"
    location: str = Field(min_length=1)
    region: str | None = Field(None, min_length=1)
    bandwidth_mbps: int = Field(gt=0)
    vlan: Vlan
    bgp: CircuitBgp
    attaches: list[Name] = Field(default_factory=list)


class CloudRouter(_Model):
    """A NaaS cloud router: one VRF where several circuits meet (seed 004)."""

    asn: Asn
    circuits: list[Name] = Field(min_length=1)


class Rule(_Model):
    """One ordered policy rule; the first rule that matches a flow decides."""

    name: Name
    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    proto: Literal["tcp", "udp", "icmp", "any"]
    ports: list[PortItem] | None = None
    action: Literal["permit", "deny"]


class PolicyTest(_Model):
    """A reachability assertion the policy must give."""

    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    proto: Literal["tcp", "udp", "icmp"]
    port: int | None = Field(None, ge=1, le=65535)
    expect: Literal["permit", "deny"]


class Policy(_Model):
    """Zero-trust segmentation: ordered rules, default deny, and their tests."""

    default: Literal["deny"] = "deny"
    rules: list[Rule] = Field(default_factory=list)
    tests: list[PolicyTest] = Field(default_factory=list)


class Underlay(_Model):
    """Address pools for the links between nodes (the two paths of the local fabric)."""

    backbone_cidr: Cidr = IPv4Network("100.64.0.0/16")
    internet_cidr: Cidr = IPv4Network("198.18.0.0/16")


class FabricSpec(_Model):
    """The whole fabric: edges, onboarded networks, groups, circuits, policy."""

    name: Name
    edges: list[Edge]
    networks: list[Network] = Field(default_factory=list)
    groups: dict[Name, list[str]] = Field(default_factory=dict)
    circuits: list[Circuit] = Field(default_factory=list)
    cloud_router: CloudRouter | None = None
    policy: Policy = Field(default_factory=Policy)
    underlay: Underlay = Field(default_factory=Underlay)

    @model_validator(mode="after")
    def _cross_checks(self) -> FabricSpec:
        problems = spec_checks.check(self, spec_checks.KnownNames.from_spec(self))
        if problems:
            raise SpecError(problems)
        return self


_LIST_MODELS: dict[tuple[str, ...], type[_Model]] = {
    ("edges",): Edge,
    ("networks",): Network,
    ("circuits",): Circuit,
    ("policy", "rules"): Rule,
    ("policy", "tests"): PolicyTest,
}


def validate_spec(data: Any) -> FabricSpec:
    """Validate raw (YAML-loaded) data into a `FabricSpec` or raise `SpecError` with every problem."""
    if not isinstance(data, dict):
        raise SpecError([Problem("(root)", "a fabric spec is a mapping with name, edges, networks, ...")])
    problems: list[Problem] = []
    values = _validate_mapping(FabricSpec, data, (), problems)
    if problems:
        partial = FabricSpec.model_construct(**values)
        problems.extend(spec_checks.check(partial, spec_checks.KnownNames.from_raw(data)))
        raise SpecError(problems)
    try:
        return FabricSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems_from(exc, ())) from None


def _validate_mapping(
    model: type[_Model], data: dict[Any, Any], prefix: tuple[Any, ...], problems: list[Problem]
) -> dict[str, Any]:
    """Validate a mapping field by field; list items one by one; keep every good part.

    Returns the field values that parsed (defaults for the others), enough to
    run the cross checks on the rest of the spec.
    """
    fields = {f.alias or name: (name, f) for name, f in model.model_fields.items()}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            problems.append(Problem(format_path((*prefix, str(key))), _unknown_key_message(model)))
            continue
        name, field = fields[key]
        loc = (*prefix, key)
        if loc in _LIST_MODELS and isinstance(value, list):
            values[name] = _validate_items(_LIST_MODELS[loc], value, loc, problems)
        elif model is FabricSpec and key == "policy" and isinstance(value, dict):
            values[name] = Policy.model_construct(**_validate_mapping(Policy, value, loc, problems))
        else:
            try:
                values[name] = TypeAdapter(_annotated(field)).validate_python(value)
            except ValidationError as exc:
                problems.extend(_problems_from(exc, loc))
    for key, (name, field) in fields.items():
        if name in values:
            continue
        if field.is_required():
            if key not in data:
                problems.append(Problem(format_path((*prefix, key)), "is required"))
            values[name] = [] if get_origin(field.annotation) is list else None
        else:
            values[name] = field.get_default(call_default_factory=True)
    return values


def _validate_items(
    model: type[_Model], items: list[Any], prefix: tuple[Any, ...], problems: list[Problem]
) -> list[Any]:
    """Validate each list item alone so one bad item never hides another.

    A failed item stays as None so the cross checks report the right indexes.
    """
    parsed: list[Any] = []
    for index, item in enumerate(items):
        try:
            parsed.append(model.model_validate(item))
        except ValidationError as exc:
            problems.extend(_problems_from(exc, (*prefix, index)))
            parsed.append(None)
    return parsed


def _annotated(field: Any) -> Any:
    """A field's type with its constraints (min_length, ge, ...) attached again."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


def _problems_from(exc: ValidationError, prefix: tuple[Any, ...]) -> list[Problem]:
    """Turn pydantic errors into problems with field paths and plain advice."""
    out = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            message = _unknown_key_message(model) if model else "unknown key; remove it"
        elif err["type"] == "missing":
            message = "is required"
        elif err["type"] == "literal_error":
            message = f"{err['input']!r} is not allowed; use {err['ctx']['expected']}"
        else:
            message = err["msg"].removeprefix("Value error, ")
        out.append(Problem(format_path(loc), message))
    return out


def _unknown_key_message(model: type[BaseModel]) -> str:
    keys = ", ".join(f.alias or name for name, f in model.model_fields.items())
    return f"unknown key; valid keys here are: {keys}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Follow a location from FabricSpec down to the model that holds its last key."""
    current: Any = FabricSpec
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        fields = {f.alias or n: f for n, f in current.model_fields.items()}
        if part not in fields:
            return None
        current = fields[part].annotation
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional, list[...] and dict[..., ...] down to the item type."""
    while True:
        origin = get_origin(annotation)
        if origin in (list, dict):
            annotation = get_args(annotation)[-1]
        elif origin is Union or origin is UnionType:
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation
