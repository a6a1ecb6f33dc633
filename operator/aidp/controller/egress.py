"""Applying egress objects: server-side apply of what the backend renders, deletion of the rest.

Drift (a generated object edited or deleted) is repaired on the next sync: every sync compares the
live managed objects with the rendered ones (`same_spec`: every field aidp sets, exactly). User-written
objects are never touched: only objects labelled `app.kubernetes.io/managed-by: aidp` with an aidp
egress role are listed or deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from aidp import kube, opadata
from aidp.config import MANAGED_BY
from aidp.controller.resources import list_all, to_dict
from aidp.egress import backends
from aidp.egress.clusternetworkpolicy import NAMESPACE_LABEL
from aidp.egress.model import POLICY_LABEL, ROLE_LABEL, Backend, EgressContext
from aidp.model import Policy

log = logging.getLogger("aidp.egress")
PARALLEL_WRITES = 16  # as many egress objects written at once


def resource_for(group: str, version: str, plural: str, kind: str, cluster_scoped: bool = False) -> Any:
    if cluster_scoped:
        return create_global_resource(group, version, kind, plural)
    return create_namespaced_resource(group, version, kind, plural)


KINDS = {
    "networkpolicies": "NetworkPolicy",
    "ciliumnetworkpolicies": "CiliumNetworkPolicy",
    "clusternetworkpolicies": "ClusterNetworkPolicy",
    "adminnetworkpolicies": "AdminNetworkPolicy",
}


def namespace_of(obj: Mapping[str, Any]) -> str:
    """The namespace an egress object is for: its own, or (cluster-scoped objects) its label's."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or (meta.get("labels") or {}).get(NAMESPACE_LABEL, ""))


