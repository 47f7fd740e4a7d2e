"""A 300-network AWS fabric built under Pulumi mocks: resources, seconds, peak RSS, rule counts.

Run: `.venv/bin/python -m bench.aws_scale [--networks N]`. Writes
bench/results/aws-scale.json. The fabric: three regions with an edge each;
existing VPCs (onboarding) that are /24s in three tiers (web, app, db), spread
over the regions, two thirds attached by connector and one third natively;
the policy is tier to tier by group, with an ssh deny first. The security
rules emitted are compared with the Cartesian count (source CIDR x destination
CIDR x port) a per-address compiler would emit for the same AWS enforcement
points. Mocks stand in for AWS: cloud resources cannot be created here.
"""
from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

from components.fabric import GC_THRESHOLD
from testbed.fake_cloud import FakeCloud, fabric_ca

RESULTS = Path(__file__).parent / "results" / "aws-scale.json"
README = Path(__file__).parent / "README.md"
START, END = "<!-- aws-scale:start -->", "<!-- aws-scale:end -->"
REGIONS = ("us-east-1", "eu-central-1", "ap-southeast-1")
TIERS = ("web", "app", "db")


class CountingMocks(FakeCloud):
    """The component tests' fake account, counting what the engine was asked to create and the boot documents' sizes."""

    def __init__(self) -> None:
        self.resources = 0
        self.boot_documents: list[int] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources += 1
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            self.boot_documents.append(len(base64.b64decode(args.inputs["userData"])))
        return super().new_resource(args)


