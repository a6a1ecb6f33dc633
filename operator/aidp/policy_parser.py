"""The AIDataPolicy parser: a copy, in Python, of what the CRD's schema and CEL rules check.

`parse_policy` turns a Kubernetes object (a plain dict, as the API server or a YAML file gives it)
into a `Policy`, applying the CRD's defaults and checking what the CRD checks, with the provider
looked up in the current provider catalog. Whatever the input, it raises nothing but `PolicyError`,
whose message names the object, the field and the problem; `parse_policies` collects those errors
instead of raising. The CRD and this parser must agree on every object (tests/integration/
test_hostile_input.py sends thousands to the API server and parses what it accepts).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aidp import catalog
from aidp.catalog import Endpoint
from aidp.contract import (
    API_VERSION,
    CATEGORY_RE,
    CEL_WHITESPACE,
    DATE_RE,
    DEFAULT_PORT,
    ENFORCEMENT_DENY,
    ENFORCEMENT_MODES,
    HOST_RE,
    KIND,
    LAWFUL_BASES,
    MAX_ENDPOINTS,
    MAX_HOST_LENGTH,
    MAX_LIST_ITEMS,
    MAX_PURPOSE_LENGTH,
    MAX_RETENTION_DAYS,
)
from aidp.policy import (
    MAX_DATA_SUBJECT_LENGTH,
    TRANSFER_SAFEGUARDS,
    Consent,
    Controller,
    DataCategories,
    Policy,
    PolicyError,
    PolicySpec,
    Retention,
    Review,
    Transfers,
)
from aidp.selector import SELECTOR_OPERATORS, LabelSelector, LabelSelectorRequirement


def parse_policy(obj: object, *, default_namespace: str | None = None) -> Policy:
    """Parse an AIDataPolicy object; raises only PolicyError."""
    return _parse_policy(obj, default_namespace)


def parse_policies(
    objects: Iterable[object], *, default_namespace: str | None = None
) -> tuple[list[Policy], list[PolicyError]]:
    """Parse every object; returns the policies and the errors of the objects that failed."""
    policies: list[Policy] = []
    errors: list[PolicyError] = []
    for obj in objects:
        try:
            policies.append(parse_policy(obj, default_namespace=default_namespace))
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


def _header(ref: str, obj: Mapping[Any, Any], expected_kind: str) -> tuple[_Fields, _Fields, str]:
    """The object's fields, its metadata's and its name, once apiVersion and kind (either may be
    left out) are aidp's and the name is given."""
    top = _Fields(ref, "", obj)
    api_version = top.string("apiVersion")
    if api_version is not None and api_version != API_VERSION:
        raise top.error("apiVersion", f"must be {API_VERSION}, got {api_version!r}")
    kind = top.string("kind")
    if kind is not None and kind != expected_kind:
        raise top.error("kind", f"must be {expected_kind}, got {kind!r}")
    meta = top.obj("metadata", required=True)
    name = meta.string("name", required=True) or ""
    if not name:
        raise meta.error("name", "must not be empty")
    return top, meta, name


def _parse_mapping(ref: str, obj: Mapping[Any, Any], default_namespace: str | None) -> Policy:
    top, meta, name = _header(ref, obj, KIND)
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
    providers = catalog.current()
    provider_name = spec.string("provider", required=True) or ""
    provider = providers.get(provider_name)
    if provider is None:
        raise spec.error(
            "provider",
            f"unsupported provider {provider_name!r}; supported providers: {', '.join(providers.names)}",
        )
    if spec.has("dataResidency") and not provider.regions:
        raise spec.error(
            "dataResidency", f"provider {provider_name} has no data-residency regions in the provider catalog"
        )
    residency = spec.enum("dataResidency", provider.regions)

    purpose = spec.string("purpose", required=True, max_length=MAX_PURPOSE_LENGTH) or ""
    if not purpose.strip(CEL_WHITESPACE):
        raise spec.error("purpose", "must not be empty")

    endpoints = _parse_endpoints(spec)
    if provider.needs_policy_endpoints and not endpoints and residency is None:
        raise spec.error("endpoints", provider.needs_endpoints_message)

    return PolicySpec(
        provider=provider_name,
        data_residency=residency,
        endpoints=endpoints,
        workload_selector=_parse_selector(spec.obj("workloadSelector", required=True)),
        service_account_names=spec.strings("serviceAccountNames"),
        purpose=purpose,
        consent=_parse_consent(spec.obj("consent")),
        retention=_parse_retention(spec.obj("retention", required=True)),
        data_categories=_parse_categories(spec.obj("dataCategories")),
        enforcement=spec.enum("enforcement", ENFORCEMENT_MODES, default=ENFORCEMENT_DENY) or ENFORCEMENT_DENY,
        review=_parse_review(spec.obj("review")),
        controller=_parse_controller(spec),
        data_subjects=_parse_data_subjects(spec),
        transfers=Transfers(safeguard=spec.obj("transfers").enum("safeguard", TRANSFER_SAFEGUARDS)),
        provider_endpoints=provider.endpoints_for(residency),
    )


def _parse_endpoints(spec: _Fields) -> tuple[Endpoint, ...]:
    endpoints: list[Endpoint] = []
    for i, item in enumerate(spec.items("endpoints", max_items=MAX_ENDPOINTS)):
        entry = _Fields(spec.ref, spec.at(f"endpoints[{i}]"), item)
        host = entry.string("host", required=True, max_length=MAX_HOST_LENGTH) or ""
        if not HOST_RE.match(host):
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
    allowed = categories.strings("allowed", pattern=CATEGORY_RE, pattern_hint=hint, max_length=63)
    forbidden = categories.strings("forbidden", pattern=CATEGORY_RE, pattern_hint=hint, max_length=63)
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


def _parse_controller(spec: _Fields) -> Controller | None:
    """spec.controller; a blank name is kept (the CRD accepts it): the audit reports it as missing."""
    if not spec.has("controller"):
        return None
    controller = spec.obj("controller")
    name = controller.string("name", required=True) or ""
    if not name:
        raise controller.error("name", "must not be empty")
    return Controller(name=name, contact=controller.string("contact"))


def _parse_data_subjects(spec: _Fields) -> tuple[str, ...]:
    subjects = spec.strings("dataSubjects", max_length=MAX_DATA_SUBJECT_LENGTH)
    for i, subject in enumerate(subjects):
        if not subject:
            raise spec.error(f"dataSubjects[{i}]", "must not be empty")
    return subjects


def _parse_date(fields: _Fields, key: str) -> dt.date | None:
    value = fields.get(key)
    if value is None:
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value  # YAML loaders turn an unquoted 2027-06-30 into a date
    if not isinstance(value, str) or not DATE_RE.match(value):
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
