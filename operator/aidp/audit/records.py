"""Records of processing (contract section 9, GDPR Art. 30(1)): what each record carries beyond the
declarations, and the `record-incomplete` findings.

`details` is called by the audit for every approved workload and policy: controller, data subjects,
recipient (from the provider catalog), transfers (the third countries the endpoints imply and the
policy's safeguard), what the provider keeps, and the security measures. `finalise` runs once the
audit is done, with the AIDataPolicy objects read: it adds the evidence from each policy's status
(bundle revision, when the egress rules were last seen in force) and flags every record that lacks
a mandatory Art. 30(1) item with a `record-incomplete` finding (severity low).

Third countries follow GDPR's meaning: a country outside the European Economic Area. Where an
endpoint is processed is read from its region (a residency region's endpoints, or a region name in
the host, e.g. bedrock-runtime.eu-west-1.amazonaws.com); a provider's global endpoint is taken as
processed in the country the provider names as its default (its `globalCountry`). The countries
are the provider catalog's data (`regions`, `globalCountry`: aidp/catalog/providers.yaml). A host
neither tells (an Azure OpenAI resource, whose region is the resource's) is listed as undetermined.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aidp import catalog
from aidp.audit import declared
from aidp.audit.report import (
    AuditReport,
    Finding,
    ProcessingRecord,
    ProviderRetention,
    Recipient,
    RecordController,
    RecordEvidence,
    SecurityMeasures,
    TransferInfo,
)
from aidp.config import APPROVAL_LABEL
from aidp.contract import ANNOTATION_ZERO_DATA_RETENTION
from aidp.policy import Policy
from aidp.selector import selects

EEA = "EEA"
# a region name as one DNS label, or as the part before "-aiplatform" (Vertex AI)
_REGION_IN_HOST = re.compile(r"(?:^|\.)([a-z]{2,9}(?:-[a-z]+)?(?:-?\d)?)(?:-aiplatform)?(?=\.)")
_BLANK = " \t\n\r\v\f"

MANDATORY = "GDPR Art. 30(1)"
INCOMPLETE_SEVERITY = "low"


def _country_of_host(host: str, provider: catalog.Provider | None) -> tuple[str, tuple[str, bool] | None]:
    """(how the country was found, (country, in the EEA)) for one endpoint host; None: undetermined.
    The countries are the catalog's (`regions`, and each provider's `globalCountry`)."""
    regions = catalog.current().regions
    if provider is not None:
        for region, endpoints in provider.residency:
            if any(e.host == host for e in endpoints) and region in regions:
                return f"{provider.name} region {region}", _pair(regions[region])
    for label in _REGION_IN_HOST.findall(host):
        # a short name (eu, us) in a host is no region name: only a residency region says it
        if "-" in label and label in regions:
            return f"region {label} in the host name", _pair(regions[label])
    if (
        provider is not None
        and provider.global_country is not None
        and any(e.host == host for e in provider.endpoints)
    ):
        return f"{provider.name} global endpoint", _pair(provider.global_country)
    return "", None


def _pair(country: catalog.Country) -> tuple[str, bool]:
    return country.name, country.eea


def transfers(p: Policy) -> TransferInfo:
    """The third countries (outside the EEA) the policy's endpoints imply, and its safeguard."""
    provider = catalog.current().get(p.spec.provider)
    countries: dict[str, None] = {}
    basis: list[str] = []
    undetermined: list[str] = []
    for e in p.endpoints:
        how, where = _country_of_host(e.host, provider)
        if where is None:
            undetermined.append(e.host)
            continue
        country, in_eea = where
        basis.append(f"{e.host}: {country}{' (EEA)' if in_eea else ''}, from the {how}")
        if not in_eea:
            countries[country] = None
    return TransferInfo(
        thirdCountries=list(countries),
        safeguard=p.spec.transfers.safeguard,
        basis=basis,
        undetermined=undetermined,
    )


def recipient(p: Policy) -> Recipient:
    provider = catalog.current().get(p.spec.provider)
    if provider is None:
        return Recipient(provider=p.spec.provider)
    facts = provider.facts
    return Recipient(
        provider=provider.name,
        name=provider.display_name,
        legalEntity=facts.legal_entity.value,
        processorTerms=facts.processor_terms.value,
        sources={"legalEntity": facts.legal_entity.source, "processorTerms": facts.processor_terms.source},
    )


