"""Fabric specs of the seeds, as the spec engineer's YAMLs will hold them (built here until they land)."""
from __future__ import annotations

from typing import Any

SEED_000: dict[str, Any] = {
    "name": "acme",
    "edges": [
        {"name": "aws-use1", "cloud": "aws", "region": "us-east-1", "cidr": "10.250.37.0/24"},
        {"name": "az-weu", "cloud": "azure", "region": "westeurope", "cidr": "10.254.37.0/24"},
    ],
    "networks": [
        {"name": "aws-app", "cloud": "aws", "region": "us-east-1", "cidrs": ["10.30.40.0/24"], "attach": "connector"},
        {"name": "az-app", "cloud": "azure", "region": "westeurope", "cidrs": ["172.18.40.0/24"], "attach": "native"},
    ],
    "groups": {"db": ["172.18.40.10/32"]},
    "policy": {
        "default": "deny",
        "rules": [
            {"name": "no-ssh", "from": "any", "to": "any", "proto": "tcp", "ports": [22], "action": "deny"},
            {"name": "app-to-db", "from": "aws-app", "to": "db", "proto": "tcp", "ports": [5432], "action": "permit"},
        ],
        "tests": [
            {"from": "aws-app", "to": "db", "proto": "tcp", "port": 5432, "expect": "permit"},
            {"from": "aws-app", "to": "db", "proto": "tcp", "port": 22, "expect": "deny"},
        ],
    },
}

SEED_004: dict[str, Any] = {
    "name": "multicloud",
    "edges": [
        {"name": "aws-euc1", "cloud": "aws", "region": "eu-central-1", "cidr": "10.250.10.0/24"},
        {"name": "az-neu", "cloud": "azure", "region": "northeurope", "cidr": "10.254.10.0/24"},
    ],
    "networks": [
        {"name": "aws-vpc", "cloud": "aws", "region": "eu-central-1", "cidrs": ["172.31.0.0/16"], "attach": "native"},
        {"name": "az-vnet", "cloud": "azure", "region": "northeurope", "cidrs": ["10.6.0.0/16"], "attach": "native"},
    ],
    "circuits": [
        {
            "name": "fra-dx", "provider": "aws-direct-connect", "connection": "hosted", "location": "EqFA5",
            "bandwidth_mbps": 50, "vlan": 101,
            "bgp": {"customer_asn": 65000, "peer_asn": 64512, "peering": ["10.0.0.0/31"], "md5_secret": "fraDxMd5"},
            "attaches": ["aws-vpc"],
        },
        {
            "name": "fra-er", "provider": "azure-expressroute", "connection": "hosted", "location": "Frankfurt",
            "bandwidth_mbps": 50, "vlan": 100,
            "bgp": {"customer_asn": 65000, "peer_asn": 12076, "peering": ["10.0.0.12/30", "10.0.0.16/30"], "md5_secret": "fraErMd5"},
            "attaches": ["az-vnet"],
        },
    ],
    "cloud_router": {"asn": 65000, "circuits": ["fra-dx", "fra-er"]},
    "policy": {
        "default": "deny",
        "rules": [
            {"name": "icmp", "from": "any", "to": "any", "proto": "icmp", "action": "permit"},
            {"name": "aws-to-az-web", "from": "aws-vpc", "to": "az-vnet", "proto": "tcp", "ports": [443], "action": "permit"},
        ],
    },
}