def covers(want: Any, have: Any) -> bool:
    """True when every field set in `want` has the same value in `have` (server defaults ignored)."""
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(covers(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(covers, want, have))
    return bool(want == have)


def same_spec(want: Mapping[str, Any], have: Any) -> bool:
    """True when every field that `want` sets has exactly its value in `have`: inside such a field
    nothing may differ, be missing or be added (an added `endPort`, a narrower selector or an extra
    peer is drift; these fields are atomic, so a forced apply replaces them whole). Fields of `have`
    that `want` does not set are someone else's and are ignored; an empty list equals an absent one
    (the API server drops empty lists)."""
    if not isinstance(have, Mapping):
        return False
    return all(_normal(v) == _normal(have.get(k)) for k, v in want.items())


def _normal(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = {k: _normal(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, list):
        return [_normal(v) for v in value] or None
    return value


@dataclass
class EgressResult:
    applied: int = 0
    deleted: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # "ns/name" of the object -> error
    # (namespace, aidp.io/policy label value of the policy) -> names of its objects
    by_policy: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # namespaces whose policies are all dryrun: observed, given no objects (backends.observed)
    observed: frozenset[str] = frozenset()


def key_of(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of an egress object."""
    meta = obj["metadata"]
    return (str(obj["kind"]), str(meta.get("namespace", "")), str(meta["name"]))


@dataclass(frozen=True)
class NamespaceRendering:
    """A namespace's egress objects as last rendered: what the rendering depended on (`key`), the
    objects, their fingerprints and keys, and the object names of each policy."""

    key: Any
    objects: list[dict[str, Any]]
    prints: list[str]
    keys: list[tuple[str, str, str]]
    by_policy: dict[tuple[str, str], list[str]]

    @classmethod
    def of(cls, key: Any, objects: list[dict[str, Any]]) -> NamespaceRendering:
        by_policy: dict[tuple[str, str], list[str]] = {}
        for obj in objects:
            pol = obj["metadata"]["labels"].get(POLICY_LABEL)
            if pol:
                by_policy.setdefault((namespace_of(obj), pol), []).append(obj["metadata"]["name"])
        return cls(
            key,
            objects,
            # what the applier remembers of each object it wrote: a digest, where the JSON is a
            # kilobyte or more (11,000 objects at 10,000 policies)
            [opadata.digest(o) for o in objects],
            [key_of(o) for o in objects],
            by_policy,
        )


class EgressApplier:
    def __init__(self, client: AsyncClient, backend: Backend) -> None:
        self.client = client
        self.backend = backend
        self._applied: dict[tuple[str, str, str], str] | None = None  # what the last apply wrote
        self._rendered: dict[str, NamespaceRendering] = {}  # namespace -> its last rendering
        self.cluster_scoped = backend.cluster_scoped
        self.resources = {
            KINDS[p]: resource_for(g, v, p, KINDS[p], backend.cluster_scoped) for g, v, p in backend.kinds
        }

    async def reconcile(
        self,
        policies: Sequence[Policy],
        ctx: EgressContext,
        *,
        verify_live: bool = True,
        namespace_keys: Mapping[str, str] | None = None,
    ) -> EgressResult:
        """Apply what the backend renders for `policies`.

        With `verify_live` (full resyncs, events on managed objects) the live objects are listed
        and compared, which repairs drift; otherwise only objects whose rendering changed since the
        last apply are written (a policy change touches a handful of objects, not thousands).
        `namespace_keys` (namespace -> digest of its policies): a namespace whose digest and
        context are as at the last sync is not rendered again (10,000 policies take a second to
        render); without it, or with `verify_live`, everything is.
        """
        # the renderings kept between passes hold no objects (`_forget_objects`), so a pass that
        # must compare everything (with the live objects, or after a failed write) renders all
        verify = verify_live or self._applied is None
        previous = self._rendered
        desired, prints, observed = self._render(policies, ctx, None if verify else namespace_keys)
        result = EgressResult(observed=observed)
        for rendering in self._rendered.values():
            for pol_key, names in rendering.by_policy.items():
                result.by_policy.setdefault(pol_key, []).extend(names)
        try:
            if not verify:
                return await self._apply_changes(previous, result)
            return await self._verify(desired, prints, result)
        finally:
            self._forget_objects()

    def _forget_objects(self) -> None:
        """Keep of each namespace's rendering what the next incremental pass reads (its key, the
        fingerprints and keys of its objects, the names of each policy's), not the objects: a
        namespace rendered again brings its new objects, one that was not is as applied. At 10,000
        policies the objects were 30 MB held for nothing."""
        self._rendered = {
            ns: r if not r.objects else dataclasses.replace(r, objects=[]) for ns, r in self._rendered.items()
        }

    async def _verify(
        self, desired: list[dict[str, Any]], prints: list[str], result: EgressResult
    ) -> EgressResult:
        """List the live managed objects, write those missing or different, delete the rest."""
        want = {key_of(o): o for o in desired}
        fingerprints = {key_of(o): f for o, f in zip(desired, prints, strict=True)}
        live: dict[tuple[str, str, str], dict[str, Any]] = {}
        for kind, res in self.resources.items():
            selector = {**MANAGED_BY, ROLE_LABEL: None}
            try:
                scope = None if self.cluster_scoped else "*"
                async for item in list_all(self.client, res, namespace=scope, labels=selector):
                    d = to_dict(item)
                    live[(kind, d["metadata"].get("namespace", ""), d["metadata"]["name"])] = d
            except kube.KUBE_ERRORS as err:
                result.errors[kind] = f"cannot list {kind}: {kube.error_text(err)}"
                return result
        stale = {
            key
            for key, obj in want.items()
            if (current := live.get(key)) is None
            or not same_spec(obj["spec"], current.get("spec"))
            or not covers(obj["metadata"], current.get("metadata"))
        }
        return await self._write(want, stale, set(live) - set(want), fingerprints, result, replace=True)

    def _render(
        self, policies: Sequence[Policy], ctx: EgressContext, keys: Mapping[str, str] | None
    ) -> tuple[list[dict[str, Any]], list[str], frozenset[str]]:
        """backends.render_all's objects (and their fingerprints), namespace by namespace, reusing
        the last rendering of a namespace whose policies (`keys`) and context did not change; and
        the observed namespaces, which get none."""
        by_ns: dict[str, list[Policy]] = defaultdict(list)
        for p in policies:
            by_ns[p.namespace].append(p)
        for ns in ctx.extra_cut:
            by_ns.setdefault(ns, [])
        observed = frozenset(backends.observed(by_ns, ctx))
        for ns in observed:
            del by_ns[ns]
        shared = (
            tuple(sorted((h, tuple(c)) for h, c in ctx.addresses.by_host.items())),
            ctx.today,
            repr(ctx.settings),
        )
        rendered: dict[str, NamespaceRendering] = {}
        objects: list[dict[str, Any]] = []
        prints: list[str] = []
        for ns in sorted(by_ns):
            key = (shared, keys.get(ns) if keys is not None else None, tuple(ctx.extra_cut.get(ns, ())))
            hit = self._rendered.get(ns)
            if keys is not None and key[1] is not None and hit is not None and hit.key == key:
                rendered[ns] = hit
            else:
                objs = self.backend.render(ns, sorted(by_ns[ns], key=lambda p: p.name), ctx)
                rendered[ns] = NamespaceRendering.of(key, objs)
            objects.extend(rendered[ns].objects)
            prints.extend(rendered[ns].prints)
        self._rendered = rendered
        return objects, prints, observed

    async def _apply_changes(
        self, previous: Mapping[str, NamespaceRendering], result: EgressResult
    ) -> EgressResult:
        """Write what changed since the last apply, looking only at the namespaces rendered again
        (and those gone): a namespace whose rendering was reused is as the last apply left it."""
        applied = self._applied or {}
        current = self._rendered
        touched = {ns for ns, r in current.items() if previous.get(ns) is not r} | (
            set(previous) - set(current)
        )
        want: dict[tuple[str, str, str], dict[str, Any]] = {}
        fingerprints: dict[tuple[str, str, str], str] = {}
        before: set[tuple[str, str, str]] = set()
        for ns in touched:
            if ns in current:
                r = current[ns]
                want.update(zip(r.keys, r.objects, strict=True))
                fingerprints.update(zip(r.keys, r.prints, strict=True))
            if ns in previous:
                before.update(previous[ns].keys)
        changed = {key for key in want if applied.get(key) != fingerprints[key]}
        return await self._write(want, changed, before - set(want), fingerprints, result)

    async def _write(
        self,
        want: dict[tuple[str, str, str], dict[str, Any]],
        to_apply: set[tuple[str, str, str]],
        to_delete: set[tuple[str, str, str]],
        fingerprints: dict[tuple[str, str, str], str],
        result: EgressResult,
        *,
        replace: bool = False,
    ) -> EgressResult:
        """Server-side apply `to_apply`, then delete `to_delete` (PARALLEL_WRITES at a time: the
        first sync of 10,000 policies writes some 11,000 objects); remember what is now in force:
        `fingerprints` is all of it (`replace`) or what changed in the namespaces looked at."""
        limit = asyncio.Semaphore(PARALLEL_WRITES)

        async def apply(key: tuple[str, str, str]) -> None:
            async with limit:
                try:
                    await self.client.apply(
                        self.resources[key[0]].from_dict(want[key]), field_manager="aidp", force=True
                    )
                    result.applied += 1
                except kube.KUBE_ERRORS as err:
                    result.errors[f"{key[1]}/{key[2]}"] = kube.error_text(err)

        async def delete(key: tuple[str, str, str]) -> None:
            async with limit:
                try:
                    await self.client.delete(self.resources[key[0]], key[2], namespace=key[1] or None)
                    result.deleted += 1
                except kube.KUBE_ERRORS as err:
                    if kube.error_code(err) != 404:
                        result.errors[f"{key[1]}/{key[2]}"] = kube.error_text(err)

        await asyncio.gather(*(apply(key) for key in sorted(to_apply)))
        await asyncio.gather(*(delete(key) for key in sorted(to_delete)))
        if result.applied or result.deleted:
            log.info("egress: applied %d, deleted %d objects", result.applied, result.deleted)
        if result.errors:
            self._applied = None  # the next pass compares with the live objects
        elif replace or self._applied is None:
            self._applied = dict(fingerprints)
        else:
            for key in to_delete:
                self._applied.pop(key, None)
            self._applied.update(fingerprints)
        return result