def zero_data_retention(annotations: Mapping[str, Any]) -> bool:
    """Declared as admission reads it: "true" after trimming and lower-casing."""
    value = declared.present(annotations, ANNOTATION_ZERO_DATA_RETENTION)
    return value is not None and declared.lower(value) == "true"


def provider_retention(p: Policy, annotations: Mapping[str, Any]) -> ProviderRetention:
    provider = catalog.current().get(p.spec.provider)
    zdr = zero_data_retention(annotations)
    if provider is None:
        return ProviderRetention(zeroDataRetention=zdr)
    facts = provider.facts
    if zdr:
        kept = (
            "nothing beyond the request: the workload declares zero data retention "
            f"({ANNOTATION_ZERO_DATA_RETENTION}); the provider's arrangement: "
            f"{facts.zero_data_retention.value}"
        )
        days: int | None = 0
        source = facts.zero_data_retention.source
    else:
        kept = facts.api_retention.value
        days = facts.api_retention.days
        source = facts.api_retention.source
    return ProviderRetention(
        retention=kept,
        days=days,
        zeroDataRetention=zdr,
        zeroDataRetentionOffer=facts.zero_data_retention.available,
        trainsOnApiData=facts.trains_on_api_data.value,
        source=source,
    )


def egress_rules(
    namespace: str, labels: Mapping[str, str], network_policies: Sequence[Mapping[str, Any]] | None
) -> list[str] | None:
    """The NetworkPolicies (aidp's and the users') that govern the pods' egress, by name; None when
    the audit could not read NetworkPolicies."""
    if network_policies is None:
        return None
    names = []
    for np in network_policies:
        meta = np.get("metadata") or {}
        if str(meta.get("namespace")) != namespace:
            continue
        spec = np.get("spec") or {}
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
        if "Egress" in types and selects(spec.get("podSelector"), labels):
            names.append(str(meta.get("name")))
    return sorted(names)


def security_measures(
    p: Policy, labels: Mapping[str, str], network_policies: Sequence[Mapping[str, Any]] | None
) -> SecurityMeasures:
    return SecurityMeasures(
        tls=[f"HTTPS (TLS) to {e.host}:{e.port}" for e in p.endpoints],
        egressRules=egress_rules(p.namespace, labels, network_policies),
        admission=f"aidp admission (enforcement {p.spec.enforcement}): the AIDataPolicy's rules on every "
        "create and update of the workload's pods",
    )


def controller(p: Policy) -> RecordController:
    c = p.spec.controller
    return RecordController(name=c.name, contact=c.contact) if c is not None else RecordController()


# what a record takes from its policy and the catalog, computed once per policy (and zero-data-
# retention declaration), and the egress rules once per namespace and pod labels: an audit of
# 10,000 approved workloads builds 10,000 records. Each entry keeps what it was computed from, so
# that a new catalog or a new audit's NetworkPolicies never meet an old entry.
_CACHE_SIZE = 4096
_by_policy: dict[tuple[Policy, bool], tuple[catalog.Catalog, dict[str, Any]]] = {}
_by_labels: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[object, list[str] | None]] = {}


def _policy_parts(p: Policy, zdr: bool) -> dict[str, Any]:
    cat = catalog.current()
    hit = _by_policy.get((p, zdr))
    if hit is not None and hit[0] is cat:
        return hit[1]
    parts = {
        "controller": controller(p),
        "recipient": recipient(p),
        "transfers": transfers(p),
        "providerRetention": provider_retention(p, {ANNOTATION_ZERO_DATA_RETENTION: "true"} if zdr else {}),
        "tls": [f"HTTPS (TLS) to {e.host}:{e.port}" for e in p.endpoints],
        "admission": security_measures(p, {}, None).admission,
    }
    if len(_by_policy) >= _CACHE_SIZE:
        _by_policy.clear()
    _by_policy[(p, zdr)] = (cat, parts)
    return parts


