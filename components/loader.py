"""Read a fabric spec file: YAML in, validated `FabricSpec` out, every problem at once."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from components.spec import FabricSpec, validate_spec
from components.spec_types import Problem, SpecError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that reports a key written twice in one mapping instead of keeping the last."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' appears twice in one mapping; keep one", mark
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str = "<spec>") -> Any:
    """Parse YAML text; a syntax error becomes a `SpecError` whose path is `source:line:column`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise SpecError([Problem(where, f"YAML syntax: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(source, f"YAML syntax: {exc}")]) from None


def load_spec(path: str | Path) -> FabricSpec:
    """Load and validate the fabric spec at `path`; raise `SpecError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(str(path), f"cannot read the spec file: {exc.strerror}")]) from None
    return validate_spec(parse_yaml(text, str(path)))
