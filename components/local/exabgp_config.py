"""Render ExaBGP 5 config for an on-prem connector's session with the DC router.

Pure. The connector announces the fabric's cloud CIDRs with itself as next hop
(seed 000), so the data center sends that traffic to the connector.
"""
from __future__ import annotations

from components.local.layout import ExaBgpSpec

ENVIRONMENT = {
    "exabgp.daemon.user": "root",
    "exabgp.daemon.daemonize": "false",
    "exabgp.log.destination": "stdout",
}
"""ExaBGP refuses to run as root unless told; it runs in the foreground under the Daemon resource."""


def render(session: ExaBgpSpec, md5_key: str) -> str:
    """The config file; it holds the MD5 key, so it is only ever written as a secret file."""
    routes = "".join(f"        route {prefix} next-hop self;\n" for prefix in session.announce)
    return (
        f"neighbor {session.peer_ip} {{\n"
        f"    router-id {session.local_ip};\n"
        f"    local-address {session.local_ip};\n"
        f"    local-as {session.local_asn};\n"
        f"    peer-as {session.peer_asn};\n"
        f"    md5-password \"{md5_key}\";\n"
        f"    hold-time 9;\n"
        f"    family {{\n        ipv4 unicast;\n    }}\n"
        f"    static {{\n{routes}    }}\n"
        f"}}\n"
    )
