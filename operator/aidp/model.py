"""The AIDataPolicy model, in one import: every name of the modules it is made of.

- `aidp.contract`: constants of the public contract, the checked workload kinds;
- `aidp.catalog`: the provider catalog (data, `providers.yaml`), `Endpoint`, `Provider`;
- `aidp.selector`: label-selector semantics;
- `aidp.policy`: the frozen dataclasses (`Policy`, `PolicySpec`, ...) and `PolicyError`;
- `aidp.policy_parser`: the parser that repeats the CRD's checks (`Policy.from_object`).

New code may import from those modules directly; the names here stay for existing importers.
`PROVIDERS` is a read-only view of the current catalog (`aidp.catalog.current()`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from aidp import catalog as _catalog
from aidp.catalog import Endpoint, Provider
from aidp.contract import (
    ANNOTATION_CONSENT_BASIS,
    ANNOTATION_DATA_CATEGORIES,
    ANNOTATION_PURPOSE,
    ANNOTATION_RETENTION_DAYS,
    ANNOTATION_ZERO_DATA_RETENTION,
    API_VERSION,
    CATEGORY_PATTERN,
    CEL_WHITESPACE,
    CHECKED_KINDS,
    CONDITION_ADMISSION_ENFORCED,
    CONDITION_EGRESS_ENFORCED,
    CONDITION_READY,
    DATE_PATTERN,
    DEFAULT_EXCLUDED_NAMESPACES,
    DEFAULT_PORT,
    ENFORCEMENT_DENY,
    ENFORCEMENT_DRYRUN,
    ENFORCEMENT_MODES,
    ENFORCEMENT_WARN,
    GROUP,
    HOST_PATTERN,
    KIND,
    LAWFUL_BASES,
    MAX_ENDPOINTS,
    MAX_HOST_LENGTH,
    MAX_LIST_ITEMS,
    MAX_PURPOSE_LENGTH,
    MAX_RETENTION_DAYS,
    PHASE_ACTIVE,
    PHASE_DEGRADED,
    PHASE_EXPIRED,
    PLURAL,
    RULE_CONSENT_BASIS,
    RULE_DATA_CATEGORIES,
    RULE_HOST_NETWORK,
    RULE_IDS,
    RULE_RETENTION_DAYS,
    RULE_REVIEW_EXPIRED,
    RULE_SERVICE_ACCOUNT,
    RULE_ZERO_DATA_RETENTION,
    VERSION,
    WORKLOAD_ANNOTATIONS,
    CheckedKind,
    checked_kind,
    split_api_version,
)
from aidp.policy import Consent, DataCategories, Policy, PolicyError, PolicySpec, Retention, Review
from aidp.policy_parser import parse_policies, parse_policy
from aidp.selector import SELECTOR_OPERATORS, LabelSelector, LabelSelectorRequirement


class _CurrentProviders(Mapping[str, Provider]):
    """name -> Provider of the current catalog, looked up on every access (an override installed at
    start with `aidp.catalog.use` is seen by every reader)."""

    def __getitem__(self, name: str) -> Provider:
        return _catalog.current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_catalog.current().names)

    def __len__(self) -> int:
        return len(_catalog.current().names)


PROVIDERS: Final[Mapping[str, Provider]] = _CurrentProviders()

__all__ = [
    "ANNOTATION_CONSENT_BASIS",
    "ANNOTATION_DATA_CATEGORIES",
    "ANNOTATION_PURPOSE",
    "ANNOTATION_RETENTION_DAYS",
    "ANNOTATION_ZERO_DATA_RETENTION",
    "API_VERSION",
    "CATEGORY_PATTERN",
    "CEL_WHITESPACE",
    "CHECKED_KINDS",
    "CONDITION_ADMISSION_ENFORCED",
    "CONDITION_EGRESS_ENFORCED",
    "CONDITION_READY",
    "DATE_PATTERN",
    "DEFAULT_EXCLUDED_NAMESPACES",
    "DEFAULT_PORT",
    "ENFORCEMENT_DENY",
    "ENFORCEMENT_DRYRUN",
    "ENFORCEMENT_MODES",
    "ENFORCEMENT_WARN",
    "GROUP",
    "HOST_PATTERN",
    "KIND",
    "LAWFUL_BASES",
    "MAX_ENDPOINTS",
    "MAX_HOST_LENGTH",
    "MAX_LIST_ITEMS",
    "MAX_PURPOSE_LENGTH",
    "MAX_RETENTION_DAYS",
    "PHASE_ACTIVE",
    "PHASE_DEGRADED",
    "PHASE_EXPIRED",
    "PLURAL",
    "PROVIDERS",
    "RULE_CONSENT_BASIS",
    "RULE_DATA_CATEGORIES",
    "RULE_HOST_NETWORK",
    "RULE_IDS",
    "RULE_RETENTION_DAYS",
    "RULE_REVIEW_EXPIRED",
    "RULE_SERVICE_ACCOUNT",
    "RULE_ZERO_DATA_RETENTION",
    "SELECTOR_OPERATORS",
    "VERSION",
    "WORKLOAD_ANNOTATIONS",
    "CheckedKind",
    "Consent",
    "DataCategories",
    "Endpoint",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Policy",
    "PolicyError",
    "PolicySpec",
    "Provider",
    "Retention",
    "Review",
    "checked_kind",
    "parse_policies",
    "parse_policy",
    "split_api_version",
]
