"""The AIDataPolicy model: constants of the public contract and frozen dataclasses parsed from objects.

`Policy.from_object` turns a Kubernetes object (a plain dict, as the API server or a YAML file gives
it) into a `Policy`, applying the CRD's defaults and checking what the CRD's schema and CEL rules
check. Whatever the input, it raises nothing but `PolicyError`, whose message names the object, the
field and the problem; `parse_policies` collects those errors instead of raising.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

GROUP: Final = "aidp.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "AIDataPolicy"
PLURAL: Final = "aidatapolicies"

# What a workload declares on its pod template (or the Pod's own metadata).
ANNOTATION_CONSENT_BASIS: Final = "aidp.io/consent-basis"
ANNOTATION_RETENTION_DAYS: Final = "aidp.io/retention-days"
ANNOTATION_DATA_CATEGORIES: Final = "aidp.io/data-categories"
ANNOTATION_ZERO_DATA_RETENTION: Final = "aidp.io/zero-data-retention"
ANNOTATION_PURPOSE: Final = "aidp.io/purpose"
WORKLOAD_ANNOTATIONS: Final = (
    ANNOTATION_CONSENT_BASIS,
    ANNOTATION_RETENTION_DAYS,
    ANNOTATION_DATA_CATEGORIES,
    ANNOTATION_ZERO_DATA_RETENTION,
    ANNOTATION_PURPOSE,
)

# Admission rule ids, in the order they are reported for one policy.
RULE_REVIEW_EXPIRED: Final = "review-expired"
RULE_SERVICE_ACCOUNT: Final = "service-account"
RULE_CONSENT_BASIS: Final = "consent-basis"
RULE_RETENTION_DAYS: Final = "retention-days"
RULE_ZERO_DATA_RETENTION: Final = "zero-data-retention"
RULE_DATA_CATEGORIES: Final = "data-categories"
RULE_IDS: Final = (
    RULE_REVIEW_EXPIRED,
    RULE_SERVICE_ACCOUNT,
    RULE_CONSENT_BASIS,
    RULE_RETENTION_DAYS,
    RULE_ZERO_DATA_RETENTION,
    RULE_DATA_CATEGORIES,
)

# GDPR Art. 6(1) lawful bases.
LAWFUL_BASES: Final = (
    "consent",
    "contract",
    "legal-obligation",
    "vital-interests",
    "public-task",
    "legitimate-interests",
)

ENFORCEMENT_DENY: Final = "deny"
ENFORCEMENT_WARN: Final = "warn"
ENFORCEMENT_DRYRUN: Final = "dryrun"
ENFORCEMENT_MODES: Final = (ENFORCEMENT_DENY, ENFORCEMENT_WARN, ENFORCEMENT_DRYRUN)

PHASE_ACTIVE: Final = "Active"
PHASE_EXPIRED: Final = "Expired"
PHASE_DEGRADED: Final = "Degraded"
CONDITION_READY: Final = "Ready"
CONDITION_ADMISSION_ENFORCED: Final = "AdmissionEnforced"
CONDITION_EGRESS_ENFORCED: Final = "EgressEnforced"

MAX_RETENTION_DAYS: Final = 3650
DEFAULT_PORT: Final = 443
DEFAULT_EXCLUDED_NAMESPACES: Final = ("kube-system", "kube-public", "kube-node-lease", "aidp-system")

# Limits shared with the CRD schema.
MAX_HOST_LENGTH: Final = 253
MAX_ENDPOINTS: Final = 16
MAX_PURPOSE_LENGTH: Final = 1024
MAX_LIST_ITEMS: Final = 64

HOST_PATTERN: Final = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
CATEGORY_PATTERN: Final = r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$"
DATE_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
SELECTOR_OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")

# White space as the CRD's CEL trim() sees it (Unicode White_Space). Python's str.strip() also strips
# U+001C..U+001F, which the API server accepts as non-blank: the model must not be stricter.
CEL_WHITESPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

_HOST_RE: Final = re.compile(HOST_PATTERN)
_CATEGORY_RE: Final = re.compile(CATEGORY_PATTERN)
_DATE_RE: Final = re.compile(DATE_PATTERN)


@dataclass(frozen=True)
class CheckedKind:
    """A workload kind whose pod template admission checks."""

    group: str
    version: str
    kind: str
    resource: str
    template_path: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CHECKED_KINDS: Final = (
    CheckedKind("", "v1", "Pod", "pods", ()),
    CheckedKind("apps", "v1", "Deployment", "deployments", ("spec", "template")),
    CheckedKind("apps", "v1", "ReplicaSet", "replicasets", ("spec", "template")),
    CheckedKind("apps", "v1", "StatefulSet", "statefulsets", ("spec", "template")),
    CheckedKind("apps", "v1", "DaemonSet", "daemonsets", ("spec", "template")),
    CheckedKind("batch", "v1", "Job", "jobs", ("spec", "template")),
    CheckedKind("batch", "v1", "CronJob", "cronjobs", ("spec", "jobTemplate", "spec", "template")),
)


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def checked_kind(api_version: object, kind: object) -> CheckedKind | None:
    """The checked kind for an object's apiVersion and kind, or None (any version of the group counts)."""
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    group, _ = split_api_version(api_version)
    return next((c for c in CHECKED_KINDS if c.kind == kind and c.group == group), None)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = DEFAULT_PORT

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}


