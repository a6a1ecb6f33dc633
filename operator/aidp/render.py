"""Everything aidp generates from AIDataPolicies, without a cluster.

- `render_data`: the `data.aidp` document the admission Rego evaluates against;
- `policy_modules`: the Rego modules pushed to OPA (by policy id, e.g. `aidp/admission.rego`);
- `render_objects`: both, plus the objects of an egress backend, as the list `aidp render` prints;
- `load_manifests` / `policies_from_manifests`: reading YAML or JSON files (the only file I/O here).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from aidp import paths as aidp_paths
from aidp.egress import backends as egress_backends
from aidp.egress.model import AddressBook, EgressContext
from aidp.model import API_VERSION, DEFAULT_EXCLUDED_NAMESPACES, KIND, Policy, PolicyError, split_api_version

DATA_PATH: Final = "aidp"  # OPA data path of the rendered document: data.aidp
# ... except its "policies", which OPA holds at data.aidp_policies (see `opa_documents`)
POLICIES_PATH: Final = "aidp_policies"
ADMISSION_QUERY: Final = "data.aidp.admission.decision"
WEBHOOK_QUERY: Final = "data.system.main"
# Modules that stay out of what is pushed: tests, and the management API authorization policy that
# OPA loads at start (it must be in force before anyone can push anything).
_NOT_PUSHED: Final = ("system/authz.rego",)
MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")


class ManifestError(ValueError):
    """A file that cannot be read or parsed as Kubernetes manifests."""


# --- the data document ---------------------------------------------------------------------------


def canonical_json(value: object) -> str:
    """JSON with sorted keys and no white space: the bytes the revision hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def revision_of(policies: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of {"config", "policies"}."""
    digest = hashlib.sha256(canonical_json({"config": config, "policies": policies}).encode("utf-8"))
    return digest.hexdigest()[:16]


def policy_document(policy: Policy) -> dict[str, Any]:
    """One policy as the Rego sees it: data.aidp.policies[namespace][name]."""
    spec = policy.spec
    review = spec.review
    return {
        "name": policy.name,
        "namespace": policy.namespace,
        "uid": policy.uid,
        "generation": policy.generation,
        "provider": spec.provider,
        "dataResidency": spec.data_residency,
        "endpoints": [e.to_dict() for e in policy.endpoints],
        "workloadSelector": spec.workload_selector.to_dict(),
        "serviceAccountNames": list(spec.service_account_names),
        "purpose": spec.purpose,
        "consent": {"required": spec.consent.required, "allowedBases": list(spec.consent.allowed_bases)},
        "retention": {
            "maxDays": spec.retention.max_days,
            "requireZeroDataRetention": spec.retention.require_zero_data_retention,
        },
        "dataCategories": {
            "allowed": list(spec.data_categories.allowed),
            "forbidden": list(spec.data_categories.forbidden),
        },
        "enforcement": spec.enforcement,
        "review": {
            "approvedBy": review.approved_by,
            "ticket": review.ticket,
            "expires": review.expires.isoformat() if review.expires else None,
        },
    }


def detector_document() -> dict[str, list[str]]:
    """The catalog's signature of AI use, for the Rego detector (policies/aidp/guardrails.rego):
    env-name globs (and the credential env names) and host globs."""
    from aidp import catalog

    providers = list(catalog.current())
    env = [g for p in providers for g in (*p.detection.env, *p.detection.credential_env)]
    hosts = [h for p in providers for h in p.detection.hosts]
    return {"env": list(dict.fromkeys(env)), "hosts": list(dict.fromkeys(hosts))}


def render_data(
    policies: Iterable[Policy],
    excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES,
    operator_users: Iterable[str] = (),
    guardrails: Mapping[str, Mapping[str, Any]] | None = None,
    guardrails_of: Mapping[str, Sequence[str]] | None = None,
    *,
    with_detector: bool = False,
) -> dict[str, Any]:
    """The data.aidp document: {"revision", "config", "policies": {namespace: {name: policy}}}.

    Deterministic: namespaces and names sorted, excluded namespaces deduplicated in the order given.
    `operator_users` (config.operatorUsers, sorted; left out when empty) are the user names that may
    set the approval label on pods and the governed label on namespaces. With ClusterAIDataPolicies,
    `guardrails` (name -> ClusterPolicy.to_document()) and `guardrails_of` (namespace -> the names
    selecting it) become data.aidp.cluster and data.aidp.guardrailsOf, with the catalog's detector
    (data.aidp.detector, also with `with_detector`: the operator and the audit always want it, for
    the one shadow-AI detector in Rego).
    Two policies with the same namespace and name are a ValueError.
    """
    by_namespace: dict[str, dict[str, Any]] = {}
    for policy in policies:
        names = by_namespace.setdefault(policy.namespace, {})
        if policy.name in names:
            raise ValueError(f"duplicate AIDataPolicy {policy.ref}")
        names[policy.name] = policy_document(policy)
    rendered = {ns: dict(sorted(by_namespace[ns].items())) for ns in sorted(by_namespace)}
    config: dict[str, Any] = {"excludedNamespaces": list(dict.fromkeys(excluded_namespaces))}
    users = sorted(set(operator_users))
    if users:
        config["operatorUsers"] = users
    if not guardrails and not with_detector:
        return {"revision": revision_of(rendered, config), "config": config, "policies": rendered}
    cluster: dict[str, Any] = {}
    if guardrails:
        cluster["cluster"] = {name: dict(guardrails[name]) for name in sorted(guardrails)}
        cluster["guardrailsOf"] = {
            ns: sorted(names) for ns, names in sorted((guardrails_of or {}).items()) if names
        }
    cluster["detector"] = detector_document()
    revision = revision_of({"namespaced": rendered, **cluster}, config)
    return {"revision": revision, "config": config, "policies": rendered, **cluster}


def opa_documents(data: Mapping[str, Any]) -> dict[str, Any]:
    """The data.aidp document as OPA holds it: {"aidp": everything but "policies",
    "aidp_policies": the policies (namespace -> name -> policy)}; the Rego reads
    data.aidp_policies[namespace].

    Why apart: OPA checks its rules' paths against the data on every write, and the check reads
    the document of the package root data.aidp (aidp's packages live under it) in full. A write
    inside a large data.aidp costs O(size) (measured with OPA 1.22: 0.65 s with 1,000 policies,
    10-30 s with 10,000), a write at data.aidp_policies[namespace] 1-2 ms whatever the total.
    """
    top = {k: v for k, v in data.items() if k != "policies"}
    # a plain dict of the policies (the operator's aidp.opadata.Document decodes them here)
    return {DATA_PATH: top, POLICIES_PATH: dict(data.get("policies") or {})}


# --- the Rego modules ----------------------------------------------------------------------------


_PACKAGE_RE: Final = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_IMPORT_RE: Final = re.compile(r"^import\s+data\.([\w.]+)", re.MULTILINE)


def policy_modules(policies_dir: Path | None = None) -> dict[str, str]:
    """OPA policy id (path relative to the policies directory) -> Rego source.

    Leaves out `*_test.rego` and `system/authz.rego` (loaded by OPA at start, never pushed). The
    order is deterministic and puts every module after the modules it imports, so that pushing them
    one by one (PUT /v1/policies/<id>) never fails on a missing dependency.
    """
    root = policies_dir or aidp_paths.policies_dir()
    modules: dict[str, str] = {}
    for path in sorted(root.rglob("*.rego")):
        policy_id = path.relative_to(root).as_posix()
        if path.name.endswith("_test.rego") or policy_id in _NOT_PUSHED:
            continue
        modules[policy_id] = path.read_text(encoding="utf-8")
    if not modules:
        raise FileNotFoundError(f"no Rego modules found in {root}")
    return {policy_id: modules[policy_id] for policy_id in _dependency_order(modules)}


def _dependency_order(modules: Mapping[str, str]) -> list[str]:
    packages = {pid: m.group(1) if (m := _PACKAGE_RE.search(src)) else "" for pid, src in modules.items()}

    def imported(pid: str) -> set[str]:
        refs = _IMPORT_RE.findall(modules[pid])
        return {
            other
            for other, package in packages.items()
            if other != pid and any(ref == package or ref.startswith(package + ".") for ref in refs)
        }

    pending = {pid: imported(pid) for pid in modules}
    order: list[str] = []
    while pending:
        ready = sorted(pid for pid, deps in pending.items() if not deps - set(order)) or sorted(pending)[:1]
        order.append(ready[0])
        del pending[ready[0]]
    return order


# --- render --------------------------------------------------------------------------------------

DEFAULT_BACKEND: Final = "networkpolicy"


def render_objects(
    policies: Sequence[Policy],
    *,
    backend: str = DEFAULT_BACKEND,
    excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES,
    policies_dir: Path | None = None,
    egress: EgressContext | None = None,
) -> list[dict[str, Any]]:
    """Every object generated for the policies: OPA modules, the OPA data document, egress objects.

    `egress` carries the provider addresses (IP-based backends), today's date (expired policies
    get no egress) and backend settings; without it: no addresses, today (UTC), defaults.
    `backend="none"` renders no egress objects (as `aidp run --egress-backend none`). With an
    IP-based backend, egress objects whose hosts have no known address carry the annotation
    ADDRESSES_UNKNOWN naming them: those hosts are blocked for nobody and allowed for nobody.
    """
    egress_backend = None if backend == NO_BACKEND else egress_backends.get(backend)
    excluded = list(excluded_namespaces)
    ctx = egress or EgressContext(AddressBook(), dt.datetime.now(dt.UTC).date())
    objects: list[dict[str, Any]] = [
        {"kind": "OPAModule", "id": policy_id, "rego": source}
        for policy_id, source in policy_modules(policies_dir).items()
    ]
    objects.append({"kind": "OPAData", "path": DATA_PATH, "data": render_data(policies, excluded)})
    if egress_backend is None:
        return objects
    egress_objects = egress_backends.render_all(egress_backend, policies, ctx)
    missing = unknown_address_hosts(policies, ctx) if egress_backend.ip_based else []
    if missing:
        note = f"{', '.join(missing)}: no address known, so the rules block nothing for them"
        for obj in egress_objects:
            obj["metadata"].setdefault("annotations", {})[ADDRESSES_UNKNOWN] = note
    objects.extend(egress_objects)
    return objects


NO_BACKEND: Final = "none"
ADDRESSES_UNKNOWN: Final = "aidp.io/addresses-unknown"


def unknown_address_hosts(policies: Sequence[Policy], ctx: EgressContext) -> list[str]:
    """The hosts the egress rules should cut or allow but for which no address is known (an IP-based
    backend without an addresses file or DNS): sorted."""
    from aidp.egress.model import cut_hosts

    return sorted({h for h in cut_hosts(policies) if not ctx.addresses.cidrs(h)})


# --- manifests -----------------------------------------------------------------------------------


class _KubeLoader(yaml.SafeLoader):
    """SafeLoader that keeps dates and times as strings, as the Kubernetes API machinery does."""


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        # Like kubectl -f DIR: the manifest files directly inside, not recursive.
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
    if path.is_file():
        return [path]
    raise ManifestError(f"{path}: no such file or directory")


def read_entries(entries: Iterable[str | Path]) -> Iterator[tuple[str, str]]:
    """(source, text) of each manifest file in the given files and directories, in order, as
    `kubectl -f` reads them; `-` is standard input (source `<stdin>`)."""
    for entry in entries:
        if str(entry) == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        for file in _manifest_files(Path(entry)):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise ManifestError(f"{file}: cannot read: {err}") from None
            yield str(file), text


def _expand(doc: object, source: str) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: expected a Kubernetes object (a mapping), got {type(doc).__name__}")
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        return [obj for item in doc["items"] for obj in _expand(item, source)]
    return [doc]


def parse_manifests(text: str, source: str) -> list[dict[str, Any]]:
    """The objects in one YAML or JSON stream (multi-document; empty documents skipped; Lists expanded)."""
    try:
        docs = list(yaml.load_all(text, Loader=_KubeLoader))  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ManifestError(f"{source}: invalid YAML: {err}") from None
    return [obj for doc in docs if doc is not None for obj in _expand(doc, source)]


def load_manifests(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every object in the given files and directories, in order; `-` reads standard input."""
    return [obj for source, text in read_entries(paths) for obj in parse_manifests(text, source)]


def is_policy_object(obj: Mapping[str, Any]) -> bool:
    """True for an object of kind AIDataPolicy in the aidp.io group (any version)."""
    api_version = obj.get("apiVersion")
    return (
        obj.get("kind") == KIND
        and isinstance(api_version, str)
        and split_api_version(api_version)[0] == split_api_version(API_VERSION)[0]
    )


def policies_from_manifests(
    manifests: Iterable[Mapping[str, Any]], *, default_namespace: str = "default"
) -> list[Policy]:
    """The AIDataPolicies among the manifests (others ignored); raises PolicyError on a bad one."""
    policies: list[Policy] = []
    seen: set[str] = set()
    for obj in manifests:
        if not is_policy_object(obj):
            continue
        policy = Policy.from_object(obj, default_namespace=default_namespace)
        if policy.ref in seen:
            raise PolicyError(policy.ref, "", "defined more than once")
        seen.add(policy.ref)
        policies.append(policy)
    return policies
