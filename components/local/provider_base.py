"""What every local dynamic provider shares: replace-on-change diffs and drift.

Local resources are cheap to rebuild and hold kernel state that cannot be
edited in place safely, so any input change replaces (delete first, because
names are fixed). `__provider` (the pickled code) and computed outputs are left
out of the diff so that editing this library does not rebuild a running fabric.
"""
from __future__ import annotations

from typing import Any

from pulumi.dynamic import DiffResult, ResourceProvider, UpdateResult

PROVIDER_KEY = "__provider"


class LocalProvider(ResourceProvider):
    """Base for the local providers; subclasses set OUTPUT_KEYS and `alive`."""

    OUTPUT_KEYS: frozenset[str] = frozenset()

    def inputs_of(self, props: dict[str, Any]) -> dict[str, Any]:
        """The user-given inputs in props, without computed outputs."""
        return {k: v for k, v in props.items() if k != PROVIDER_KEY and k not in self.OUTPUT_KEYS}

    def alive(self, id_: str, outs: dict[str, Any]) -> bool:
        """Whether the thing behind `id_` still exists; subclasses look at the kernel."""
        return True

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old, new = self.inputs_of(olds), self.inputs_of(news)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if not changed and not self.alive(id_, olds):
            changed = sorted(new)
        return DiffResult(changes=bool(changed), replaces=changed, stables=[], delete_before_replace=True)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Every change is a replace (see diff); keep full outputs if the engine asks anyway.
        return UpdateResult(outs={**olds, **self.inputs_of(news)})
