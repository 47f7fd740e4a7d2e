"""Build a seed fabric under mocks in preview or update mode and print every resource's name and type.

Run as a separate process by test_aws_preview.py: mocks are process-wide, and
the preview/update mode is fixed when they are set.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor


class EchoMocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return (f"{args.name}-id" if args.custom else "", dict(args.inputs))

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/ci", "userId": "AIDA", "id": "123456789012"}
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": [f"{args.args['region']}{letter}" for letter in "abc"], "id": args.args["region"]}
        return {}


def main() -> None:
    fabric_file, mode = sys.argv[1], sys.argv[2]
    mocks = EchoMocks()
    monitor = MockMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="transit", stack="preview", preview=mode == "preview", monitor=monitor)
    from components.aws.options import AwsOptions
    from testbed.fake_cloud import fabric_ca
    from components.fabric import Fabric, FabricArgs
    from components.loader import load_spec

    spec = load_spec(Path(fabric_file))
    secrets = {"fraDxMd5": pulumi.Output.secret("k1"), "fraErMd5": pulumi.Output.secret("k2")}
    options = AwsOptions(fabric_ca=fabric_ca(), image_id="ami-1", hosted_connection_ids={"fra-dx": "dxcon-1"})

    @pulumi.runtime.test
    def program() -> Any:
        fabric = Fabric(spec.name, FabricArgs(spec=spec, environment="dev", secrets=secrets, clouds=["aws"], options={"aws": options}))
        return fabric.outputs["aws_rules_emitted"]

    program()
    print(json.dumps(sorted(urn.split("::")[-2].split("$")[-1] + " " + urn.split("::")[-1] for urn in monitor.resources)))


if __name__ == "__main__":
    main()
