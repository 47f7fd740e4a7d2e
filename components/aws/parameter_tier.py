"""Which SSM tier holds a node's `ca` parameter, decided before anything is created (components/aws/parameters.py).

Pure, so `transit validate`'s target hooks can refuse a CA chain no parameter can hold.
"""
from __future__ import annotations

STANDARD_BYTES = 4096
"""The largest value a Standard-tier parameter holds (free)."""
ADVANCED_BYTES = 8192
"""The largest value an Advanced-tier parameter holds (charged per parameter and month)."""


def ca_tier(ca_cert_pem: str) -> str:
    """Standard when the CA chain fits in 4,096 bytes, Advanced otherwise."""
    return "Standard" if len(ca_cert_pem.encode()) <= STANDARD_BYTES else "Advanced"


def tier_problems(ca_cert_pem: str) -> list[str]:
    """A CA chain no SSM parameter can hold."""
    size = len(ca_cert_pem.encode())
    if size > ADVANCED_BYTES:
        return [f"transit:fabricCaCert: the CA chain is {size} bytes; an SSM parameter holds at most {ADVANCED_BYTES} (Advanced tier)"]
    return []
