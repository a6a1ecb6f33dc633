"""aidp.render: the data document, the Rego modules, manifests, and `aidp render`."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from aidp import paths, render
from aidp.cli import policy as policy_cli
from aidp.model import Policy, PolicyError

POLICY_YAML = """\
apiVersion: aidp.io/v1alpha1
kind: AIDataPolicy
metadata: {name: support-summaries, namespace: support, uid: u-1, generation: 2}
spec:
  provider: openai
  dataResidency: eu
  endpoints:
    - {host: myres.openai.azure.com}
    - {host: eu.api.openai.com, port: 443}
  workloadSelector:
    matchLabels: {app: support-bot}
  serviceAccountNames: [support-bot]
  purpose: Summarise support tickets for agents
  consent: {allowedBases: [consent, contract]}
  retention: {maxDays: 30}
  dataCategories:
    allowed: [public, internal]
    forbidden: [health]
  review:
    approvedBy: dpo@example.com
    expires: 2027-06-30
"""

OTHER_YAML = """\
apiVersion: aidp.io/v1alpha1
kind: AIDataPolicy
metadata: {name: batch, namespace: analytics}
spec:
  provider: openai
  workloadSelector:
    matchExpressions: [{key: app, operator: In, values: [etl]}]
  purpose: Classify documents
  consent: {required: false}
  retention: {maxDays: 0, requireZeroDataRetention: true}
  enforcement: dryrun
