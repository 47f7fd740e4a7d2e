"""One `pulumi up` plans once: the AWS security compile runs once, and every address is carved by the plan alone.

Carving is counted at its primitive (`IPv4Network.subnets`): a full Fabric
build under Pulumi mocks makes exactly the calls that computing the plan with
its sections makes, so no component re-derives a zone subnet, an attachment
/28 or a workload subnet.
"""
from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from tests.component.conftest import build_graph

import components.aws.planning as aws_planning  # noqa: E402  (mocks are set in conftest first)
from testbed.fake_cloud import fabric_ca
from components.aws.options import AwsOptions
from components.fabric import Fabric, FabricArgs
from components.loader import load_spec
from components.targets import plan_fabric

FABRICS = Path(__file__).resolve().parents[2] / "stacks" / "fabrics"


def _count(monkeypatch: pytest.MonkeyPatch, counts: Counter[str], owner: Any, name: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)


@pytest.mark.parametrize("fabric", ["seed000_aws_azure", "seed004_dx_er_cloud_router"])
def test_one_pulumi_up_compiles_the_aws_rules_once_and_carves_only_in_the_plan(fabric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(FABRICS / f"{fabric}.yaml")
    counts: Counter[str] = Counter()
    _count(monkeypatch, counts, aws_planning, "compile_security")
    _count(monkeypatch, counts, ipaddress._BaseNetwork, "subnets")  # type: ignore[attr-defined]

    plan_fabric(spec)
    planned = counts.copy()
    counts.clear()

    def build() -> dict[str, Any]:
        secrets = {key: pulumi.Output.secret("k") for key in ("fraDxMd5", "fraErMd5")}
        options = AwsOptions(fabric_ca=fabric_ca(), image_id="ami-1", hosted_connection_ids={"fra-dx": "dxcon-1"})
        Fabric(spec.name, FabricArgs(spec=spec, environment="dev", secrets=secrets, clouds=["aws"], options={"aws": options}))
        return {}

    graph = build_graph(build)
    assert len(graph.all) > 30
    assert planned["compile_security"] == counts["compile_security"] == 1
    assert planned["subnets"] > 0 and counts["subnets"] == planned["subnets"]