@dataclass(frozen=True)
class Provider:
    """A catalog entry: the provider's API endpoint and its data-residency endpoints."""

    name: str
    host: str
    port: int
    regions: tuple[str, ...]
    regional_host: str  # format string with {region}

    def endpoint(self, residency: str | None = None) -> Endpoint:
        """The provider endpoint; a residency region's endpoint replaces the global one."""
        host = self.regional_host.format(region=residency) if residency else self.host
        return Endpoint(host, self.port)


PROVIDERS: Final[Mapping[str, Provider]] = {
    "openai": Provider(
        name="openai",
        host="api.openai.com",
        port=443,
        regions=("us", "eu", "au", "in", "jp"),
        regional_host="{region}.api.openai.com",
    ),
}


@dataclass(frozen=True)
class LabelSelectorRequirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "operator": self.operator, "values": list(self.values)}


@dataclass(frozen=True)
class LabelSelector:
    """A metav1.LabelSelector. Unlike Kubernetes, an empty selector matches nothing."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        # plain loops: the audit calls this for every workload and every policy of its namespace
        if not self.match_labels and not self.match_expressions:
            return False
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)

    @classmethod
    def from_dict(cls, selector: Mapping[str, Any]) -> LabelSelector:
        """Leniently from a Kubernetes object already accepted by the API server (e.g. a
        NetworkPolicy's podSelector); unknown shapes match nothing."""
        labels = selector.get("matchLabels") or {}
        exprs = selector.get("matchExpressions") or []
        return cls(
            tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, Mapping) else (),
            tuple(
                LabelSelectorRequirement(
                    str(e.get("key")), str(e.get("operator")), tuple(map(str, e.get("values") or ()))
                )
                for e in exprs
                if isinstance(e, Mapping)
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The selector as a Kubernetes object (both keys always present; what the Rego receives)."""
        return {
            "matchLabels": dict(self.match_labels),
            "matchExpressions": [r.to_dict() for r in self.match_expressions],
        }


@dataclass(frozen=True)
class Consent:
    required: bool = True
    allowed_bases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Retention:
    max_days: int
    require_zero_data_retention: bool = False


@dataclass(frozen=True)
class DataCategories:
    allowed: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()


@dataclass(frozen=True)
class Review:
    approved_by: str | None = None
    ticket: str | None = None
    expires: dt.date | None = None

    def expired(self, today: dt.date) -> bool:
        """True when the review expired before today (the expires day itself is still valid)."""
        return self.expires is not None and self.expires < today


@dataclass(frozen=True)
class PolicySpec:
    provider: str
    workload_selector: LabelSelector
    purpose: str
    retention: Retention
    data_residency: str | None = None
    endpoints: tuple[Endpoint, ...] = ()
    service_account_names: tuple[str, ...] = ()
    consent: Consent = Consent()
    data_categories: DataCategories = DataCategories()
    enforcement: str = ENFORCEMENT_DENY
    review: Review = Review()

    @property
    def provider_endpoint(self) -> Endpoint:
        return PROVIDERS[self.provider].endpoint(self.data_residency)

    @property
    def all_endpoints(self) -> tuple[Endpoint, ...]:
        """The provider endpoint, then the extra endpoints; duplicates dropped, order kept."""
        return tuple(dict.fromkeys((self.provider_endpoint, *self.endpoints)))


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str
    spec: PolicySpec
    uid: str = ""
    generation: int = 0

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.spec.all_endpoints

    def expired(self, today: dt.date | None = None) -> bool:
        return self.spec.review.expired(today or dt.datetime.now(dt.UTC).date())

    @classmethod
    def from_object(cls, obj: object, *, default_namespace: str | None = None) -> Policy:
        """Parse an AIDataPolicy object; raises only PolicyError."""
        return _parse_policy(obj, default_namespace)


class PolicyError(ValueError):
    """An AIDataPolicy object that the CRD would reject, or that is not an AIDataPolicy at all."""

    def __init__(self, ref: str, path: str, problem: str) -> None:
        self.ref = ref
        self.path = path
        self.problem = problem
        where = f"{path}: " if path else ""
        super().__init__(f"AIDataPolicy {ref}: {where}{problem}")


def parse_policies(
    objects: Iterable[object], *, default_namespace: str | None = None
) -> tuple[list[Policy], list[PolicyError]]:
    """Parse every object; returns the policies and the errors of the objects that failed."""
    policies: list[Policy] = []
    errors: list[PolicyError] = []
    for obj in objects:
        try:
            policies.append(Policy.from_object(obj, default_namespace=default_namespace))
        except PolicyError as err:
            errors.append(err)
    return policies, errors


# --- parsing ------------------------------------------------------------------------------------


class _Fields:
    """Typed access to one mapping of the object, raising PolicyError naming the field."""

    def __init__(self, ref: str, path: str, value: object) -> None:
        if not isinstance(value, Mapping):
            raise PolicyError(ref, path, f"must be an object, got {_describe(value)}")
        self.ref = ref
        self.path = path
        self.value: Mapping[Any, Any] = value

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> PolicyError:
        return PolicyError(self.ref, self.at(key), problem)

    def get(self, key: str) -> object:
        return self.value.get(key)

    def has(self, key: str) -> bool:
        return self.value.get(key) is not None

    def obj(self, key: str, *, required: bool = False) -> _Fields:
        value = self.value.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            value = {}
        return _Fields(self.ref, self.at(key), value)

    def string(self, key: str, *, required: bool = False, max_length: int = 253) -> str | None:
        value = self.value.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_describe(value)}")
        if len(value) > max_length:
            raise self.error(key, f"must be at most {max_length} characters long")
        return value

    def enum(self, key: str, allowed: Sequence[str], *, default: str | None = None) -> str | None:
        value = self.string(key)
        if value is None:
            return default
        if value not in allowed:
            raise self.error(key, f"unsupported value {value!r}; supported values: {', '.join(allowed)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be a boolean, got {_describe(value)}")
        return value

    def integer(self, key: str, *, minimum: int, maximum: int, default: int | None = None) -> int:
        value = self.value.get(key)
        if value is None:
            if default is None:
                raise self.error(key, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {_describe(value)}")
        if not minimum <= value <= maximum:
            raise self.error(key, f"must be between {minimum} and {maximum}, got {value}")
        return value

    def items(self, key: str, *, max_items: int = MAX_LIST_ITEMS) -> list[object]:
        value = self.value.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, got {_describe(value)}")
        if len(value) > max_items:
            raise self.error(key, f"must have at most {max_items} items")
        return value

    def strings(
        self,
        key: str,
        *,
        allowed: Sequence[str] | None = None,
        pattern: re.Pattern[str] | None = None,
        pattern_hint: str = "",
        max_length: int = 253,
    ) -> tuple[str, ...]:
        result: list[str] = []
        for i, item in enumerate(self.items(key)):
            where = f"{key}[{i}]"
            if not isinstance(item, str):
                raise self.error(where, f"must be a string, got {_describe(item)}")
            if allowed is not None and item not in allowed:
                raise self.error(where, f"unsupported value {item!r}; supported values: {', '.join(allowed)}")
            if pattern is not None and not pattern.match(item):
                raise self.error(
                    where, f"invalid value {item!r}: {pattern_hint or 'must match ' + pattern.pattern}"
                )
            if len(item) > max_length:
                raise self.error(where, f"must be at most {max_length} characters long")
            if item in result:
                raise self.error(where, f"duplicate value {item!r}")
            result.append(item)
        return tuple(result)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _object_ref(obj: Mapping[Any, Any], default_namespace: str | None) -> str:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return "<unnamed>"
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        name = "<unnamed>"
    namespace = meta.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        namespace = default_namespace or "<no namespace>"
    return f"{namespace}/{name}"


def _parse_policy(obj: object, default_namespace: str | None) -> Policy:
    if not isinstance(obj, Mapping):
        raise PolicyError("<unnamed>", "", f"must be an object, got {_describe(obj)}")
    ref = _object_ref(obj, default_namespace)
    try:
        return _parse_mapping(ref, obj, default_namespace)
    except PolicyError:
        raise
    except Exception as err:  # pragma: no cover - defensive: odd data must never crash the operator
        raise PolicyError(ref, "", f"cannot be parsed: {err}") from err


def _parse_mapping(ref: str, obj: Mapping[Any, Any], default_namespace: str | None) -> Policy:
    top = _Fields(ref, "", obj)
    api_version = top.string("apiVersion")
    if api_version is not None and api_version != API_VERSION:
        raise top.error("apiVersion", f"must be {API_VERSION}, got {api_version!r}")
    kind = top.string("kind")
    if kind is not None and kind != KIND:
        raise top.error("kind", f"must be {KIND}, got {kind!r}")

    meta = top.obj("metadata", required=True)
    name = meta.string("name", required=True) or ""
    if not name:
        raise meta.error("name", "must not be empty")
    namespace = meta.string("namespace") or default_namespace
    if not namespace:
        raise meta.error("namespace", "is required")
    uid = meta.string("uid") or ""
    generation = meta.integer("generation", minimum=0, maximum=2**63 - 1, default=0)

    return Policy(
        name=name,
        namespace=namespace,
        uid=uid,
        generation=generation,
        spec=_parse_spec(top.obj("spec", required=True)),
    )


def _parse_spec(spec: _Fields) -> PolicySpec:
    provider_name = spec.string("provider", required=True) or ""
    if provider_name not in PROVIDERS:
        raise spec.error(
            "provider", f"unsupported provider {provider_name!r}; supported providers: {', '.join(PROVIDERS)}"
        )
    provider = PROVIDERS[provider_name]
    residency = spec.enum("dataResidency", provider.regions)

    purpose = spec.string("purpose", required=True, max_length=MAX_PURPOSE_LENGTH) or ""
    if not purpose.strip(CEL_WHITESPACE):
        raise spec.error("purpose", "must not be empty")

    return PolicySpec(
        provider=provider_name,
        data_residency=residency,
        endpoints=_parse_endpoints(spec),
        workload_selector=_parse_selector(spec.obj("workloadSelector", required=True)),
        service_account_names=spec.strings("serviceAccountNames"),
        purpose=purpose,
        consent=_parse_consent(spec.obj("consent")),
        retention=_parse_retention(spec.obj("retention", required=True)),
        data_categories=_parse_categories(spec.obj("dataCategories")),
        enforcement=spec.enum("enforcement", ENFORCEMENT_MODES, default=ENFORCEMENT_DENY) or ENFORCEMENT_DENY,
        review=_parse_review(spec.obj("review")),
    )


def _parse_endpoints(spec: _Fields) -> tuple[Endpoint, ...]:
    endpoints: list[Endpoint] = []
    for i, item in enumerate(spec.items("endpoints", max_items=MAX_ENDPOINTS)):
        entry = _Fields(spec.ref, spec.at(f"endpoints[{i}]"), item)
        host = entry.string("host", required=True, max_length=MAX_HOST_LENGTH) or ""
        if not _HOST_RE.match(host):
            raise entry.error(
                "host",
                f"invalid host {host!r}: must be a lowercase DNS name with at least one dot "
                "(no IP address, scheme, port or path)",
            )
        if any(e.host == host for e in endpoints):
            raise entry.error("host", f"duplicate endpoint host {host!r}")
        endpoints.append(
            Endpoint(host, entry.integer("port", minimum=1, maximum=65535, default=DEFAULT_PORT))
        )
    return tuple(endpoints)


def _parse_selector(selector: _Fields) -> LabelSelector:
    labels = selector.obj("matchLabels")
    match_labels: list[tuple[str, str]] = []
    for key, value in labels.value.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise labels.error(str(key), f"label selector values must be strings, got {_describe(value)}")
        match_labels.append((key, value))

    expressions: list[LabelSelectorRequirement] = []
    for i, item in enumerate(selector.items("matchExpressions", max_items=32)):
        expr = _Fields(selector.ref, selector.at(f"matchExpressions[{i}]"), item)
        key = expr.string("key", required=True, max_length=317) or ""
        operator = expr.enum("operator", SELECTOR_OPERATORS) or ""
        if not operator:
            raise expr.error("operator", "is required")
        values = expr.strings("values", max_length=63)
        if operator in ("In", "NotIn") and not values:
            raise expr.error("values", f"must be non-empty when operator is {operator}")
        if operator in ("Exists", "DoesNotExist") and values:
            raise expr.error("values", f"must be empty when operator is {operator}")
        expressions.append(LabelSelectorRequirement(key, operator, values))

    result = LabelSelector(tuple(sorted(match_labels)), tuple(expressions))
    if result.empty:
        raise PolicyError(
            selector.ref,
            selector.path,
            "must set matchLabels or matchExpressions; an empty selector would select every pod",
        )
    return result


def _parse_consent(consent: _Fields) -> Consent:
    required = consent.boolean("required", True)
    bases = consent.strings("allowedBases", allowed=LAWFUL_BASES)
    if required and not bases:
        raise consent.error(
            "allowedBases", "must list at least one lawful basis when consent.required is true"
        )
    return Consent(required, bases)


def _parse_retention(retention: _Fields) -> Retention:
    return Retention(
        max_days=retention.integer("maxDays", minimum=0, maximum=MAX_RETENTION_DAYS),
        require_zero_data_retention=retention.boolean("requireZeroDataRetention", False),
    )


def _parse_categories(categories: _Fields) -> DataCategories:
    hint = "categories are lowercase letters, digits, '-', '_' and '.' (at most 63 characters)"
    allowed = categories.strings("allowed", pattern=_CATEGORY_RE, pattern_hint=hint, max_length=63)
    forbidden = categories.strings("forbidden", pattern=_CATEGORY_RE, pattern_hint=hint, max_length=63)
    overlap = [c for c in allowed if c in forbidden]
    if overlap:
        raise PolicyError(
            categories.ref,
            categories.path,
            f"allowed and forbidden must not overlap; both list: {', '.join(overlap)}",
        )
    return DataCategories(allowed, forbidden)


def _parse_review(review: _Fields) -> Review:
    return Review(
        approved_by=review.string("approvedBy"),
        ticket=review.string("ticket"),
        expires=_parse_date(review, "expires"),
    )


def _parse_date(fields: _Fields, key: str) -> dt.date | None:
    value = fields.get(key)
    if value is None:
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value  # YAML loaders turn an unquoted 2027-06-30 into a date
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise fields.error(key, f"must be a date YYYY-MM-DD, got {_describe(value)}")
    try:
        if value.startswith("0000-"):
            # the CRD's CEL rule accepts year 0000 (a leap year to it), which a Python date cannot
            # hold; such a review expired long ago, and the earliest date keeps that meaning
            dt.date.fromisoformat("2000" + value[4:])
            return dt.date.min
        return dt.date.fromisoformat(value)
    except ValueError:
        raise fields.error(key, f"{value!r} is not a valid calendar date") from None
