"""A small three-cloud fabric for the checks' tests, and a way to vary it."""
from __future__ import annotations

import copy
from typing import Any

from components.spec import FabricSpec, validate_spec

BASE: dict[str, Any] = {
    "name": "acme",
    "edges": [
        {"name": "aws-use1", "cloud": "aws", "region": "us-east-1", "cidr": "10.250.37.0/24"},
        {"name": "az-weu", "cloud": "azure", "region": "westeurope", "cidr": "10.254.37.0/24"},
        {"name": "gcp-euw3", "cloud": "gcp", "region": "europe-west3", "cidr": "10.252.37.0/24"},
    ],
    "networks": [
        {"name": "aws-app", "cloud": "aws", "region": "us-east-1", "cidrs": ["10.30.40.0/24"], "attach": "connector"},
        {"name": "az-app", "cloud": "azure", "region": "westeurope", "cidrs": ["172.18.40.0/24"], "attach": "native"},
        {"name": "gcp-app", "cloud": "gcp", "region": "europe-west3", "cidrs": ["10.40.0.0/24"], "attach": "native"},
    ],
    "groups": {"db": ["172.18.40.10/32"], "web": ["10.40.0.16/28"]},
    "policy": {
        "default": "deny",
        "rules": [
            {"name": "no-ssh", "from": "any", "to": "any", "proto": "tcp", "ports": [22], "action": "deny"},
            {"name": "app-to-db", "from": "aws-app", "to": "db", "proto": "tcp", "ports": [5432], "action": "permit"},
            {"name": "web-in", "from": "aws-app", "to": "web", "proto": "tcp", "ports": ["8000-8080"], "action": "permit"},
            {"name": "gcp-out", "from": "gcp-app", "to": "aws-app", "proto": "udp", "action": "permit"},
        ],
        "tests": [
            {"from": "aws-app", "to": "db", "proto": "tcp", "port": 5432, "expect": "permit"},
            {"from": "aws-app", "to": "db", "proto": "tcp", "port": 22, "expect": "deny"},
            {"from": "aws-app", "to": "web", "proto": "tcp", "port": 8080, "expect": "permit"},
            {"from": "gcp-app", "to": "aws-app", "proto": "udp", "port": 53, "expect": "permit"},
            {"from": "aws-app", "to": "gcp-app", "proto": "udp", "port": 53, "expect": "deny"},
        ],
    },
}


def raw(**changes: Any) -> dict[str, Any]:
    """A deep copy of BASE with top-level keys replaced."""
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(changes))
    return data


def spec(**changes: Any) -> FabricSpec:
    """BASE (with `changes`) validated."""
    return validate_spec(raw(**changes))


def with_rules(*rules: dict[str, Any], tests: list[dict[str, Any]] | None = None) -> FabricSpec:
    """BASE with its policy rules (and optionally tests) replaced."""
    data = raw()
    data["policy"]["rules"] = list(rules)
    data["policy"]["tests"] = tests or []
    return validate_spec(data)
