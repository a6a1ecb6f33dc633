"""Records of processing on a seeded cluster (contract section 9, issue 16): every section 9 field
on every record, `record-incomplete` for the policy without a controller, the PDF's text, and what
changed between two audits (`aidp audit --previous`, and the operator's own audits)."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from aidp import catalog
from aidp.audit import changes, crs
from aidp.devcluster.stack import AidpStack
from aidp.egress.model import BASELINE_NAME
from tests.integration import helpers
from tests.integration.conftest import Env, drop_env, make_env
from tests.waiting import wait_for

Report = create_namespaced_resource("openreports.io", "v1alpha1", "Report", "reports")

SECTION_9 = (
    "controller",
    "dataSubjects",
    "recipient",
    "transfers",
    "providerRetention",
    "securityMeasures",
    "evidence",
)
CONTRACT_5 = (
    "namespace",
    "kind",
    "name",
    "policy",
    "purpose",
    "endpoints",
    "consentBasis",
    "retentionDays",
    "dataCategories",
    "dataResidency",
    "approvedBy",
    "expires",
)
RECORDED = {
    "controller": {"name": "Example Support GmbH", "contact": "privacy@example.com"},
    "dataSubjects": ["customers", "support agents"],
    "transfers": {"safeguard": "dpf"},
}
# the workloads approved, and the purpose each declares (aidp.io/purpose)
PURPOSES = {"summarizer": "Ticket summaries for agents", "drafter": "Reply drafts", "gone": "Old triage"}


def _deployment(ns: str, name: str, app: str, **annotations: str) -> dict[str, Any]:
    obj = helpers.workload(
        "Deployment", name, ns, labels={"app": app}, annotations={**helpers.COMPLIANT, **annotations}
    )
    obj["spec"]["replicas"] = 0
    return obj


def _create(client: Client, obj: dict[str, Any]) -> None:
    client.create(from_dict(copy.deepcopy(obj)))


def _audit(stack: AidpStack, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "aidp.cli.main",
            "audit",
            "--kubeconfig",
            str(stack.cp.kubeconfig),
            "-n",
            ns,
            "--fail-on",
            "never",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _egress_applied(c: Client, ns: str, name: str) -> bool:
    st = c.get(helpers.AIDataPolicy, name, namespace=ns).get("status") or {}
    cond = {x["type"]: x for x in st.get("conditions") or []}.get("EgressEnforced", {})
    return cond.get("status") == "True" and bool(cond.get("lastTransitionTime"))


@pytest.fixture(scope="module")
def seeded(aidp_stack: AidpStack, kube_client: Client) -> Iterator[Env]:
    env = make_env(kube_client, aidp_stack.cp.kubeconfig)
    c = kube_client
    # "records" states every record item (US residency: a third country, under the DPF)
    env.policy(
        "records", dataResidency="us", workloadSelector={"matchLabels": {"app": "records"}}, **RECORDED
    )
    # "bare" states none of them: its records are incomplete
    env.policy("bare", workloadSelector={"matchLabels": {"app": "bare"}})
    _create(c, _deployment(env.ns, "summarizer", "records", **{"aidp.io/purpose": PURPOSES["summarizer"]}))
    _create(c, _deployment(env.ns, "gone", "records", **{"aidp.io/purpose": PURPOSES["gone"]}))
    _create(c, _deployment(env.ns, "drafter", "bare", **{"aidp.io/purpose": PURPOSES["drafter"]}))
    for name in ("records", "bare"):
        wait_for(lambda n=name: _egress_applied(c, env.ns, n), timeout=60, what=f"egress rules of {name}")
    yield env
    drop_env(c, env)


def test_every_record_carries_every_section_9_field(
    aidp_stack: AidpStack, seeded: Env, kube_client: Client
) -> None:
    out = _audit(aidp_stack, seeded.ns, "-o", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    recs = {r["name"]: r for r in report["processingRecords"]}
    assert set(recs) == {"summarizer", "gone", "drafter"}
    for r in recs.values():
        assert list(r) == [*CONTRACT_5, *SECTION_9], r
        assert r["purpose"] == PURPOSES[r["name"]]
    openai = catalog.current()["openai"].facts
    status = kube_client.get(helpers.AIDataPolicy, "records", namespace=seeded.ns)["status"]
    egress = next(x for x in status["conditions"] if x["type"] == "EgressEnforced")
    r = recs["summarizer"]
    assert r["controller"] == RECORDED["controller"]
    assert r["dataSubjects"] == RECORDED["dataSubjects"]
    assert r["recipient"]["legalEntity"] == openai.legal_entity.value
    assert r["recipient"]["processorTerms"] == openai.processor_terms.value
    assert r["transfers"]["thirdCountries"] == ["United States"] and r["transfers"]["safeguard"] == "dpf"
    assert r["transfers"]["basis"] == ["us.api.openai.com: United States, from the openai region us"]
    # the workload declares zero data retention: the provider keeps nothing beyond the request
    assert r["providerRetention"]["zeroDataRetention"] is True and r["providerRetention"]["days"] == 0
    sm = r["securityMeasures"]
    assert sm["tls"] == ["HTTPS (TLS) to us.api.openai.com:443"]
    assert BASELINE_NAME in sm["egressRules"] and len(sm["egressRules"]) >= 2, sm  # baseline + the policy's
    assert "enforcement deny" in sm["admission"]
    # the session's stack runs the opa engine: aidp's webhook configuration, no aidp VAPs
    assert sm["admission"].startswith("admission engine opa (OPA as the validating webhook); "), sm
    ev = r["evidence"]
    assert ev["bundleRevision"] == status["revision"]
    assert ev["egressRulesVerifiedAt"] == egress["lastTransitionTime"]
    assert ev["policyGeneration"] == 1 and ev["observedGeneration"] == 1
    # a record without a controller (nor data subjects, nor a transfer safeguard) is flagged
    incomplete = [f for f in report["findings"] if f["type"] == "record-incomplete"]
    assert [(f["kind"], f["name"], f["policy"], f["severity"]) for f in incomplete] == [
        ("Deployment", "drafter", "bare", "low")
    ]
    for item in ("spec.controller.name", "spec.dataSubjects", "spec.transfers.safeguard"):
        assert item in incomplete[0]["message"]
    assert recs["drafter"]["controller"] == {"name": None, "contact": None}
    assert recs["drafter"]["transfers"]["thirdCountries"] == ["United States"]  # api.openai.com
    # the same records as CSV, one row each
    rows = list(csv.DictReader(io.StringIO(_audit(aidp_stack, seeded.ns, "-o", "records-csv").stdout)))
    assert {(x["name"], x["purpose"], x["controllerName"]) for x in rows} == {
        ("summarizer", PURPOSES["summarizer"], RECORDED["controller"]["name"]),
        ("gone", PURPOSES["gone"], RECORDED["controller"]["name"]),
        ("drafter", PURPOSES["drafter"], ""),
    }
    assert next(x for x in rows if x["name"] == "drafter")["incomplete"]
    # per-namespace summary
    assert report["namespaces"][seeded.ns]["severities"]["low"] == 1
    assert report["namespaces"][seeded.ns]["approved"] == 3


def _pdftotext(pdf: Path) -> str:
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.fail(
            "pdftotext is not installed: run make chromium (Debian package poppler-utils)", pytrace=False
        )
    return subprocess.run([tool, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def _change_items(html: str) -> list[tuple[str, str]]:
    """(data-change, the workload, finding or policy named) of every change the HTML lists."""
    items = []
    for kind, body in re.findall(r'data-change="([\w-]+)">(.*?)</(?:li|tr)>', html, flags=re.S):
        text = re.sub(r"<[^>]+>", " ", body)
        items.append((kind, " ".join(text.split())))
    return items


def test_what_changed_between_two_audits_and_the_pdf(
    aidp_stack: AidpStack, seeded: Env, kube_client: Client, tmp_path: Path
) -> None:
    ns = seeded.ns
    first = _audit(aidp_stack, ns, "-o", "json", "--output-file", str(tmp_path / "first.json"))
    assert first.returncode == 0, first.stderr
    # the changes: one workload removed, one added (shadow AI: a new finding), the bare policy
    # completed (a new generation; the drafter's record-incomplete resolved)
    kube_client.delete(Deployment, "gone", namespace=ns)
    newbie = helpers.workload("Deployment", "newbie", ns, labels={"app": "newbie"}, annotations={})
    newbie["spec"]["replicas"] = 0
    newbie["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "OPENAI_BASE_URL", "value": "https://api.openai.com/v1"}
    ]
    _create(kube_client, newbie)
    kube_client.patch(
        helpers.AIDataPolicy, "bare", {"spec": RECORDED}, namespace=ns, patch_type=PatchType.MERGE
    )
    helpers.wait_enforced(kube_client, ns, "bare")
    wait_for(
        lambda: (
            not any(
                d.metadata and d.metadata.name == "gone" for d in kube_client.list(Deployment, namespace=ns)
            )
        ),
        timeout=30,
        what="the gone Deployment deleted",
    )

    prev = str(tmp_path / "first.json")
    second = _audit(aidp_stack, ns, "-o", "json", "--previous", prev)
    assert second.returncode == 0, second.stderr
    doc = json.loads(second.stdout)["changes"]
    assert doc["since"] == json.loads((tmp_path / "first.json").read_text())["generatedAt"]
    assert doc["workloads"] == {"added": [f"{ns}/Deployment/newbie"], "removed": [f"{ns}/Deployment/gone"]}
    assert [(f["type"], f["name"]) for f in doc["findings"]["new"]] == [("shadow-ai", "newbie")]
    assert [(f["type"], f["name"]) for f in doc["findings"]["resolved"]] == [("record-incomplete", "drafter")]
    assert doc["policies"] == {
        "added": [],
        "removed": [],
        "changed": [{"policy": f"{ns}/bare", "generation": 2, "previousGeneration": 1}],
    }
    assert doc["notes"] == []

    html_out = _audit(
        aidp_stack, ns, "-o", "html", "--previous", prev, "--output-file", str(tmp_path / "r.html")
    )
    assert html_out.returncode == 0, html_out.stderr
    html = (tmp_path / "r.html").read_text()
    main = html[html.index("<main>") :]
    assert main.index('id="changes"') < main.index('id="summary"')  # shown first
    items = _change_items(html)
    assert [k for k, _ in items] == [
        "workload-added",
        "workload-removed",
        "finding-new",
        "finding-resolved",
        "policy-changed",
    ], items
    assert items[0][1] == f"added {ns}/Deployment/newbie" and items[1][1] == f"removed {ns}/Deployment/gone"
    assert items[2][1].startswith("new high shadow-ai") and "newbie" in items[2][1]
    assert items[3][1].startswith("resolved low record-incomplete") and "drafter" in items[3][1]
    assert items[4][1] == f"changed {ns}/bare (generation 1 → 2)"

    pdf = tmp_path / "report.pdf"
    res = _audit(aidp_stack, ns, "-o", "pdf", "--previous", prev, "--output-file", str(pdf))
    assert res.returncode == 0, res.stderr
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = " ".join(_pdftotext(pdf).split())
    for name in ("summarizer", "drafter"):  # each record's workload and purpose
        assert name in text, name
        assert PURPOSES[name] in text, PURPOSES[name]
    assert "AI data-processing audit" in text and f"namespace {ns}" in text  # the cover
    assert f"{ns}/Deployment/newbie" in text and f"{ns}/Deployment/gone" in text  # what changed


def _report(client: Client, ns: str) -> dict[str, Any] | None:
    try:
        return client.get(Report, crs.NAME, namespace=ns).to_dict()
    except ApiError:
        return None


def _changes_of(client: Client, ns: str) -> dict[str, Any] | None:
    rep = _report(client, ns)
    text = ((rep or {}).get("metadata") or {}).get("annotations", {}).get(crs.CHANGES_ANNOTATION)
    return json.loads(text) if text else None


@pytest.mark.local_only  # the session's operator audits every 5 s
def test_the_operator_says_what_changed_since_its_previous_audit(
    aidp_stack: AidpStack, kube_client: Client
) -> None:
    env = make_env(kube_client, aidp_stack.cp.kubeconfig)
    try:
        ns = env.ns
        env.policy("p", workloadSelector={"matchLabels": {"app": "p"}}, **RECORDED)
        _create(kube_client, _deployment(ns, "first", "p"))

        def summarised() -> changes.Summary | None:
            rep = _report(kube_client, ns)
            prev = crs.previous_summary([rep]) if rep else None
            return prev if prev and prev.workloads == {f"{ns}/Deployment/first"} else None

        wait_for(summarised, timeout=90, what="the operator's Report with the namespace's summary")
        _create(kube_client, _deployment(ns, "second", "p"))
        second = [f"{ns}/Deployment/second"]
        added = wait_for(
            lambda: (c := _changes_of(kube_client, ns)) and c.get("workloadsAdded") == second and c,
            timeout=90,
            what="the Report saying the second workload was added",
        )
        assert added["counts"] == {**dict.fromkeys(added["counts"], 0), "workloadsAdded": 1}, added
        assert added["since"]
        kube_client.patch(
            helpers.AIDataPolicy,
            "p",
            {"spec": {"purpose": "Another purpose"}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )
        changed = wait_for(
            lambda: (
                (c := _changes_of(kube_client, ns)) and c.get("policiesChanged") == [f"{ns}/p 1->2"] and c
            ),
            timeout=90,
            what="the Report saying the policy changed",
        )
        assert changed["counts"]["policiesChanged"] == 1 and changed["counts"]["workloadsAdded"] == 0
    finally:
        drop_env(kube_client, env)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"controller": {"contact": "privacy@example.com"}}, "spec.controller.name"),
        ({"controller": {"name": ""}}, "spec.controller.name"),
        ({"controller": {"name": "x" * 254}}, "spec.controller.name"),
        ({"controller": {"name": "x", "contact": "y" * 254}}, "spec.controller.contact"),
        ({"dataSubjects": ["customers", "customers"]}, "spec.dataSubjects[1]"),
        ({"dataSubjects": [""]}, "spec.dataSubjects[0]"),
        ({"dataSubjects": ["x" * 129]}, "spec.dataSubjects[0]"),
        ({"dataSubjects": [f"s{i}" for i in range(65)]}, "spec.dataSubjects"),
        ({"transfers": {"safeguard": "trust-me"}}, "spec.transfers.safeguard"),
        ({"controller": {"name": " \t"}, "dataSubjects": [" "], "transfers": {"safeguard": "none"}}, None),
        (RECORDED, None),
    ],
)
def test_the_api_server_and_the_parser_agree_on_the_record_fields(
    seeded: Env, kube_client: Client, fields: dict[str, Any], path: str | None
) -> None:
    """Server-side dry-run creates: the CRD refuses what the parser refuses, naming the same field,
    and accepts what it accepts (a blank controller name too: the audit flags it as missing)."""
    from aidp.model import Policy, PolicyError

    obj = helpers.policy("agree", seeded.ns, **fields)
    refused = helpers.create(kube_client, obj, dry_run=True)
    try:
        Policy.from_object(obj)
        parsed: str | None = None
    except PolicyError as err:
        parsed = err.path
    if path is None:
        assert (refused, parsed) == (None, None)
    else:
        assert refused is not None and path.split("[")[0] in refused, refused
        assert parsed == path
