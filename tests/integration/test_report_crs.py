"""The audit's report objects are accepted by the genuine OpenReports and PolicyReport CRDs."""

from __future__ import annotations

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError

from aidp.audit import crs
from aidp.audit.report import (
    FINDING_TYPES,
    SEVERITIES,
    AuditReport,
    Finding,
    NamespaceTally,
    ProcessingRecord,
)
from aidp.controller.egress import resource_for


def _report(ns: str, findings: int) -> AuditReport:
    report = AuditReport(generated_at="2026-11-29T00:00:00Z")
    for i in range(findings):
        t, sev = FINDING_TYPES[i % len(FINDING_TYPES)], SEVERITIES[i % len(SEVERITIES)]
        report.findings.append(
            Finding(
                t, sev, ns, "Deployment", f"w-{i}", "m" * 300 + " <&> ünïcode", f"p-{i % 3}", "retention-days"
            )
        )
    report.records.append(
        ProcessingRecord(
            ns,
            "Deployment",
            "bot",
            "p-0",
            "Summaries",
            ["api.openai.com:443"],
            "consent",
            14,
            ["internal"],
            "eu",
            "dpo@example.com",
            "2027-06-30",
        )
    )
    report.namespaces[ns] = NamespaceTally(workloads=3, approved=1, violating=1)
    return report


@pytest.mark.parametrize("kind", sorted(crs.KINDS))
@pytest.mark.parametrize("findings", [0, 7, 2500])  # 2500: truncated to stay well under 1 MB
def test_reports_are_accepted_by_the_genuine_crds(
    kind: str, findings: int, kube_client: Client, report_crds: list[str], namespace: str
) -> None:
    group, version, kind_name, plural = crs.KINDS[kind]
    res = resource_for(group, version, plural, kind_name)
    objs = crs.render(_report(namespace, findings), kind)
    assert len(objs) == 1
    obj = objs[0]
    assert len(str(obj)) < 1_000_000
    try:
        created = kube_client.create(res.from_dict(obj))
    except ApiError as err:
        pytest.fail(f"{kind_name} refused: {err.status.message}")
    stored = created.to_dict()
    # nothing pruned: the stored object has every result the renderer produced
    assert len(stored["results"]) == len(obj["results"])
    assert stored["summary"] == obj["summary"]
    assert len(obj["results"]) <= crs.MAX_RESULTS


def test_a_malformed_report_is_refused(kube_client: Client, report_crds: list[str], namespace: str) -> None:
    group, version, kind_name, plural = crs.KINDS["openreports"]
    res = resource_for(group, version, plural, kind_name)
    obj = crs.render(_report(namespace, 1), "openreports")[0]
    obj["results"][0]["result"] = "catastrophic"  # not in the CRD's enum
    with pytest.raises(ApiError) as err:
        kube_client.create(res.from_dict(obj))
    assert err.value.status.code == 422
