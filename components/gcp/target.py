"""The GCP target's pure hooks for the registry (components.targets).

GCP has a plan section (firewall rules and tags, `firewall_rules.compile_gcp`)
and an enforcement point for `transit check`, but no builder yet: the registry
says where it goes (components/gcp/build.py).
"""
from __future__ import annotations

from collections.abc import Callable

from components.gcp.firewall_rules import GcpEvaluator, GcpSegmentation, compile_gcp
from components.plan_models import Plan
from components.spec import FabricSpec
from dataplane.filter_model import proto_number

Decision = tuple[str, str]


def section(spec: FabricSpec, plan: Plan) -> GcpSegmentation | None:
    """The firewall rules and tags of the fabric's GCP networks; None without any."""
    return compile_gcp(spec) if any(n.cloud == "gcp" for n in spec.networks) else None


def evaluator(seg: GcpSegmentation) -> Callable[[str, str, str, int | None], Decision | None]:
    """GCP VPC firewall rules with tags and GCP's implied rules."""
    evaluate = GcpEvaluator(seg)
    return lambda src, dst, proto, port: evaluate(src, dst, proto_number(int(proto) if proto.isdigit() else proto), port)
