"""The Pulumi mock graph of every example fabric and of the 300-network bench fabric, pinned.

Each resource is pinned by its type, name, parent, provider and a digest of its
inputs (a secret pinned as one, not by its value), so a refactor that moves code without meaning to
change what is built leaves these files alone. The example fabrics are built
for the `cloud` target (AWS, the one cloud with a builder) and for the `local`
target; their goldens hold one line per resource. The bench fabric has about
9,000 resources, so its golden holds one count and one digest per resource
type; set GRAPH_DUMP=DIR to write the full lines of every graph for a diff.

After a deliberate change, regenerate with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/component/test_fabric_graph_golden.py -m ''`
and review the diff. Mocks stand in for the clouds (no account here).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc

from tests.component.conftest import Graph, Registration, build_graph

from bench.aws_scale import existing_networks, fabric_spec  # noqa: E402  (mocks are set in conftest first)
from testbed.fake_cloud import fabric_ca
from components.aws.fleet import CERT_SERIAL_TAG
from components.aws.options import AwsOptions
from components.fabric import Fabric, FabricArgs
from components.loader import load_spec
from components.spec import FabricSpec, validate_spec

ROOT = Path(__file__).resolve().parents[2]
FABRICS = ROOT / "stacks" / "fabrics"
EXAMPLES = sorted(p.stem for p in FABRICS.glob("*.yaml"))
GOLDEN = Path(__file__).parent / "golden"
SECRETS = ("fraDxMd5", "fraErMd5", "dcFraMd5")
UNPINNED_INPUTS = frozenset({"__provider"})
"""The dynamic providers' pickled code: it changes whenever their module does, not what they build."""


def _name(urn: str) -> str:
    return urn.split("::")[-1] if urn else ""


def _digest(value: Any) -> str:
    """A short digest of `value`, with this checkout's path written as <repo> so every clone pins the same graph."""
    text = json.dumps(value, sort_keys=True, default=str).replace(str(ROOT), "<repo>")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pinned(value: Any) -> Any:
    """`value` with what no two runs share replaced by what it stands for: a secret by "<secret>" (the golden pins that
    and where a value is secret, not the test's key material, which includes keys issued afresh on every run) and
    the serial of a freshly issued certificate by "<serial>"."""
    if rpc.is_rpc_secret(value):
        return "<secret>"
    if isinstance(value, dict):
        return {k: "<serial>" if k == CERT_SERIAL_TAG else _pinned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pinned(v) for v in value]
    return value


def resource_line(reg: Registration) -> str:
    """One resource as the golden pins it: name, type, parent, provider and an input digest."""
    inputs = {k: _pinned(v) for k, v in reg.inputs.items() if k not in UNPINNED_INPUTS}
    provider = _name(reg.provider.rsplit("::", 1)[0]) if reg.provider else ""  # the reference is "<urn>::<id>"
    return f"{reg.name} {reg.type} parent={_name(reg.parent)} provider={provider} inputs={_digest(inputs)}"


def graph_lines(graph: Graph) -> list[str]:
    """Every resource's line, in name order (registration order is not part of the graph)."""
    return sorted(resource_line(r) for r in graph.all)


def per_type(lines: list[str]) -> dict[str, list[Any]]:
    """Type -> [count, digest of that type's lines]: the compact golden of a large graph."""
    groups: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        groups[line.split(" ", 2)[1]].append(line)
    return {t: [len(g), _digest(g)] for t, g in sorted(groups.items())}


def _secrets() -> dict[str, pulumi.Output[str]]:
    return {key: pulumi.Output.secret(f"{key}-value") for key in SECRETS}


def cloud_fabric(spec: FabricSpec) -> None:
    """The `cloud` target, AWS only, with every AWS option a seed needs."""
    options = AwsOptions(fabric_ca=fabric_ca(), image_id="ami-0golden", hosted_connection_ids={"fra-dx": "dxcon-golden"})
    Fabric(spec.name, FabricArgs(spec=spec, environment="golden", secrets=_secrets(), clouds=["aws"], options={"aws": options}))


def local_fabric(spec: FabricSpec) -> None:
    """The `local` target: namespaces, links, routers and agents as dynamic resources."""
    Fabric(spec.name, FabricArgs(spec=spec, environment="golden", secrets=_secrets(), target="local"))


def scale_fabric(spec: FabricSpec) -> None:
    """The bench fabric as bench/aws_scale.py builds it (existing VPCs)."""
    options = AwsOptions(fabric_ca=fabric_ca(), image_id="ami-0bench", existing_networks=existing_networks(spec))
    Fabric("scale", FabricArgs(spec=spec, environment="bench", options={"aws": options}))


BUILDERS = {"cloud": cloud_fabric, "local": local_fabric}


def _graph(build: Any, spec: FabricSpec) -> list[str]:
    def program() -> dict[str, Any]:
        build(spec)
        return {}

    lines = graph_lines(build_graph(program))
    if dump := os.environ.get("GRAPH_DUMP"):
        Path(dump).mkdir(parents=True, exist_ok=True)
        (Path(dump) / f"{spec.name}.{build.__name__}.txt").write_text("\n".join(lines) + "\n")
    return lines


def _compare(golden: Path, actual: Any, text: str) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden {golden.name}; run with UPDATE_GOLDEN=1 and review it"
    expected = golden.read_text()
    if golden.suffix == ".json":
        expected_value = json.loads(expected)
        changed = sorted(k for k in set(expected_value) | set(actual) if expected_value.get(k) != actual.get(k))
        assert actual == expected_value, f"resource types whose graph changed: {changed}"
    else:
        want, got = set(expected.splitlines()), set(actual)
        assert got == want, f"gone: {sorted(want - got)[:20]}\nnew: {sorted(got - want)[:20]}"


@pytest.mark.parametrize("target", sorted(BUILDERS))
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_fabric_graph_matches_golden(name: str, target: str) -> None:
    lines = _graph(BUILDERS[target], load_spec(FABRICS / f"{name}.yaml"))
    assert len(lines) > 30
    _compare(GOLDEN / f"{name}.{target}.graph.txt", lines, "\n".join(lines) + "\n")


@pytest.mark.slow
def test_bench_300_network_fabric_graph_matches_golden() -> None:
    lines = _graph(scale_fabric, validate_spec(fabric_spec(300)))
    assert len(lines) > 8000
    summary = per_type(lines)
    _compare(GOLDEN / "bench_aws_scale_300.graph.json", summary, json.dumps(summary, indent=1) + "\n")


def test_every_graph_golden_has_its_fabric() -> None:
    expected = {f"{n}.{t}.graph.txt" for n in EXAMPLES for t in BUILDERS} | {"bench_aws_scale_300.graph.json"}
    assert {p.name for p in GOLDEN.glob("*.graph.*")} == expected
