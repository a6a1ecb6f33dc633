"""The data.aidp document the operator keeps in OPA, one namespace at a time (pure).

With 10,000 AIDataPolicies in 1,000 namespaces a change to one policy must not cost a re-render,
a re-hash and a re-push of everything: `DataState` holds the rendered document per namespace with
its digest, the revision is a hash of those digests (not of the whole document), and `delta`
gives what takes a replica from one state to the next: the namespaces to write at
data.aidp_policies[namespace] (or remove), then one JSON Patch (RFC 6902) on data.aidp for the
other keys that changed and the revision, last (aidp.render.opa_documents: why the policies live
outside data.aidp in OPA).

Each namespace's document is held as its canonical JSON (`encode`), the bytes its digest hashes:
690 bytes per policy where the decoded dicts took about 3 KB (31 MiB of the operator at 10,000
policies). It is decoded where it is read: the namespaces a delta writes, the shards of the durable
copy being written, and `document()`, the whole document, for a replica loaded in full.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aidp.model import Policy
from aidp.render import canonical_json, policy_document

POLICIES = "policies"
REVISION = "revision"


def namespace_document(policies: Iterable[Policy]) -> dict[str, Any]:
    """The policies of one namespace as data.aidp.policies[namespace] holds them: name -> document,
    sorted by name. Two policies with the same name are a ValueError."""
    docs: dict[str, Any] = {}
    for policy in policies:
        if policy.name in docs:
            raise ValueError(f"duplicate AIDataPolicy {policy.ref}")
        docs[policy.name] = policy_document(policy)
    return dict(sorted(docs.items()))


def encode(value: object) -> bytes:
    """The canonical JSON of `value` (aidp.render.canonical_json), as bytes."""
    return canonical_json(value).encode("utf-8")


def decode(raw: bytes) -> dict[str, Any]:
    """A namespace document back from `encode`."""
    doc = msgspec.json.decode(raw)
    if not isinstance(doc, dict):
        raise ValueError("a namespace document is a JSON object")
    return doc


def digest_of(raw: bytes) -> str:
    """First 16 hex digits of the SHA-256 of encoded bytes."""
    return hashlib.sha256(raw).hexdigest()[:16]


def digest(value: object) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of `value`."""
    return digest_of(encode(value))


class Policies(Mapping[str, dict[str, Any]]):
    """data.aidp.policies of a state, read-only: namespace -> its document, decoded on each
    access (nothing decoded is kept)."""

    def __init__(self, namespaces: Mapping[str, bytes]) -> None:
        self._namespaces = namespaces

    def __getitem__(self, namespace: str) -> dict[str, Any]:
        return decode(self._namespaces[namespace])

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._namespaces))

    def __len__(self) -> int:
        return len(self._namespaces)


class Document(Mapping[str, Any]):
    """The whole data.aidp document of a state, read-only, with its policies decoded where they
    are read (`Policies`); `materialise` turns it, or any such mapping, into plain dicts."""

    def __init__(self, state: DataState) -> None:
        self._state = state

    def _keys(self) -> list[str]:
        return sorted({*self._state.top, POLICIES, REVISION})

    def __getitem__(self, key: str) -> Any:
        if key == POLICIES:
            return Policies(self._state.namespaces)
        if key == REVISION:
            return self._state.revision
        return self._state.top[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


def materialise(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` (a data.aidp document, a `Document` or a dict) as plain dicts, for JSON encoders."""
    out = dict(data)
    if POLICIES in out:
        out[POLICIES] = dict(out[POLICIES])
    return out


@dataclass(frozen=True)
class DataState:
    """data.aidp split in what changes per namespace (`namespaces`, with `digests`) and the rest
    (`top`: config, cluster guardrails, guardrailsOf, detector). `revision` covers all of it and
    the digest of the Rego modules it goes with."""

    top: Mapping[str, Any]
    namespaces: Mapping[str, bytes]  # namespace -> encode(its document)
    digests: Mapping[str, str]
    revision: str
    top_digests: Mapping[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The whole data.aidp document (namespaces sorted), decoded."""
        return materialise(self.view())

    def view(self) -> Document:
        """The whole data.aidp document, decoded where it is read."""
        return Document(self)

    def namespace(self, namespace: str) -> dict[str, Any]:
        """One namespace's document, decoded."""
        return decode(self.namespaces[namespace])


def build(
    modules_digest: str,
    top: Mapping[str, Any],
    namespaces: Mapping[str, bytes],
    digests: Mapping[str, str],
) -> DataState:
    """The state with its revision. `namespaces` holds each namespace's `encode`d document and
    `digests` its `digest_of` (the caller keeps them, computing only those that changed)."""
    if POLICIES in top or REVISION in top:
        raise ValueError("top holds neither policies nor revision")
    if set(digests) != set(namespaces):
        raise ValueError("a digest for every namespace, and only for them")
    top_digests = {key: digest(value) for key, value in top.items()}
    h = hashlib.sha256(modules_digest.encode() + b"\0")
    for key in sorted(top_digests):
        h.update(f"{key}={top_digests[key]}\0".encode())
    for ns in sorted(digests):
        h.update(f"{ns}:{digests[ns]}\0".encode())
    return DataState(dict(top), dict(namespaces), dict(digests), h.hexdigest()[:16], top_digests)


def _pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901) to the parts."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True)
class Delta:
    """From one state to the next, in OPA's layout: `put` and `remove` at
    data.aidp_policies[namespace], then `top`, the JSON Patch on data.aidp (changed keys, keys
    gone, and the revision last)."""

    put: Mapping[str, Mapping[str, Any]]
    remove: tuple[str, ...]
    top: list[dict[str, Any]]
    revision: str


def delta(old: DataState, new: DataState) -> Delta:
    """What turns a replica holding `old` into one holding `new`: the namespaces and top-level
    keys whose digest changed (added or replaced), the ones gone (removed), then the revision."""
    ops: list[dict[str, Any]] = []
    for key in sorted(set(old.top_digests) - set(new.top_digests)):
        ops.append({"op": "remove", "path": _pointer(key)})
    for key in sorted(new.top_digests):
        if old.top_digests.get(key) != new.top_digests[key]:
            ops.append({"op": "add", "path": _pointer(key), "value": new.top[key]})
    ops.append({"op": "add", "path": _pointer(REVISION), "value": new.revision})
    put = {ns: new.namespace(ns) for ns in sorted(new.digests) if old.digests.get(ns) != new.digests[ns]}
    return Delta(put, tuple(sorted(set(old.digests) - set(new.digests))), ops, new.revision)


def changed_namespaces(old: DataState | None, new: DataState) -> set[str]:
    """The namespaces whose policies differ between the states (all of them without `old`)."""
    if old is None:
        return set(new.digests)
    return {ns for ns in set(old.digests) | set(new.digests) if old.digests.get(ns) != new.digests.get(ns)}
