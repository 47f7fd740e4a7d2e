"""The Azure target's pure hooks for the registry (components.targets).

Azure has a plan section (NSGs and ASGs, `segmentation.azure_nsgs`) and an
enforcement point for `transit check`, but no builder yet: the registry says
where it goes (components/azure/build.py).
"""
from __future__ import annotations

from components.plan_models import Plan
from components.segmentation.azure_nsgs import AZURE_NSGS, AzureSegmentation
from components.segmentation.protocol import Context, Point, point
from components.spec import FabricSpec


def section(spec: FabricSpec, plan: Plan) -> AzureSegmentation | None:
    """The NSGs and ASGs of the fabric's Azure networks; None without any."""
    context = Context.of(spec)
    return AZURE_NSGS.compile(context.rules, context)


def evaluator(seg: AzureSegmentation) -> Point:
    """Azure NSGs with ASGs and Azure's default rules, judged as Azure would."""
    return point(AZURE_NSGS, seg)
