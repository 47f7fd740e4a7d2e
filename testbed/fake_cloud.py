"""A fake AWS account for Pulumi mocks: computed outputs per resource type and answers to the data calls.

Shared by the component tests (tests/component/conftest.py) and bench/aws_scale.py,
so both build the same program against the same account. Mocks stand in for the
cloud, which cannot be reached here.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi


class FakeCloud(pulumi.runtime.Mocks):
    """Ids are `<name>-id`; computed outputs are faked per resource type."""

    COMPUTED: dict[str, Callable[[str], dict[str, Any]]] = {
        "aws:ec2/eip:Eip": lambda n: {"publicIp": f"203.0.113.{sum(map(ord, n)) % 250 + 1}", "allocationId": f"{n}-alloc"},
        "aws:ec2/vpcEndpointService:VpcEndpointService": lambda n: {"serviceName": f"com.amazonaws.vpce.mock.{n}"},
        "aws:lb/loadBalancer:LoadBalancer": lambda n: {"dnsName": f"{n}.elb.mock"},
        "aws:ec2/launchTemplate:LaunchTemplate": lambda n: {"latestVersion": 3},
        "aws:directconnect/connectionConfirmation:ConnectionConfirmation": lambda n: {},
        # A hosted connection read back (Connection.get): the partner's VLAN.
        "aws:directconnect/connection:Connection": lambda n: {"vlanId": FakeCloud.HOSTED_VLAN},
    }
    HOSTED_VLAN = 101
    """The VLAN the partner set on every hosted connection (the example fabrics' circuits use 101)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = {**args.inputs, "arn": f"arn:aws:mock::123456789012:{args.name}"}
        outputs.update(self.COMPUTED.get(args.typ, lambda n: {})(args.name))
        return (f"{args.name}-id" if args.custom else "", outputs)

    ZONE_LETTERS = "abc"
    """Zones every mocked region has, as region + letter (a test may give a region other names)."""

    CALLS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "aws:index/getAvailabilityZones:getAvailabilityZones": lambda a: {
            "names": [f"{a['region']}{letter}" for letter in FakeCloud.ZONE_LETTERS], "id": a["region"],
        },
        "aws:index/getCallerIdentity:getCallerIdentity": lambda a: {
            "accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/ci", "userId": "AIDA", "id": "123456789012",
        },
    }

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return self.CALLS.get(args.token, lambda a: {})(dict(args.args))
