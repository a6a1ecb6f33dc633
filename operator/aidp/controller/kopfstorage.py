"""Kopf's per-event bookkeeping that aidp does not need.

Kopf builds a "diff base" for every event of every watched object (a deep copy of the whole
body, managedFields and status included) to find what changed for its `on.create/update/field`
handlers. aidp registers only `on.event` handlers, which get every event as it is and never read
a diff: with 10,000 AIDataPolicies (each status write comes back as an event) and every pod of a
governed namespace watched, that copy was the operator's largest CPU cost (py-spy, 10,000
policies: ~10% of the process in `DiffBaseStorage.build`'s deepcopy). `EventsOnly` builds an
empty essence and stores nothing; `check_events_only` refuses to start if a handler that would
need the diff base is ever registered.
"""

from __future__ import annotations

from collections.abc import Iterable

import kopf
from kopf._cogs.structs import bodies, dicts, patches


class EventsOnly(kopf.DiffBaseStorage):
    """A diff base for operators whose handlers are all `on.event`: nothing copied, nothing kept."""

    def build(
        self, *, body: bodies.Body, extra_fields: Iterable[dicts.FieldSpec] | None = None
    ) -> bodies.BodyEssence:
        return bodies.BodyEssence()

    def fetch(self, *, body: bodies.Body) -> bodies.BodyEssence | None:
        return bodies.BodyEssence()

    def store(self, *, body: bodies.Body, patch: patches.Patch, essence: bodies.BodyEssence) -> None:
        return None


def changing_handlers(registry: kopf.OperatorRegistry) -> list[str]:
    """The ids of the registered handlers that read Kopf's diff base (create, update, delete,
    resume, field; daemons and timers are spawned on essence changes)."""
    ids = [str(h.id) for h in registry._changing.get_all_handlers()]
    ids += [str(h.id) for h in registry._spawning.get_all_handlers()]
    return ids


def check_events_only(registry: kopf.OperatorRegistry) -> None:
    """Raise when a handler needs the diff base that `EventsOnly` does not keep."""
    ids = changing_handlers(registry)
    if ids:
        raise RuntimeError(f"handlers that need Kopf's diff base are registered ({ids}): drop EventsOnly")