def _egress_rules(
    namespace: str, labels: Mapping[str, str], network_policies: Sequence[Mapping[str, Any]] | None
) -> list[str] | None:
    if not network_policies:
        return None if network_policies is None else []
    key = (namespace, tuple(sorted(labels.items())))
    hit = _by_labels.get(key)
    if hit is not None and hit[0] is network_policies:
        return hit[1]
    rules = egress_rules(namespace, labels, network_policies)
    if len(_by_labels) >= _CACHE_SIZE:
        _by_labels.clear()
    _by_labels[key] = (network_policies, rules)
    return rules


def details(
    p: Policy,
    annotations: Mapping[str, Any],
    labels: Mapping[str, str],
    network_policies: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """The contract section 9 fields of a record (keyword arguments of ProcessingRecord)."""
    parts = _policy_parts(p, zero_data_retention(annotations))
    # its pods carry the approval label: the operator sets it on the pods it judged compliant
    rules = _egress_rules(p.namespace, {**labels, APPROVAL_LABEL: "true"}, network_policies)
    return {
        "controller": parts["controller"],
        "dataSubjects": list(p.spec.data_subjects),
        "recipient": parts["recipient"],
        "transfers": parts["transfers"],
        "providerRetention": parts["providerRetention"],
        "securityMeasures": SecurityMeasures(
            tls=list(parts["tls"]),
            egressRules=None if rules is None else list(rules),
            admission=parts["admission"],
        ),
    }


# --- after the audit ------------------------------------------------------------------------------


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in status.get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return None


def evidence(obj: Mapping[str, Any] | None) -> RecordEvidence:
    """From the policy's status: the bundle revision that enforces it and when the egress rules were
    last seen in force (the EgressEnforced condition, True since its lastTransitionTime)."""
    if obj is None:
        return RecordEvidence()
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    egress = _condition(status, "EgressEnforced")
    admission = _condition(status, "AdmissionEnforced")
    verified = egress.get("lastTransitionTime") if egress and egress.get("status") == "True" else None
    return RecordEvidence(
        bundleRevision=str(status["revision"]) if status.get("revision") else None,
        egressRulesVerifiedAt=str(verified) if verified else None,
        egressStatus=f"{egress.get('status')} ({egress.get('reason')}): {egress.get('message')}"
        if egress
        else None,
        admissionStatus=f"{admission.get('status')} ({admission.get('reason')}): {admission.get('message')}"
        if admission
        else None,
        policyGeneration=int(meta["generation"]) if isinstance(meta.get("generation"), int) else None,
        observedGeneration=int(status["observedGeneration"])
        if isinstance(status.get("observedGeneration"), int)
        else None,
        lastAuditTime=str(status["lastAuditTime"]) if status.get("lastAuditTime") else None,
    )


def _blank(value: str | None) -> bool:
    return value is None or not value.strip(_BLANK)


def missing(r: ProcessingRecord) -> list[str]:
    """The mandatory Art. 30(1) items the record lacks, with where each comes from."""
    out = []
    if _blank(r.controller.name):
        out.append("the controller's name (spec.controller.name)")
    if _blank(r.controller.contact):
        out.append("the controller's contact details (spec.controller.contact)")
    if _blank(r.purpose):
        out.append("the purpose (spec.purpose or aidp.io/purpose)")
    if not [s for s in r.dataSubjects if not _blank(s)]:
        out.append("the categories of data subjects (spec.dataSubjects)")
    if not r.dataCategories:
        out.append("the categories of personal data (annotation aidp.io/data-categories)")
    if _blank(r.recipient.legalEntity):
        out.append("the recipient (the provider's legal entity, from the provider catalog)")
    if r.transfers.thirdCountries and r.transfers.safeguard in (None, "none"):
        out.append(
            f"the safeguard for the transfer to {', '.join(r.transfers.thirdCountries)} "
            "(spec.transfers.safeguard)"
        )
    if r.retentionDays is None:
        out.append("the time limit for erasure (annotation aidp.io/retention-days)")
    return out


ENGINES: Mapping[str, str] = {
    "opa": "admission engine opa (OPA as the validating webhook)",
    "vap": "admission engine vap (ValidatingAdmissionPolicy, CEL inside kube-apiserver)",
    "both": "admission engine both (OPA as the validating webhook and ValidatingAdmissionPolicy)",
}


def detect_admission_engine(client: Any) -> str | None:
    """opa, vap or both, from what aidp installed (its ValidatingWebhookConfiguration, its
    ValidatingAdmissionPolicies); None when the caller may not read them or neither is there."""
    from lightkube.resources.admissionregistration_v1 import (
        ValidatingAdmissionPolicy,
        ValidatingWebhookConfiguration,
    )

    from aidp import kube
    from aidp.config import MANAGED_BY
    from aidp.vap.cel import ENGINE_LABEL

    found = []
    for engine, res, labels in (
        ("opa", ValidatingWebhookConfiguration, dict(MANAGED_BY)),
        ("vap", ValidatingAdmissionPolicy, {**MANAGED_BY, ENGINE_LABEL: "vap"}),
    ):
        try:
            if any(True for _ in client.list(res, labels=labels)):
                found.append(engine)
        except kube.KUBE_ERRORS:
            return None  # 403 (or not served): unknown, rather than a wrong answer
    return {("opa",): "opa", ("vap",): "vap", ("opa", "vap"): "both"}.get(tuple(found))


def finalise(
    report: AuditReport, policy_objects: Iterable[Mapping[str, Any]], admission_engine: str | None = None
) -> None:
    """Evidence from the policies' status on every record (and the admission engine in force, when
    known), then a `record-incomplete` finding for each record that lacks a mandatory item.
    Idempotent."""
    by_key: dict[tuple[str, str], Mapping[str, Any]] = {}
    for obj in policy_objects:
        meta = obj.get("metadata") or {}
        by_key[(str(meta.get("namespace")), str(meta.get("name")))] = obj
    engine = ENGINES.get(admission_engine or "")

    # records share their parts (aidp.audit.engine makes one set per policy, annotations and
    # labels): each new part is made once per part it replaces, and so is each message
    replaced: dict[int, tuple[SecurityMeasures, SecurityMeasures]] = {}

    def sm(r: ProcessingRecord) -> SecurityMeasures:
        admission = r.securityMeasures.admission or ""
        if engine is None or admission.startswith("admission engine"):
            return r.securityMeasures
        hit = replaced.get(id(r.securityMeasures))
        if hit is None or hit[0] is not r.securityMeasures:
            new = dataclasses.replace(r.securityMeasures, admission=f"{engine}; {admission}")
            hit = replaced[id(r.securityMeasures)] = (r.securityMeasures, new)
        return hit[1]

    evidences = {key: evidence(obj) for key, obj in by_key.items()}
    none = RecordEvidence()
    report.records = [_with(r, evidences.get((r.namespace, r.policy), none), sm(r)) for r in report.records]
    report.findings = [f for f in report.findings if f.type != "record-incomplete"]
    messages: dict[tuple[str, tuple[str, ...]], str] = {}
    lacking: dict[tuple[int, ...], tuple[str, ...]] = {}  # by the identity of what `missing` reads
    for r in report.records:
        read = tuple(map(id, _READ_BY_MISSING(r)))
        lacks = lacking.get(read)
        if lacks is None:
            lacks = lacking[read] = tuple(missing(r))
        if lacks:
            message = messages.get((r.policy, lacks))
            if message is None:
                message = messages[(r.policy, lacks)] = (
                    f"the record of processing under policy {r.policy} lacks {MANDATORY} items: "
                    + "; ".join(lacks)
                )
            report.findings.append(
                Finding(
                    "record-incomplete", INCOMPLETE_SEVERITY, r.namespace, r.kind, r.name, message, r.policy
                )
            )


# the fields `missing` reads (records of one template share these very values)
_READ_BY_MISSING = operator.attrgetter(
    "controller", "purpose", "dataSubjects", "dataCategories", "recipient", "transfers", "retentionDays"
)


def _with(r: ProcessingRecord, ev: RecordEvidence, sm: SecurityMeasures) -> ProcessingRecord:
    """`dataclasses.replace(r, evidence=ev, securityMeasures=sm)`: a copy of the instance's fields
    (ProcessingRecord has no __post_init__ and no slots), without replace's checks and the frozen
    __init__'s setattr per field (a large audit has some 10^5 records)."""
    new = object.__new__(ProcessingRecord)
    vars(new).update(vars(r), evidence=ev, securityMeasures=sm)
    return new
