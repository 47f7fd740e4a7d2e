"""Per-environment enforcement: which rules are advisory, mandatory or disabled, and their options.

The file format is CrossGuard's policy config (`pulumi preview --policy-pack-config`),
so `transit check --env prod` and the pack in CI read the same file,
`policies/config/<env>.json`:

    {"all": "advisory", "circuit-redundancy": {"enforcementLevel": "mandatory", "min_circuits": 2},
     "required-tags": "disabled"}

`all` sets every rule's level; a rule's own entry overrides it and may set
options, which are merged over the rule's defaults. Never imports Pulumi.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from components.checks.rules import RULES, RULES_BY_NAME, Options
from components.checks.violation import Level

STACK_SUFFIX = "-in-stack"
"""The pack's stack-wide twin of a rule (`circuit-redundancy-in-stack`); `transit check` has no stack to count."""
CONFIG_DIR = Path(__file__).resolve().parents[2] / "policies" / "config"
LEVELS: tuple[Level, ...] = ("advisory", "mandatory", "disabled")


class PolicyConfigError(ValueError):
    """A policy config that names an unknown rule or level."""


@dataclass(frozen=True)
class RuleSettings:
    """How one rule runs in one environment."""

    level: Level
    options: Options


def parse_config(document: dict[str, Any]) -> dict[str, RuleSettings]:
    """Settings for every rule from a CrossGuard-style config document."""
    default = document.get("all", "advisory")
    if default not in LEVELS:
        raise PolicyConfigError(f"all: '{default}' is not a level; use one of {', '.join(LEVELS)}")
    unknown = sorted(k for k in set(document) - {"all"} if k.removesuffix(STACK_SUFFIX) not in RULES_BY_NAME)
    if unknown:
        raise PolicyConfigError(f"{unknown[0]}: no such rule; rules are {', '.join(RULES_BY_NAME)}")
    settings: dict[str, RuleSettings] = {}
    for rule in RULES:
        entry = document.get(rule.name, {})
        if isinstance(entry, str):
            entry = {"enforcementLevel": entry}
        level = entry.get("enforcementLevel", default)
        if level not in LEVELS:
            raise PolicyConfigError(f"{rule.name}.enforcementLevel: '{level}' is not a level; use one of {', '.join(LEVELS)}")
        unknown_options = sorted(set(entry) - {"enforcementLevel"} - set(rule.options))
        if unknown_options:
            raise PolicyConfigError(f"{rule.name}.{unknown_options[0]}: no such option; options are {', '.join(rule.options) or 'none'}")
        options = copy.deepcopy(rule.options)
        options.update({k: v for k, v in entry.items() if k != "enforcementLevel"})
        settings[rule.name] = RuleSettings(cast(Level, level), options)
    return settings


def load_config(env: str | None = None, path: str | Path | None = None) -> dict[str, RuleSettings]:
    """Settings from `path`, else from policies/config/<env>.json, else every rule advisory."""
    if path is None and env is not None:
        path = CONFIG_DIR / f"{env}.json"
    if path is None:
        return parse_config({})
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyConfigError(f"{path}: cannot read the policy config: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PolicyConfigError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(document, dict):
        raise PolicyConfigError(f"{path}: a policy config is a JSON object")
    return parse_config(document)
