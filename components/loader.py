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


def line_index(text: str) -> dict[str, int]:
    """Map each field path (`circuits[1].bgp.peering`) to its line in the YAML text."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = f"{path}.{key_node.value}" if path else str(key_node.value)
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = f"{path}[{i}]"
                lines[child] = item.start_mark.line + 1
                walk(item, child)

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, "")
    return lines


def _line_of(path: str, lines: dict[str, int]) -> int | None:
    """The line of `path`, or of its nearest ancestor present in the file (a missing key)."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def load_spec(path: str | Path) -> FabricSpec:
    """Load and validate the fabric spec at `path`; raise `SpecError` listing every problem with its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(str(path), f"cannot read the spec file: {exc.strerror}")]) from None
    data = parse_yaml(text, str(path))
    try:
        return validate_spec(data)
    except SpecError as exc:
        lines = line_index(text)
        raise SpecError([p.at_line(_line_of(p.path, lines)) for p in exc.problems]) from None
