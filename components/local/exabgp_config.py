"""ExaBGP config for an on-prem connector: the data plane's renderer (dataplane/bgp_session.py).

The image's boot step renders the same file on a data-center VM, so the
renderer lives in the data plane and the local environment reuses it.
"""
from __future__ import annotations

from dataplane.bgp_session import ENVIRONMENT, render

__all__ = ["ENVIRONMENT", "render"]
