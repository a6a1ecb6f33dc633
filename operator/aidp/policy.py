"""An AIDataPolicy as aidp uses it: frozen dataclasses, built by `Policy.from_object`.

The parser that applies the CRD's defaults and repeats its checks is `aidp.policy_parser`; the
provider's endpoints come from the provider catalog (`aidp.catalog`).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from aidp.catalog import Endpoint
from aidp.contract import ENFORCEMENT_DENY
from aidp.selector import LabelSelector


@dataclass(frozen=True, slots=True)
class Consent:
    required: bool = True
    allowed_bases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Retention:
    max_days: int
    require_zero_data_retention: bool = False


@dataclass(frozen=True, slots=True)
class DataCategories:
    allowed: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Review:
    approved_by: str | None = None
    ticket: str | None = None
    expires: dt.date | None = None

    def expired(self, today: dt.date) -> bool:
        """True when the review expired before today (the expires day itself is still valid)."""
        return self.expires is not None and self.expires < today


# spec.transfers.safeguard: the transfer mechanism for third-country transfers (GDPR Chapter V)
TRANSFER_SAFEGUARDS = ("adequacy", "scc", "dpf", "bcr", "derogation", "none")
MAX_DATA_SUBJECT_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Controller:
    """spec.controller: the controller of the processing (GDPR Art. 30(1)(a))."""

    name: str
    contact: str | None = None


@dataclass(frozen=True, slots=True)
class Transfers:
    """spec.transfers: the safeguard for transfers to third countries (None: not stated)."""

    safeguard: str | None = None


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
    # records of processing only (contract section 9): not in the OPA data, no admission rule reads them
    controller: Controller | None = None
    data_subjects: tuple[str, ...] = ()
    transfers: Transfers = Transfers()
    # the provider's endpoints from the catalog (a residency region's, when set), resolved when parsed
    provider_endpoints: tuple[Endpoint, ...] = ()

    @property
    def provider_endpoint(self) -> Endpoint | None:
        """The provider's first endpoint, or None (a provider whose host a policy lists itself)."""
        return self.provider_endpoints[0] if self.provider_endpoints else None

    @functools.cached_property
    def all_endpoints(self) -> tuple[Endpoint, ...]:
        """The provider's endpoints, then the extra endpoints; duplicates dropped, order kept
        (computed once: every sync asks each policy of the cluster)."""
        return tuple(dict.fromkeys((*self.provider_endpoints, *self.endpoints)))


@dataclass(frozen=True, slots=True)
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
        """Parse an AIDataPolicy object (CRD defaults applied, CRD checks made, the provider looked up
        in the current catalog); raises only PolicyError."""
        from aidp.policy_parser import parse_policy  # the parser builds these classes

        return parse_policy(obj, default_namespace=default_namespace)


class PolicyError(ValueError):
    """An AIDataPolicy object that the CRD would reject, or that is not an AIDataPolicy at all."""

    def __init__(self, ref: str, path: str, problem: str) -> None:
        self.ref = ref
        self.path = path
        self.problem = problem
        where = f"{path}: " if path else ""
        super().__init__(f"AIDataPolicy {ref}: {where}{problem}")
