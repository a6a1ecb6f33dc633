"""The durable copy of what aidp loads into OPA (pure encoding).

The copy is sharded: a head ConfigMap (the configured name, `aidp-opa-bundle`) holds the Rego
modules, the data document without the policies and the digest of every shard; SHARDS ConfigMaps
(`<name>-00` ... `<name>-15`) hold the policies of the namespaces that hash to them, each
gzip-compressed in binaryData. A change rewrites the shards whose namespaces changed, then the
head (a ConfigMap holds at most 1 MiB: 16 shards hold well over 10,000 policies; see
docs/operations.md). Whoever restores an OPA replica (the operator, or `aidp opa-agent` while the
operator is down) reads the head, then its shards, and loads exactly that. The format before the
shards (one ConfigMap, key `bundle.json.gz`, modules and the whole data document) is still read.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aidp.config import MANAGED_BY

KEY = "bundle.json.gz"  # the format before the shards: one ConfigMap with everything (read only)
HEAD_KEY = "head.json.gz"  # the head of the sharded format: modules, data but policies, shard digests
SHARD_KEY = "policies.json.gz"  # one shard: {"policies": {namespace: {name: policy}}}
SHARDS = 16
SHARD_DIGEST_ANNOTATION = "aidp.io/shard-digest"
# a ConfigMap holds at most 1 MiB (1,048,576 bytes) of data; keep a margin for metadata and base64
MAX_SHARD_BYTES = 700_000
REVISION_ANNOTATION = "aidp.io/revision"
# what OPA's bundle plugin owns when it pulls the bundle (`opa_bundle`): data.aidp and every module
# under it, and data.aidp_policies (the policies: aidp.render.opa_documents); system/main.rego
# (package system) is loaded from a file at OPA's start instead, because a bundle root `system`
# would also own (and erase) system.authz
OPA_BUNDLE_ROOT = "aidp"
OPA_BUNDLE_MEDIA_TYPE = "application/vnd.openpolicyagent.bundles"


@dataclass(frozen=True)
class Bundle:
    """Rego modules by OPA policy id, and the document loaded at data.aidp (a dict, or the
    operator's aidp.opadata.Document, which decodes the policies where they are read)."""

    modules: dict[str, str]
    data: Mapping[str, Any]

    @property
    def revision(self) -> str:
        return str(self.data.get("revision", ""))

    def encode(self) -> bytes:
        from aidp.opadata import materialise

        doc = {"modules": self.modules, "data": materialise(self.data)}
        return gzip.compress(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), mtime=0)

    def opa_bundle(self) -> bytes:
        """The bundle as OPA's bundle plugin takes it: a gzipped tarball with a manifest (revision,
        root `aidp`), the modules under aidp/ and the data document at data.aidp. OPA activates
        such a bundle in one storage transaction, so modules and data change together."""
        import io
        import tarfile

        from aidp.render import opa_documents

        docs = opa_documents(self.data)  # data.aidp and data.aidp_policies
        manifest = {"revision": self.revision, "roots": sorted(docs)}
        files = {"/.manifest": json.dumps(manifest, sort_keys=True).encode()}
        for root, doc in sorted(docs.items()):
            files[f"/{root}/data.json"] = json.dumps(doc, sort_keys=True).encode()
        for module_id, source in sorted(self.modules.items()):
            if module_id.startswith(f"{OPA_BUNDLE_ROOT}/"):
                files[f"/{module_id}"] = source.encode()
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(content), 0, 0o644
                tar.addfile(info, io.BytesIO(content))
        return out.getvalue()

    @classmethod
    def decode(cls, blob: bytes) -> Bundle:
        doc = json.loads(gzip.decompress(blob))
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("modules"), dict)
            or not isinstance(doc.get("data"), dict)
        ):
            raise ValueError("durable bundle lacks modules or data")
        return cls(modules=doc["modules"], data=doc["data"])


def configmap(name: str, namespace: str, bundle: Bundle) -> dict[str, Any]:
    """The ConfigMap manifest holding `bundle` in the format before the shards (one key with
    everything). The operator no longer writes it; it is read, for upgrades (and tests)."""
    return _manifest(name, namespace, {REVISION_ANNOTATION: bundle.revision}, KEY, bundle.encode())


# --- the sharded format ---------------------------------------------------------------------------


class DurableTooLarge(ValueError):
    """A shard of the durable copy would not fit in a ConfigMap."""


class DurableUnreadable(ValueError):
    """The durable copy is missing or cannot be decoded."""


@functools.lru_cache(maxsize=65536)
def shard_of(namespace: str, shards: int = SHARDS) -> int:
    """The shard that holds a namespace's policies (stable: a hash of the name)."""
    return int(hashlib.sha256(namespace.encode()).hexdigest()[:8], 16) % shards


def shard_name(base: str, index: int) -> str:
    return f"{base}-{index:02d}"


def shard_digest(namespace_digests: Mapping[str, str]) -> str:
    """The digest of a shard: of its namespaces and their digests."""
    h = hashlib.sha256()
    for ns in sorted(namespace_digests):
        h.update(f"{ns}:{namespace_digests[ns]}\0".encode())
    return h.hexdigest()[:16]


