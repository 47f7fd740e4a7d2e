"""A valid AgentConfig and the secrets a store holds for it, shared by the boot tests."""
from __future__ import annotations

from typing import Any

SECRETS = {"ca": "-----BEGIN CERTIFICATE-----\nCA\n", "cert": "-----BEGIN CERTIFICATE-----\nNODE\n", "key": "-----BEGIN PRIVATE KEY-----\nKEY\n"}


def agent(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "connector-dc-fra",
        "role": "connector",
        "identity": "spiffe://acme/connector-dc-fra",
        "local_cidrs": ["192.168.0.0/16"],
        "peers": [{"name": "edge-aws-use1", "identity": "spiffe://acme/edge-aws-use1", "private_addr": "10.250.37.10", "cidrs": ["10.30.40.0/24"]}],
        "tls": {"ca": "/etc/transit/tls/ca.pem", "cert": "/etc/transit/tls/node.pem", "key": "/etc/transit/tls/node.key"},
    }
    doc.update(changes)
    return doc
