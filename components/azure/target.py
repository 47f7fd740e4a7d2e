"""The Azure target's pure hooks for the registry (components.targets).

Azure has a plan section (NSGs and ASGs, `nsg_rules.compile_azure`) and an
enforcement point for `transit check`, but no builder yet: the registry says
where it goes (components/azure/build.py).
"""
from __future__ import annotations

from collections.abc import Callable

from components.azure.nsg_rules import AzureEvaluator, AzureSegmentation, compile_azure
from components.plan_models import Plan
from components.spec import FabricSpec
from dataplane.filter_model import proto_number

Decision = tuple[str, str]


def section(spec: FabricSpec, plan: Plan) -> AzureSegmentation | None:
    """The NSGs and ASGs of the fabric's Azure networks; None without any."""
    return compile_azure(spec) if any(n.cloud == "azure" for n in spec.networks) else None


def evaluator(seg: AzureSegmentation) -> Callable[[str, str, str, int | None], Decision | None]:
    """Azure NSGs with ASGs and Azure's default rules."""
    evaluate = AzureEvaluator(seg)
    return lambda src, dst, proto, port: evaluate(src, dst, proto_number(int(proto) if proto.isdigit() else proto), port)