def fabric_spec(networks: int) -> dict[str, Any]:
    """The benchmark fabric: `networks` AWS /24s over three regions and three tiers.

    Addresses are tier-major (every web network in one range, then app, then
    db), the usual IPAM for segments, so routes to a tier merge exactly.
    """
    edges = [
        {"name": f"edge-{region}", "cloud": "aws", "region": region, "cidr": f"10.250.{i}.0/24"}
        for i, region in enumerate(REGIONS)
    ]
    nets = []
    groups: dict[str, list[str]] = {tier: [] for tier in TIERS}
    per_tier = -(-networks // len(TIERS))
    for index in range(networks):
        tier_index, slot = divmod(index, per_tier)
        region = REGIONS[slot % len(REGIONS)]
        name = f"{TIERS[tier_index]}-{slot}"
        nets.append(
            {
                "name": name, "cloud": "aws", "region": region,
                "cidrs": [f"10.{16 + tier_index * 4 + slot // 256}.{slot % 256}.0/24"],
                "attach": "native" if slot % 3 == 2 else "connector",
            }
        )
        groups[TIERS[tier_index]].append(name)
    rules = [
        {"name": "no-ssh", "from": "any", "to": "any", "proto": "tcp", "ports": [22], "action": "deny"},
        {"name": "web-to-app", "from": "web", "to": "app", "proto": "tcp", "ports": [8080, 8443], "action": "permit"},
        {"name": "app-to-db", "from": "app", "to": "db", "proto": "tcp", "ports": [5432], "action": "permit"},
        {"name": "app-ping-web", "from": "app", "to": "web", "proto": "icmp", "action": "permit"},
    ]
    return {"name": "scale", "edges": edges, "networks": nets, "groups": groups, "policy": {"default": "deny", "rules": rules}}


def existing_networks(spec: Any) -> dict[str, Any]:
    """Onboarding finds the VPCs already there: their ids, as a real stack would read them from config. A native
    network names its TGW attachment subnets; a connector creates its own (with the default egress of an existing
    VPC, none: no NAT gateway or internet gateway in a VPC the fabric does not own)."""
    from components.aws.options import ExistingNetwork

    return {
        n.name: ExistingNetwork(
            vpc_id=f"vpc-{n.name}", workload_route_table_ids=[f"rtb-{n.name}-a", f"rtb-{n.name}-b"],
            **({} if n.attach == "connector" else {
                "fabric_subnet_ids": [f"subnet-{n.name}-a", f"subnet-{n.name}-b"], "fabric_route_table_ids": [f"rtb-{n.name}-fa", f"rtb-{n.name}-fb"],
            }),
        )
        for n in spec.networks
    }


def run(networks: int) -> dict[str, Any]:
    """Build the fabric once under mocks and measure it."""
    mocks = CountingMocks()
    pulumi.runtime.set_mocks(mocks, project="transit", stack="bench", preview=False, monitor=MockMonitor(mocks))
    from components.aws.options import AwsOptions  # imported after set_mocks, as Pulumi's mock pattern requires
    from components.fabric import Fabric, FabricArgs
    from components.spec import validate_spec

    import pulumi_aws

    for module in ("autoscaling", "directconnect", "ec2", "ec2transitgateway", "iam", "lb", "vpc"):
        getattr(pulumi_aws, module)  # load the SDK modules before the clock starts: the figure is the build, not imports
    spec = validate_spec(fabric_spec(networks))
    holder: dict[str, Any] = {}
    start, cpu_start = time.perf_counter(), time.process_time()

    @pulumi.runtime.test
    def program() -> Any:
        options = AwsOptions(fabric_ca=fabric_ca(), image_id="ami-0bench", existing_networks=existing_networks(spec))
        fabric = Fabric("scale", FabricArgs(spec=spec, environment="bench", options={"aws": options}))
        holder["fabric"] = fabric
        return fabric.outputs["aws_rules_emitted"]

    program()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    plan = holder["fabric"].plan
    return {
        "networks": networks,
        "resources": mocks.resources,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "boot_document_bytes_max": max(mocks.boot_documents),
        "boot_document_bytes_total": sum(mocks.boot_documents),
        "rules_emitted": plan.sections["aws"].rules_emitted,
        "rules_cartesian": plan.sections["aws"].rules_cartesian,
        "routes": len(plan.sections["aws"].routes),
        "security_groups": len(plan.sections["aws"].security_groups),
        "prefix_lists": len(plan.sections["aws"].prefix_lists),
        "targets": {"seconds": 30, "peak_rss_mb": 2048, "rules_ratio": 0.1},
    }


def _one(networks: int, tuned_gc: bool) -> dict[str, Any]:
    """Measure in a fresh process, so runs never share Pulumi state or memory."""
    cmd = [sys.executable, "-m", "bench.aws_scale", "--networks", str(networks), "--child"] + (["--tuned-gc"] if tuned_gc else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=300)
    parser.add_argument("--no-write", action="store_true", help="print only; keep the recorded results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tuned-gc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.tuned_gc:
            gc.set_threshold(*GC_THRESHOLD)
        print(json.dumps(run(args.networks)))
        return
    result = _one(args.networks, tuned_gc=True)
    default = _one(args.networks, tuned_gc=False)
    result["gc_threshold"] = list(GC_THRESHOLD)
    result["seconds_default_gc"] = default["seconds"]
    result["cpu_seconds_default_gc"] = default["cpu_seconds"]
    result["peak_rss_mb_default_gc"] = default["peak_rss_mb"]
    result["met"] = (
        result["seconds"] < 30 and result["peak_rss_mb"] < 2048 and result["rules_emitted"] * 10 < result["rules_cartesian"]
    )
    text = json.dumps(result, indent=2)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text + "\n")
        _write_readme(result)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _write_readme(r: dict[str, Any]) -> None:
    """Replace this benchmark's own section of bench/README.md (added at the end if absent)."""
    ratio = r["rules_emitted"] / r["rules_cartesian"] if r["rules_cartesian"] else 0.0
    body = "\n".join(
        [
            START,
            "| measure | result | target | verdict |",
            "|---|---|---|---|",
            f"| resources for {r['networks']} networks | {r['resources']} | | |",
            f"| seconds (wall; CPU) | {r['seconds']}; {r['cpu_seconds']} | < 30 s | {_verdict(r['seconds'] < 30)} |",
            f"| seconds with CPython's default GC (wall; CPU) | {r['seconds_default_gc']}; {r['cpu_seconds_default_gc']} | | |",
            f"| peak RSS, MB | {r['peak_rss_mb']} | < 2048 | {_verdict(r['peak_rss_mb'] < 2048)} |",
            f"| security rules emitted / Cartesian | {r['rules_emitted']} / {r['rules_cartesian']} ({ratio:.3f}) | < 0.1 | {_verdict(ratio < 0.1)} |",
            f"| boot documents (user data) in bytes: largest; sum over the launch templates | {r['boot_document_bytes_max']:,}; {r['boot_document_bytes_total']:,} | | |",
            f"| plan routes (network x destination), security groups, prefix lists | {r['routes']}, {r['security_groups']}, {r['prefix_lists']} | | |",
            "",
            f"Run {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} on {os.cpu_count()} CPUs, 1-minute load average "
            f"{r['load_average_1m']} (other work shares the machine: CPU seconds are the steadier figure). "
            f"GC threshold {tuple(r['gc_threshold'])} (`components.fabric.GC_THRESHOLD`, which `stacks/__main__.py` sets); the default-GC run is shown next to it.",
            END,
        ]
    )
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[: text.index(START)] + body + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + (
            "\n\n## AWS at scale (`bench/aws_scale.py`)\n\n"
            "Reproduce: `.venv/bin/python -m bench.aws_scale`. A 300-network AWS fabric (3 regions, existing VPCs in "
            "three tiers, two thirds behind connectors) built through `Fabric` under Pulumi mocks (no AWS account here); "
            "rules emitted are the security-group rule resources, the Cartesian count is what a per-address compiler "
            "emits for the same groups (source entry x destination entry x port, groups exploded into member networks).\n\n"
            + body + "\n"
        )
    README.write_text(text)


if __name__ == "__main__":
    main()
