"""Any input gives a valid spec or a SpecError with problems: never a crash, never a bad plan."""
from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import pytest

from components.plan import build_plan
from components.spec import validate_spec
from components.spec_types import SpecError
from spec_helpers import EXAMPLES, example

JUNK: list[Any] = [None, 0, -1, 70000, "", "x", "Bad Name", "10.0.0.1/24", "10.0.0.0/8", [], {}, [1], {"a": 1}, {0: 1},
                   True, 1.5, "any", "aws-app", "db"]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _mutate(data: dict[str, Any], rng: random.Random) -> None:
    """Replace, delete or duplicate one to three random parts of the spec."""
    paths = list(_paths(data))
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        parent: Any = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            roll = rng.random()
            if roll < 0.6:
                parent[path[-1]] = rng.choice(JUNK)
            elif roll < 0.8:
                del parent[path[-1]]
            elif isinstance(parent, list):
                parent.append(copy.deepcopy(parent[path[-1]]))
        except (KeyError, IndexError, TypeError):
            continue


@pytest.mark.parametrize("name", EXAMPLES)
def test_mutated_specs_never_crash(name: str) -> None:
    rng = random.Random(name)
    base = example(name)
    for _ in range(300):
        data = copy.deepcopy(base)
        _mutate(data, rng)
        try:
            spec = validate_spec(data)
        except SpecError as exc:
            assert exc.problems and all(p.path and p.message for p in exc.problems)
            continue
        build_plan(spec)