def _gz(doc: Any) -> bytes:
    return gzip.compress(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), mtime=0)


def _manifest(
    name: str, namespace: str, annotations: dict[str, str], key: str, blob: bytes
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
            "annotations": annotations,
        },
        "binaryData": {key: base64.b64encode(blob).decode()},
    }


def head_configmap(
    name: str, namespace: str, modules: Mapping[str, str], data: Mapping[str, Any], shards: Mapping[str, str]
) -> dict[str, Any]:
    """The head: the modules, `data` (data.aidp without "policies", with "revision") and
    shard ConfigMap name -> the digest it must carry."""
    top = {k: v for k, v in data.items() if k != "policies"}
    doc = {"modules": dict(modules), "data": top, "shards": dict(shards)}
    revision = str(data.get("revision", ""))
    return _manifest(name, namespace, {REVISION_ANNOTATION: revision}, HEAD_KEY, _gz(doc))


def shard_configmap(
    base: str, namespace: str, index: int, policies: Mapping[str, Any], digest: str
) -> dict[str, Any]:
    """Shard `index`: the policies of its namespaces (namespace -> name -> policy document)."""
    blob = _gz({"policies": dict(policies)})
    name = shard_name(base, index)
    if len(blob) > MAX_SHARD_BYTES:
        raise DurableTooLarge(
            f"durable copy shard {name} would hold {len(blob)} compressed bytes, more than "
            f"{MAX_SHARD_BYTES} (a ConfigMap holds at most 1 MiB): too many or too large AIDataPolicies"
        )
    return _manifest(name, namespace, {SHARD_DIGEST_ANNOTATION: digest}, SHARD_KEY, blob)


def shard_digests(namespace_digests: Mapping[str, str], shards: int = SHARDS) -> dict[int, str]:
    """Shard index -> digest, for every shard (empty ones too)."""
    by_shard: dict[int, dict[str, str]] = {i: {} for i in range(shards)}
    for ns, d in namespace_digests.items():
        by_shard[shard_of(ns, shards)][ns] = d
    return {i: shard_digest(members) for i, members in by_shard.items()}


def durable_configmaps(
    name: str,
    namespace: str,
    modules: Mapping[str, str],
    data: Mapping[str, Any],
    namespace_digests: Mapping[str, str],
    only: set[int] | None = None,
) -> list[dict[str, Any]]:
    """The shard ConfigMaps (all, or the indexes in `only`) and then the head, in the order to
    write them: a reader that sees the head finds shards at least as new."""
    policies: Mapping[str, Any] = data.get("policies") or {}
    digests = shard_digests(namespace_digests)
    members: dict[int, dict[str, Any]] = {i: {} for i in digests}
    for ns in sorted(policies):
        shard = shard_of(ns)
        if only is None or shard in only:  # read (decoded, from the operator's state) only there
            members[shard][ns] = policies[ns]
    out = [
        shard_configmap(name, namespace, i, members[i], digests[i])
        for i in sorted(digests)
        if only is None or i in only
    ]
    out.append(
        head_configmap(name, namespace, modules, data, {shard_name(name, i): d for i, d in digests.items()})
    )
    return out


# binaryData and annotations of a ConfigMap, or None when it does not exist
ShardReader = Callable[[str], "tuple[Mapping[str, str], Mapping[str, str]] | None"]


def decode_durable(binary: Mapping[str, str], read_shard: ShardReader) -> tuple[Bundle, list[str]]:
    """The bundle a head ConfigMap's binaryData stands for (either format), and the shards that
    are missing or do not carry the digest the head names (being written, or the operator stopped
    between writes: what they hold is loaded anyway, each namespace whole; the operator reloads
    the replica once it runs). DurableUnreadable when there is no bundle at all."""
    import base64

    if not binary.get(HEAD_KEY):
        blob = binary.get(KEY)
        if not blob:
            raise DurableUnreadable("the ConfigMap holds no durable bundle")
        return Bundle.decode(base64.b64decode(blob)), []
    doc = json.loads(gzip.decompress(base64.b64decode(binary[HEAD_KEY])))
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(k), dict) for k in ("modules", "data", "shards")
    ):
        raise DurableUnreadable("the durable head lacks modules, data or shards")
    policies: dict[str, Any] = {}
    problems = []
    for name, want in sorted(doc["shards"].items()):
        got = read_shard(name)
        if got is None:
            problems.append(f"{name}: missing")
            continue
        shard_binary, annotations = got
        if annotations.get(SHARD_DIGEST_ANNOTATION) != want:
            problems.append(
                f"{name}: digest {annotations.get(SHARD_DIGEST_ANNOTATION)}, the head names {want}"
            )
        blob = shard_binary.get(SHARD_KEY)
        if not blob:
            problems.append(f"{name}: empty")
            continue
        part = json.loads(gzip.decompress(base64.b64decode(blob)))
        if isinstance(part, dict) and isinstance(part.get("policies"), dict):
            policies.update(part["policies"])
        else:
            problems.append(f"{name}: no policies")
    data = {**doc["data"], "policies": dict(sorted(policies.items()))}
    return Bundle(modules=doc["modules"], data=data), problems
