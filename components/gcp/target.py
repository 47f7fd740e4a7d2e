"""The GCP target's pure hooks for the registry (components.targets).

GCP has a plan section (firewall rules and tags, `segmentation.gcp_firewall`)
and an enforcement point for `transit check`, but no builder yet: the registry
says where it goes (components/gcp/build.py).
"""
from __future__ import annotations

from components.plan_models import Plan
from components.segmentation.gcp_firewall import GCP_FIREWALL, GcpSegmentation
from components.segmentation.protocol import Context, Point, point
from components.spec import FabricSpec


def section(spec: FabricSpec, plan: Plan) -> GcpSegmentation | None:
    """The firewall rules and tags of the fabric's GCP networks; None without any."""
    context = Context.of(spec)
    return GCP_FIREWALL.compile(context.rules, context)


def evaluator(seg: GcpSegmentation) -> Point:
    """GCP VPC firewall rules with tags and GCP's implied rules, judged as GCP would."""
    return point(GCP_FIREWALL, seg)
