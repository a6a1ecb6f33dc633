"""The ClusterAIDataPolicy (a guardrail, contract section 6): its typed model, parser and OPA document.

A guardrail is cluster-scoped: it selects namespaces by their labels and sets bounds that every
namespace AIDataPolicy in them must stay within, and rules every workload there must pass too.

- `ClusterPolicy`: a frozen dataclass, built by `ClusterPolicy.from_object` (or
  `parse_cluster_policy`), which applies the CRD's defaults (crds/aidp.io_clusteraidatapolicies.yaml)
  and repeats its checks. Whatever the input it raises nothing but `ClusterPolicyError`, a
  `PolicyError` (the namespaced parser's error type) that names the guardrail, the field and the
  problem.
- `ClusterPolicy.to_document`: the JSON the admission Rego reads (`data.aidp.cluster[name]`).
- `ClusterPolicy.selects_namespace`: the namespaceSelector with Kubernetes' reading of an empty
  selector: `{}` selects EVERY namespace (unlike an AIDataPolicy's workloadSelector, which must not
  be empty); `governs` also leaves out the excluded namespaces, which are never governed.

The CRD and this parser agree on every object (tests/integration/test_guardrail_crd.py sends hostile
ones to the API server and parses what it accepts).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aidp import catalog
from aidp.catalog.crd import all_regions
from aidp.contract import (
    API_VERSION,
    CATEGORY_RE,
    DEFAULT_EXCLUDED_NAMESPACES,
    LAWFUL_BASES,
    MAX_RETENTION_DAYS,
)
from aidp.policy import PolicyError
from aidp.policy_parser import _describe, _Fields, _header
from aidp.selector import SELECTOR_OPERATORS, LabelSelector, LabelSelectorRequirement

CLUSTER_KIND: Final = "ClusterAIDataPolicy"
CLUSTER_PLURAL: Final = "clusteraidatapolicies"
CLUSTER_SHORT_NAME: Final = "caidp"

UNAPPROVED_AI_DENY: Final = "deny"
UNAPPROVED_AI_WARN: Final = "warn"
UNAPPROVED_AI_AUDIT: Final = "audit"
UNAPPROVED_AI_MODES: Final = (UNAPPROVED_AI_DENY, UNAPPROVED_AI_WARN, UNAPPROVED_AI_AUDIT)
RULE_UNAPPROVED_AI: Final = "unapproved-ai"

MAX_VALIDITY_DAYS: Final = 3650
# limits shared with the CRD schema
MAX_SELECTOR_LABELS: Final = 32
MAX_SELECTOR_EXPRESSIONS: Final = 32
MAX_SELECTOR_VALUES: Final = 64
MAX_LABEL_VALUE_LENGTH: Final = 63
MAX_LABEL_KEY_LENGTH: Final = 317
MAX_GUARDRAIL_LIST_ITEMS: Final = 64
MAX_CATEGORY_LENGTH: Final = 63

# The CRD's CEL messages for a list that is present but empty (the parser says the same).
EMPTY_LIST_MESSAGES: Final = {
    "providers": "list at least one provider, or leave the field out for any",
    "dataResidency": "list at least one residency, or leave the field out for any",
    "consent.allowedBases": "list at least one lawful basis, or leave the field out for no ceiling",
    "dataCategories.forbidden": "list at least one category, or leave the field out",
    "namespaceSelector.matchLabels": (
        "list at least one label, or leave the field out (namespaceSelector: {} selects every namespace)"
    ),
    "namespaceSelector.matchExpressions": (
        "list at least one requirement, or leave the field out (namespaceSelector: {} selects every "
        "namespace)"
    ),
}


class ClusterPolicyError(PolicyError):
    """A ClusterAIDataPolicy object that the CRD would reject, or that is not one at all.

    A PolicyError (callers that handle the namespaced parser's errors handle these too), whose
    message starts with `ClusterAIDataPolicy <name>:`."""

    def __init__(self, ref: str, path: str, problem: str) -> None:
        super().__init__(ref, path, problem)
        where = f"{path}: " if path else ""
        self.args = (f"{CLUSTER_KIND} {ref}: {where}{problem}",)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ClusterPolicy:
    """One ClusterAIDataPolicy, CRD defaults applied. Empty tuples and None mean "no bound"."""

    name: str
    uid: str = ""
    generation: int = 0
    # {} selects every namespace (see selects_namespace)
    namespace_selector: LabelSelector = field(default_factory=LabelSelector)
    providers: tuple[str, ...] = ()  # empty: any provider of the catalog
    data_residency: tuple[str, ...] = ()  # empty: any residency (or none)
    allowed_bases: tuple[str, ...] | None = None  # None: no consent ceiling
    max_days: int | None = None  # None: no retention ceiling
    require_zero_data_retention: bool = False
    forbidden_categories: tuple[str, ...] = ()
    review_required: bool = False
    max_validity_days: int | None = None
    unapproved_ai: str = UNAPPROVED_AI_AUDIT

    @property
    def ref(self) -> str:
        """How violations and messages name the guardrail: `ClusterAIDataPolicy/<name>`."""
        return f"{CLUSTER_KIND}/{self.name}"

    def selects_namespace(self, labels: Mapping[str, str]) -> bool:
        """Whether the namespaceSelector selects a namespace with these labels; the empty selector
        selects every namespace (Kubernetes' reading). Exclusions are `governs`'s business."""
        selector = self.namespace_selector
        if selector.empty:
            return True
        return selector.matches(labels)

    def governs(
        self,
        namespace: str,
        labels: Mapping[str, str],
        excluded: Collection[str] = DEFAULT_EXCLUDED_NAMESPACES,
    ) -> bool:
        """Whether the guardrail governs the namespace: selected, and not an excluded namespace."""
        return namespace not in excluded and self.selects_namespace(labels)

    def governed_providers(self) -> tuple[str, ...]:
        """The providers whose endpoints are cut in governed namespaces: those listed, or the whole
        current catalog when the list is empty."""
        return self.providers or catalog.current().names

    def to_document(self) -> dict[str, Any]:
        """The guardrail as the admission Rego reads it (`data.aidp.cluster[name]`). Optional
        ceilings are left out when unset (`consent.allowedBases`, `retention.maxDays`,
        `review.maxValidityDays`); lists are always present."""
        consent: dict[str, Any] = {}
        if self.allowed_bases is not None:
            consent["allowedBases"] = list(self.allowed_bases)
        retention: dict[str, Any] = {}
        if self.max_days is not None:
            retention["maxDays"] = self.max_days
        retention["requireZeroDataRetention"] = self.require_zero_data_retention
        review: dict[str, Any] = {"required": self.review_required}
        if self.max_validity_days is not None:
            review["maxValidityDays"] = self.max_validity_days
        return {
            "name": self.name,
            "uid": self.uid,
            "generation": self.generation,
            "namespaceSelector": self.namespace_selector.to_dict(),
            "providers": list(self.providers),
            "dataResidency": list(self.data_residency),
            "consent": consent,
            "retention": retention,
            "dataCategories": {"forbidden": list(self.forbidden_categories)},
            "review": review,
            "unapprovedAI": self.unapproved_ai,
        }

    @classmethod
    def from_object(cls, obj: object) -> ClusterPolicy:
        """Parse a ClusterAIDataPolicy object (CRD defaults applied, CRD checks made, providers and
        residencies looked up in the current catalog); raises only ClusterPolicyError."""
        return parse_cluster_policy(obj)


def parse_cluster_policy(obj: object) -> ClusterPolicy:
    """Parse a ClusterAIDataPolicy object; raises only ClusterPolicyError."""
    if not isinstance(obj, Mapping):
        raise ClusterPolicyError("<unnamed>", "", f"must be an object, got {_describe(obj)}")
    ref = _object_ref(obj)
    try:
        return _parse_mapping(ref, obj)
    except ClusterPolicyError:
        raise
    except PolicyError as err:  # from the shared field readers: same fields, this kind's message
        raise ClusterPolicyError(err.ref, err.path, err.problem) from None
    except Exception as err:  # pragma: no cover - defensive: odd data must never crash the operator
        raise ClusterPolicyError(ref, "", f"cannot be parsed: {err}") from err


def parse_cluster_policies(objects: Iterable[object]) -> tuple[list[ClusterPolicy], list[ClusterPolicyError]]:
    """Parse every object; returns the guardrails and the errors of the objects that failed."""
    policies: list[ClusterPolicy] = []
    errors: list[ClusterPolicyError] = []
    for obj in objects:
        try:
            policies.append(parse_cluster_policy(obj))
        except ClusterPolicyError as err:
            errors.append(err)
    return policies, errors


def is_cluster_policy_object(obj: Mapping[str, Any]) -> bool:
    """True for an object of kind ClusterAIDataPolicy in the aidp.io group (any version)."""
    api_version = obj.get("apiVersion")
    return (
        obj.get("kind") == CLUSTER_KIND
        and isinstance(api_version, str)
        and api_version.rpartition("/")[0] == API_VERSION.rpartition("/")[0]
    )


# --- parsing ------------------------------------------------------------------------------------


def _object_ref(obj: Mapping[Any, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) and name else "<unnamed>"


def _parse_mapping(ref: str, obj: Mapping[Any, Any]) -> ClusterPolicy:
    top, meta, name = _header(ref, obj, CLUSTER_KIND)
    # metadata.namespace: the API server clears it for a cluster-scoped kind; ignored here too
    uid = meta.string("uid") or ""
    generation = meta.integer("generation", minimum=0, maximum=2**63 - 1, default=0)

    spec = top.obj("spec", required=True)
    cat = catalog.current()
    consent = spec.obj("consent")
    retention = spec.obj("retention")
    categories = spec.obj("dataCategories")
    review = spec.obj("review")
    hint = "categories are lowercase letters, digits, '-', '_' and '.' (at most 63 characters)"
    return ClusterPolicy(
        name=name,
        uid=uid,
        generation=generation,
        namespace_selector=_parse_namespace_selector(spec.obj("namespaceSelector", required=True)),
        providers=_non_empty_strings(spec, "providers", allowed=cat.names),
        data_residency=_non_empty_strings(spec, "dataResidency", allowed=all_regions(cat)),
        allowed_bases=(
            _non_empty_strings(consent, "allowedBases", allowed=LAWFUL_BASES)
            if consent.has("allowedBases")
            else None
        ),
        max_days=(
            retention.integer("maxDays", minimum=0, maximum=MAX_RETENTION_DAYS)
            if retention.has("maxDays")
            else None
        ),
        require_zero_data_retention=retention.boolean("requireZeroDataRetention", False),
        forbidden_categories=_non_empty_strings(
            categories, "forbidden", pattern=CATEGORY_RE, pattern_hint=hint, max_length=MAX_CATEGORY_LENGTH
        ),
        review_required=review.boolean("required", False),
        max_validity_days=(
            review.integer("maxValidityDays", minimum=1, maximum=MAX_VALIDITY_DAYS)
            if review.has("maxValidityDays")
            else None
        ),
        unapproved_ai=spec.enum("unapprovedAI", UNAPPROVED_AI_MODES, default=UNAPPROVED_AI_AUDIT)
        or UNAPPROVED_AI_AUDIT,
    )


def _non_empty_strings(fields: _Fields, key: str, **kwargs: Any) -> tuple[str, ...]:
    """A set of strings that, when present, must not be empty (the CRD's CEL rule and message)."""
    if not fields.has(key):
        return ()
    values = fields.strings(key, **kwargs)
    if not values:
        raise fields.error(key, EMPTY_LIST_MESSAGES[fields.at(key).removeprefix("spec.")])
    return values


def _parse_namespace_selector(selector: _Fields) -> LabelSelector:
    """A metav1.LabelSelector whose `{}` selects every namespace; a present but empty matchLabels or
    matchExpressions is refused (the CRD's CEL rules), since it reads like a selector but is not."""
    match_labels: list[tuple[str, str]] = []
    if selector.has("matchLabels"):
        raw = selector.obj("matchLabels")
        # the API server drops null values of a map before validating it: {a: null} is {}
        labels = _Fields(raw.ref, raw.path, {k: v for k, v in raw.value.items() if v is not None})
        if not labels.value:
            raise selector.error("matchLabels", EMPTY_LIST_MESSAGES["namespaceSelector.matchLabels"])
        if len(labels.value) > MAX_SELECTOR_LABELS:
            raise selector.error("matchLabels", f"must have at most {MAX_SELECTOR_LABELS} labels")
        for key in labels.value:
            if not isinstance(key, str):
                raise labels.error(str(key), "label keys must be strings")
            value = labels.string(key, max_length=MAX_LABEL_VALUE_LENGTH) or ""  # a short string
            match_labels.append((key, value))

    expressions: list[LabelSelectorRequirement] = []
    if selector.has("matchExpressions"):
        items = selector.items("matchExpressions", max_items=MAX_SELECTOR_EXPRESSIONS)
        if not items:
            raise selector.error(
                "matchExpressions", EMPTY_LIST_MESSAGES["namespaceSelector.matchExpressions"]
            )
        for i, item in enumerate(items):
            expr = _Fields(selector.ref, selector.at(f"matchExpressions[{i}]"), item)
            key = expr.string("key", required=True, max_length=MAX_LABEL_KEY_LENGTH) or ""
            if not key:
                raise expr.error("key", "must not be empty")
            operator = expr.enum("operator", SELECTOR_OPERATORS) or ""
            if not operator:
                raise expr.error("operator", "is required")
            if expr.has("values") and len(expr.items("values", max_items=MAX_SELECTOR_VALUES)) > 0:
                values = expr.strings("values", max_length=MAX_LABEL_VALUE_LENGTH)
            else:
                values = ()
            if operator in ("In", "NotIn") and not values:
                raise expr.error("values", f"must be non-empty when operator is {operator}")
            if operator in ("Exists", "DoesNotExist") and values:
                raise expr.error("values", f"must be empty when operator is {operator}")
            expressions.append(LabelSelectorRequirement(key, operator, values))

    return LabelSelector(tuple(sorted(match_labels)), tuple(expressions))