"""


def policies() -> list[Policy]:
    return render.policies_from_manifests(render.parse_manifests(POLICY_YAML + "---\n" + OTHER_YAML, "test"))


def test_policy_document_format() -> None:
    support = policies()[0]
    assert render.policy_document(support) == {
        "name": "support-summaries",
        "namespace": "support",
        "uid": "u-1",
        "generation": 2,
        "provider": "openai",
        "dataResidency": "eu",
        "endpoints": [
            {"host": "eu.api.openai.com", "port": 443},
            {"host": "myres.openai.azure.com", "port": 443},
        ],
        "workloadSelector": {"matchLabels": {"app": "support-bot"}, "matchExpressions": []},
        "serviceAccountNames": ["support-bot"],
        "purpose": "Summarise support tickets for agents",
        "consent": {"required": True, "allowedBases": ["consent", "contract"]},
        "retention": {"maxDays": 30, "requireZeroDataRetention": False},
        "dataCategories": {"allowed": ["public", "internal"], "forbidden": ["health"]},
        "enforcement": "deny",
        "review": {"approvedBy": "dpo@example.com", "ticket": None, "expires": "2027-06-30"},
    }


def test_render_data_layout_and_revision() -> None:
    data = render.render_data(policies())
    assert list(data) == ["revision", "config", "policies"]
    assert data["config"] == {
        "excludedNamespaces": ["kube-system", "kube-public", "kube-node-lease", "aidp-system"]
    }
    assert list(data["policies"]) == ["analytics", "support"]
    assert list(data["policies"]["support"]) == ["support-summaries"]
    batch = data["policies"]["analytics"]["batch"]
    assert batch["dataResidency"] is None
    assert batch["endpoints"] == [{"host": "api.openai.com", "port": 443}]
    assert batch["review"] == {"approvedBy": None, "ticket": None, "expires": None}
    assert batch["workloadSelector"]["matchExpressions"] == [
        {"key": "app", "operator": "In", "values": ["etl"]}
    ]
    canonical = json.dumps(
        {"config": data["config"], "policies": data["policies"]}, sort_keys=True, separators=(",", ":")
    ).encode()
    assert data["revision"] == hashlib.sha256(canonical).hexdigest()[:16]
    assert len(data["revision"]) == 16
    int(data["revision"], 16)


def test_render_data_is_deterministic_and_content_addressed() -> None:
    a = render.render_data(policies())
    b = render.render_data(list(reversed(policies())))
    assert render.canonical_json(a) == render.canonical_json(b)
    assert json.dumps(a) == json.dumps(b)
    changed = render.render_data(policies()[:1])
    assert changed["revision"] != a["revision"]
    other_config = render.render_data(policies(), ["kube-system"])
    assert other_config["revision"] != a["revision"]


def test_render_data_empty_and_excluded_namespaces() -> None:
    data = render.render_data([], ["kube-system", "tools", "kube-system"])
    assert data["config"] == {"excludedNamespaces": ["kube-system", "tools"]}
    assert data["policies"] == {}


def test_render_data_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate AIDataPolicy support/support-summaries"):
        render.render_data(policies() + policies()[:1])


def test_policy_modules_from_the_checkout() -> None:
    modules = render.policy_modules()
    assert list(modules) == [
        "aidp/selector.rego",
        "aidp/workload.rego",
        "aidp/guardrails.rego",
        "aidp/admission.rego",
        "aidp/audit.rego",
        "system/main.rego",
    ]
    for policy_id, source in modules.items():
        assert source == (paths.policies_dir() / policy_id).read_text()
    assert "package aidp.admission" in modules["aidp/admission.rego"]


def test_policy_modules_skip_tests_and_authz_and_order_dependencies(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "system").mkdir()
    (tmp_path / "a" / "top.rego").write_text("package a.top\n\nimport data.z.leaf\n\nx := leaf.y\n")
    (tmp_path / "a" / "top_test.rego").write_text("package a.top_test\n")
    (tmp_path / "system" / "authz.rego").write_text("package system.authz\n")
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "leaf.rego").write_text("package z.leaf\n\ny := 1\n")
    (tmp_path / "z" / "other.rego").write_text("package z.other\n")
    assert list(render.policy_modules(tmp_path)) == ["z/leaf.rego", "a/top.rego", "z/other.rego"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        render.policy_modules(empty)


def test_render_objects() -> None:
    objects = render.render_objects(policies())
    kinds = [o["kind"] for o in objects]
    n = len(render.policy_modules())
    assert kinds[: n + 1] == ["OPAModule"] * n + ["OPAData"]
    assert objects[0] == {
        "kind": "OPAModule",
        "id": "aidp/selector.rego",
        "rego": render.policy_modules()["aidp/selector.rego"],
    }
    assert objects[n] == {"kind": "OPAData", "path": "aidp", "data": render.render_data(policies())}
    # then the default backend's egress objects: a baseline per governed namespace and one per policy
    assert set(kinds[n + 1 :]) == {"NetworkPolicy"}
    with pytest.raises(
        ValueError,
        match=(
            "unknown egress backend 'nope'; one of: "
            "adminnetworkpolicy, cilium, clusternetworkpolicy, networkpolicy"
        ),
    ):
        render.render_objects(policies(), backend="nope")


def test_render_objects_for_the_cilium_backend() -> None:
    objects = render.render_objects(policies(), backend="cilium")
    assert {o["kind"] for o in objects[len(render.policy_modules()) + 1 :]} == {"CiliumNetworkPolicy"}


# --- manifests -----------------------------------------------------------------------------------


def test_parse_manifests_multi_doc_empty_docs_lists_and_dates() -> None:
    text = "---\n# only a comment\n---\n" + POLICY_YAML + "---\n---\n"
    text += "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
    text += "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n"
    objects = render.parse_manifests(text, "x.yaml")
    assert [o["kind"] for o in objects] == ["AIDataPolicy", "ConfigMap", "ConfigMap"]
    assert objects[0]["spec"]["review"]["expires"] == "2027-06-30"  # a string, as in Kubernetes


def test_parse_manifests_errors() -> None:
    with pytest.raises(render.ManifestError, match=r"^x.yaml: invalid YAML"):
        render.parse_manifests("a: [1,\n", "x.yaml")
    with pytest.raises(
        render.ManifestError, match=r"^x.yaml: expected a Kubernetes object \(a mapping\), got list"
    ):
        render.parse_manifests("- 1\n", "x.yaml")
    with pytest.raises(render.ManifestError, match="got str"):
        render.parse_manifests("just text\n", "x.yaml")


def test_load_manifests_files_dirs_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "b.yaml").write_text(OTHER_YAML)
    (tmp_path / "a.yml").write_text(POLICY_YAML)
    (tmp_path / "c.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    )
    (tmp_path / "notes.txt").write_text("not a manifest: [")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.yaml").write_text("apiVersion: v1\nkind: Secret\n")
    names = [o["metadata"]["name"] for o in render.load_manifests([tmp_path])]
    assert names == ["support-summaries", "batch", "c"]  # sorted, not recursive, only manifest suffixes
    assert [o["kind"] for o in render.load_manifests([tmp_path / "sub" / "d.yaml", tmp_path / "c.json"])] == [
        "Secret",
        "ConfigMap",
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO(OTHER_YAML))
    assert [o["metadata"]["name"] for o in render.load_manifests(["-"])] == ["batch"]
    with pytest.raises(render.ManifestError, match="no such file or directory"):
        render.load_manifests([tmp_path / "missing.yaml"])
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(render.ManifestError, match="cannot read"):
        render.load_manifests([tmp_path / "bin.yaml"])


def test_policies_from_manifests() -> None:
    objects = render.parse_manifests(
        POLICY_YAML + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "t"
    )
    assert [p.name for p in render.policies_from_manifests(objects)] == ["support-summaries"]
    nameless_ns = yaml.safe_load(OTHER_YAML)
    del nameless_ns["metadata"]["namespace"]
    assert render.policies_from_manifests([nameless_ns])[0].namespace == "default"
    with pytest.raises(PolicyError, match="AIDataPolicy support/support-summaries: defined more than once"):
        render.policies_from_manifests(objects + objects)
    wrong_version = dict(objects[0], apiVersion="aidp.io/v9")
    with pytest.raises(PolicyError, match=r"apiVersion: must be aidp\.io/v1alpha1"):
        render.policies_from_manifests([wrong_version])
    other_group = dict(objects[0], apiVersion="example.com/v1")
    assert render.policies_from_manifests([other_group]) == []


# --- aidp render ---------------------------------------------------------------------------------


def app() -> typer.Typer:
    application = typer.Typer()
    policy_cli.register(application)
    return application


def test_render_command_yaml_and_json(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(POLICY_YAML + "---\n" + OTHER_YAML)
    runner = CliRunner()
    as_yaml = runner.invoke(app(), ["render", "-f", str(file)])
    assert as_yaml.exit_code == 0, as_yaml.output
    as_json = runner.invoke(app(), ["render", "-f", str(file), "-o", "json", "--backend", "networkpolicy"])
    assert as_json.exit_code == 0, as_json.output
    objects = json.loads(as_json.stdout)
    assert list(yaml.safe_load_all(as_yaml.stdout)) == objects
    assert objects == render.render_objects(policies())
    assert "rego: |" in as_yaml.stdout  # readable Rego in YAML
    again = runner.invoke(app(), ["render", "-f", str(file)])
    assert again.stdout == as_yaml.stdout


def test_render_command_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app(), ["render", "-f", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "error: " in missing.stderr
    assert "no such file or directory" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY_YAML.replace("maxDays: 30", "maxDays: 9999"))
    result = runner.invoke(app(), ["render", "-f", str(bad)])
    assert result.exit_code == 2
    assert "spec.retention.maxDays: must be between 0 and 3650, got 9999" in result.stderr
    good = tmp_path / "good"
    good.mkdir()
    (good / "p.yaml").write_text(POLICY_YAML)
    backend = runner.invoke(app(), ["render", "-f", str(good), "--backend", "nope"])
    assert backend.exit_code == 2
    assert "--backend 'nope': must be one of" in backend.stderr
