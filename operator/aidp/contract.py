"""Constants of the public contract (docs/policy-contract.md) and the workload kinds admission checks.

Nothing here depends on the rest of aidp: the CRD's limits and patterns, the annotation names a
workload declares, admission rule ids, lawful bases, enforcement modes, phases and conditions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

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
RULE_HOST_NETWORK: Final = "host-network"
# ClusterAIDataPolicy unapprovedAI: a workload that references AI but that no active policy selects
RULE_UNAPPROVED_AI: Final = "unapproved-ai"
RULE_IDS: Final = (
    RULE_REVIEW_EXPIRED,
    RULE_SERVICE_ACCOUNT,
    RULE_CONSENT_BASIS,
    RULE_RETENTION_DAYS,
    RULE_ZERO_DATA_RETENTION,
    RULE_DATA_CATEGORIES,
    RULE_HOST_NETWORK,
    RULE_UNAPPROVED_AI,
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

# White space as the CRD's CEL trim() sees it (Unicode White_Space). Python's str.strip() also strips
# U+001C..U+001F, which the API server accepts as non-blank: the model must not be stricter.
CEL_WHITESPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

HOST_RE: Final = re.compile(HOST_PATTERN)
CATEGORY_RE: Final = re.compile(CATEGORY_PATTERN)
DATE_RE: Final = re.compile(DATE_PATTERN)


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
