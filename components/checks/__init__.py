"""Policy as code: rules over spec and plan, and proofs of reachability at every enforcement point.

Pure modules only (no Pulumi, no cloud SDK), so `transit check` runs in about
a second and the CrossGuard pack can reuse the same functions.
"""
