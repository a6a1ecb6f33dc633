"""The peer in the admission bench: OPA Gatekeeper, run out of cluster as a validating webhook
against the bench's control plane, with aidp's admission rules ported to a ConstraintTemplate
(bench/gatekeeper/: the template, the constraints, the Config; README.md says what is ported).

`make testbin-gatekeeper` (hack/testbin-gatekeeper.sh) builds the manager from the Go module proxy
at the pinned version and caches, beside it, the module's own CRDs and manager RBAC, which
`Gatekeeper.start` installs: the CRDs, a namespace, a ClusterRole and Role bound to a client
certificate user, the Config that replicates the AIDataPolicies into data.inventory, the template
and its constraints. The manager runs with `--operation=webhook` (no audit, no mutation), its own
serving certificate (`--disable-cert-rotation`) and a fake pod (`--debug-use-fake-pod`); the
webhook configuration is aidp's (rules, match conditions, timeout, failure policy) with
Gatekeeper's URL and a namespace selector of its own (`SCOPE_LABEL`).

`agreement` checks, before anything is measured, that the port gives aidp's verdict (`aidp check`,
the Rego) on every workload of examples/ and examples/library, live, with Gatekeeper as the only
webhook of those namespaces; with `vap=True`, the same for Gatekeeper's generated
ValidatingAdmissionPolicy (`cel_template`: aidp's CEL in a K8sNativeValidation template, one
constraint per AIDataPolicy, `cel_constraint`), in namespaces outside the webhook's scope.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
)
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Namespace

from aidp import check, kube, pki, vap
from aidp.check import check_manifests
from aidp.config import OperatorConfig
from aidp.devcluster import ControlPlane
from aidp.devcluster import kubeconfig as kubeconfig_mod
from aidp.devcluster.opa import HOST
from aidp.devcluster.procs import Process, free_port, wait_http_ok
from aidp.render import load_manifests
from bench.common import ROOT

HERE = ROOT / "bench" / "gatekeeper"
TESTBIN = ROOT / ".testbin-gatekeeper"  # make testbin-gatekeeper
NAMESPACE = "gatekeeper-system"  # Gatekeeper's own (POD_NAMESPACE); the Config lives there
USER = "gatekeeper-admin"  # the manager's client certificate
WEBHOOK = "gatekeeper-validating-webhook-configuration"  # the name the manager looks up
SCOPE_LABEL = "aidp-bench/gatekeeper"  # namespaces with this label are Gatekeeper's
BENCH_NAMESPACE = "bench-gatekeeper"  # the admission rounds' Gatekeeper namespace (its webhook)
VAP_NAMESPACE = "bench-gatekeeper-vap"  # ... and Gatekeeper's generated ValidatingAdmissionPolicy
PREFIX = "gk-"  # the examples' namespaces, renamed for the agreement check (the webhook)
VAP_PREFIX = "gkv-"  # ... (Gatekeeper's ValidatingAdmissionPolicy)
CEL_TEMPLATE, CEL_KIND = "aidpadmissioncel", "AidpAdmissionCel"
CHECKED_KINDS: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "kinds": ["Pod"]},
    {"apiGroups": ["apps"], "kinds": ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"]},
    {"apiGroups": ["batch"], "kinds": ["Job", "CronJob"]},
]

EXAMPLES = ROOT / "examples"
LIBRARY = EXAMPLES / "library"

ConstraintTemplate = create_global_resource(
    "templates.gatekeeper.sh", "v1", "ConstraintTemplate", "constrainttemplates"
)
GatekeeperConfig = create_namespaced_resource("config.gatekeeper.sh", "v1alpha1", "Config", "configs")
Constraint = create_global_resource("constraints.gatekeeper.sh", "v1beta1", "AidpAdmission", "aidpadmission")
CelConstraint = create_global_resource("constraints.gatekeeper.sh", "v1beta1", CEL_KIND, CEL_TEMPLATE)


class GatekeeperError(RuntimeError):
    """Gatekeeper is missing, does not start, or disagrees with aidp."""


# --- the examples the port must agree on --------------------------------------------------------


def example_sets() -> list[list[dict[str, Any]]]:
    """The manifests of examples/*.yaml, and of each single-policy example of examples/library
    (the guardrail example is a ClusterAIDataPolicy's: section 6, not ported)."""
    sets = [load_manifests(sorted(EXAMPLES.glob("*.yaml")))]
    for example in sorted(p for p in LIBRARY.iterdir() if p.is_dir()):
        if not (example / "guardrail.yaml").exists():
            sets.append(load_manifests(sorted(example.glob("*.yaml"))))
    return [[dict(m) for m in s] for s in sets]


def agreement_namespaces(prefix: str = PREFIX) -> list[str]:
    """The namespaces the agreement check uses (bench/run.py excludes them from aidp's webhook)."""
    names: set[str] = set()
    for manifests in example_sets():
        for m in manifests:
            ns = m.get("metadata", {}).get("namespace")
            if ns:
                names.add(prefix + ns)
            if m.get("kind") == "Namespace":
                names.add(prefix + m["metadata"]["name"])
    return sorted(names)


def operator_args() -> list[str]:
    """aidp's operator leaves Gatekeeper's namespaces alone (its webhook then skips them)."""
    names = (BENCH_NAMESPACE, VAP_NAMESPACE, *agreement_namespaces(), *agreement_namespaces(VAP_PREFIX))
    return [arg for ns in names for arg in ("--exclude-namespace", ns)]


def expected_verdicts(prefix: str = PREFIX) -> dict[tuple[str, str, str], bool]:
    """aidp's verdict (aidp check: the Rego) on every checked workload of the examples."""
    verdicts: dict[tuple[str, str, str], bool] = {}
    for manifests in example_sets():
        for r in check_manifests(manifests):
            verdicts[(r.kind, prefix + r.namespace, r.name)] = r.allowed
    return verdicts


def renamed(manifest: dict[str, Any], prefix: str = PREFIX) -> dict[str, Any]:
    """The manifest in its renamed namespace; a Namespace in the webhook's scope (`PREFIX`) or not."""
    obj = copy.deepcopy(manifest)
    meta = obj.setdefault("metadata", {})
    if obj.get("kind") == "Namespace":
        meta["name"] = prefix + meta["name"]
        if prefix == PREFIX:
            meta.setdefault("labels", {})[SCOPE_LABEL] = "yes"
    elif meta.get("namespace"):
        meta["namespace"] = prefix + meta["namespace"]
    return obj


# --- Gatekeeper's ValidatingAdmissionPolicy: aidp's CEL in a K8sNativeValidation template -------


def _rebind(expression: str, to: str = "variables.params.policy.") -> str:
    """aidp's CEL reads the AIDataPolicy as `params`; Gatekeeper binds the constraint's
    parameters to `variables.params`, where each constraint carries one policy. Match conditions
    have no variables: there the constraint is `params`, its parameters `params.spec.parameters`."""
    return re.sub(r"(?<![\w.])params\.", to, expression)


def cel_template() -> dict[str, Any]:
    """A ConstraintTemplate with the K8sNativeValidation engine whose CEL is aidp's vap engine's
    (aidp.vap.render, the `deny` workload policy), the policy read from the constraint: Gatekeeper
    generates one ValidatingAdmissionPolicy from it, and a binding per constraint."""
    (deny,) = [
        o
        for o in vap.render((), ["aidp-bench"])
        if o["kind"] == "ValidatingAdmissionPolicy" and o["metadata"]["name"] == "aidp-workloads-deny"
    ]
    spec = deny["spec"]
    source = {
        "generateVAP": True,
        "failurePolicy": "Fail",
        "matchCondition": [
            {"name": m["name"], "expression": _rebind(m["expression"], "params.spec.parameters.policy.")}
            for m in spec.get("matchConditions", [])
        ],
        "variables": [{"name": v["name"], "expression": _rebind(v["expression"])} for v in spec["variables"]],
        "validations": [
            {k: _rebind(v) for k, v in val.items() if k in ("expression", "messageExpression", "message")}
            for val in spec["validations"]
        ],
    }
    schema = {
        "type": "object",
        "properties": {"policy": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    return {
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": CEL_TEMPLATE},
        "spec": {
            "crd": {"spec": {"names": {"kind": CEL_KIND}, "validation": {"openAPIV3Schema": schema}}},
            "targets": [
                {
                    "target": "admission.k8s.gatekeeper.sh",
                    "code": [{"engine": "K8sNativeValidation", "source": source}],
                }
            ],
        },
    }


def cel_constraint(policy: dict[str, Any]) -> dict[str, Any]:
    """One AIDataPolicy as a constraint of the CEL template: its namespace, a copy of its spec,
    enforced by the generated ValidatingAdmissionPolicy only (enforcement point vap.k8s.io)."""
    meta = policy["metadata"]
    return {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": CEL_KIND,
        "metadata": {"name": f"{meta['namespace']}.{meta['name']}"},
        "spec": {
            "enforcementAction": "scoped",
            "scopedEnforcementActions": [{"action": "deny", "enforcementPoints": [{"name": "vap.k8s.io"}]}],
            "match": {"namespaces": [meta["namespace"]], "kinds": CHECKED_KINDS},
            "parameters": {
                "policy": {
                    "metadata": {"name": meta["name"], "generation": meta.get("generation", 1)},
                    "spec": policy["spec"],
                }
            },
        },
    }


def inventory(manifests: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """data.inventory as Gatekeeper replicates the AIDataPolicies among `manifests` (offline:
    without the CRD's defaults, which the port reads with the same defaults)."""
    namespaces: dict[str, Any] = {}
    for m in manifests:
        if m.get("kind") == "AIDataPolicy":
            ns, name = m["metadata"]["namespace"], m["metadata"]["name"]
            by_kind = namespaces.setdefault(ns, {}).setdefault(m["apiVersion"], {})
            by_kind.setdefault("AIDataPolicy", {})[name] = m
    return {"namespace": namespaces}


def create_review(obj: dict[str, Any]) -> dict[str, Any]:
    """Gatekeeper's input.review for creating `obj`: the AdmissionRequest aidp check builds."""
    group, _, version = obj["apiVersion"].rpartition("/")
    gvk = {"group": group, "version": version, "kind": obj["kind"]}
    review: dict[str, Any] = check.create_review(obj, gvk, obj["kind"].lower() + "s", "offline")["request"]
    return review


# --- the manager ----------------------------------------------------------------------------------


@dataclass
class Gatekeeper:
    """Gatekeeper's manager as a webhook for the namespaces labelled `SCOPE_LABEL`."""

    cp: ControlPlane
    state_dir: Path
    home: Path = TESTBIN
    proc: Process | None = None
    port: int = 0
    health_port: int = 0

    @property
    def binary(self) -> Path:
        return self.home / "bin" / "gatekeeper"

    def start(self, client: Client, *, timeout: float = 120.0) -> Gatekeeper:
        if not (self.binary.is_file() and (self.home / ".files.ok").is_file()):
            raise GatekeeperError(f"{self.binary} is missing: run `make testbin-gatekeeper`")
        kube.install_crds(client, self.home / "crds", timeout=60.0)
        _ensure_namespace(client, NAMESPACE)
        kube.apply_all(client, [from_dict(o) for o in self._rbac()])
        kubeconfig, cert_dir, ca = self._credentials()
        self.port, self.health_port = free_port(), free_port()
        self.proc = Process(
            "gatekeeper",
            [
                str(self.binary),
                f"--kubeconfig={kubeconfig}",
                # webhook: admission; generate: the constraint CRD from the template; status: the
                # pod status objects the controllers write (no audit, no mutation)
                "--operation=webhook",
                "--operation=generate",
                "--operation=status",
                f"--host={HOST}",
                f"--port={self.port}",
                f"--cert-dir={cert_dir}",
                "--disable-cert-rotation",
                "--debug-use-fake-pod",
                f"--health-addr={HOST}:{self.health_port}",
                f"--prometheus-port={free_port()}",
                f"--validating-webhook-configuration-name={WEBHOOK}",
                "--log-level=ERROR",
                # ValidatingAdmissionPolicies only where asked: the CEL template (generateVAP) and
                # its constraints (enforcement point vap.k8s.io), scoped by their own match (the
                # webhook's namespace selector would leave their namespaces out)
                "--default-create-vap-for-templates=false",
                "--default-create-vap-binding-for-constraints=false",
                "--sync-vap-enforcement-scope=false",
                "--default-wait-for-vapb-generation=1",
            ],
            self.state_dir / "gatekeeper.log",
            env={"POD_NAMESPACE": NAMESPACE},
        )
        self.proc.start()
        wait_http_ok(self.proc, f"http://{HOST}:{self.health_port}/healthz", None, timeout=timeout)
        self._install_policy(client, timeout)
        self._register_webhook(client, ca)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def _rbac(self) -> list[dict[str, Any]]:
        """The module's manager roles (config/rbac/role.yaml), bound to `USER`."""
        docs = [d for d in yaml.safe_load_all((self.home / "rbac" / "role.yaml").read_text()) if d]
        objs: list[dict[str, Any]] = []
        subject = {"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}
        for doc in docs:
            doc["metadata"]["name"] = "aidp-bench-gatekeeper"
            kind = doc["kind"]
            objs.append(doc)
            binding: dict[str, Any] = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": f"{kind}Binding",
                "metadata": {"name": "aidp-bench-gatekeeper"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": kind,
                    "name": "aidp-bench-gatekeeper",
                },
                "subjects": [subject],
            }
            if kind == "Role":
                doc["metadata"]["namespace"] = NAMESPACE
                binding["metadata"]["namespace"] = NAMESPACE
            objs.append(binding)
        return objs

    def _credentials(self) -> tuple[Path, Path, bytes]:
        """A kubeconfig for `USER` (a client certificate of the control plane's CA) and the
        webhook's serving certificate (tls.crt, tls.key: controller-runtime's names)."""
        tls = self.state_dir / "gatekeeper-tls"
        cluster_ca = pki.load(self.cp.pki_dir / "ca.crt", self.cp.pki_dir / "ca.key")
        user = pki.issue(cluster_ca, USER, client=True)
        kubeconfig = kubeconfig_mod.write(
            self.state_dir / "gatekeeper.kubeconfig",
            kubeconfig_mod.render(
                self.cp.server,
                cluster_ca.cert_pem,
                user=USER,
                client_cert_pem=user.cert_pem,
                client_key_pem=user.key_pem,
            ),
        )
        ca = pki.new_ca("aidp-bench-gatekeeper-ca")
        pki.issue(ca, "gatekeeper", dns_names=("localhost",), ip_addresses=(HOST,), server=True).write(
            tls, "tls"
        )
        return kubeconfig, tls, ca.cert_pem

    def _install_policy(self, client: Client, timeout: float) -> None:
        kube.apply_all(client, kube.load_yaml_files([HERE / "config.yaml"]))
        (template,) = kube.load_yaml_files([HERE / "template.yaml"])
        client.apply(template, force=True)
        deadline = time.monotonic() + timeout
        client.apply(from_dict(cel_template()), force=True)
        for name in ("aidpadmission", CEL_TEMPLATE):
            crd = f"{name}.constraints.gatekeeper.sh"
            while not _established(client, crd):  # the manager compiles the template, creates the CRD
                if time.monotonic() > deadline:
                    status = client.get(ConstraintTemplate, name).to_dict().get("status")
                    raise GatekeeperError(f"ConstraintTemplate {name}: no CRD {crd}: {status}")
                time.sleep(0.2)
        kube.apply_all(client, kube.load_yaml_files([HERE / "constraints.yaml"]))

    def _register_webhook(self, client: Client, ca: bytes) -> None:
        """aidp's webhook settings (rules, match conditions, timeout, failure policy), like the
        no-op control's, with Gatekeeper's URL and scope."""
        aidp = client.get(ValidatingWebhookConfiguration, OperatorConfig().webhook_name).to_dict()
        hook = copy.deepcopy(aidp["webhooks"][0])
        hook["name"] = "validation.gatekeeper.sh"
        hook["clientConfig"] = {
            "url": f"https://{HOST}:{self.port}/v1/admit",
            "caBundle": base64.b64encode(ca).decode(),
        }
        hook["namespaceSelector"] = {"matchLabels": {SCOPE_LABEL: "yes"}}
        hook.pop("objectSelector", None)
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK},
            "webhooks": [hook],
        }
        client.apply(from_dict(body), force=True)


@contextlib.contextmanager
def running(cp: ControlPlane, client: Client, state_dir: Path) -> Iterator[Gatekeeper]:
    """Gatekeeper for the block; afterwards nothing of it stays on the request path of the
    benchmarks that follow: its webhook configuration, the ValidatingAdmissionPolicy and bindings
    it generated, and the agreement check's namespaces are deleted."""
    gk = Gatekeeper(cp, state_dir)
    try:
        yield gk.start(client)
    finally:
        with contextlib.suppress(ApiError):
            client.delete(ValidatingWebhookConfiguration, WEBHOOK)
        gk.stop()
        generated = f"gatekeeper-{CEL_TEMPLATE}"
        with contextlib.suppress(ApiError):
            for b in client.list(ValidatingAdmissionPolicyBinding):
                if b.spec and b.spec.policyName == generated and b.metadata and b.metadata.name:
                    client.delete(ValidatingAdmissionPolicyBinding, b.metadata.name)
            client.delete(ValidatingAdmissionPolicy, generated)
        for ns in (*agreement_namespaces(), *agreement_namespaces(VAP_PREFIX)):
            with contextlib.suppress(ApiError):
                client.delete(Namespace, ns)


def _established(client: Client, name: str) -> bool:
    try:
        crd = client.get(CustomResourceDefinition, name)
    except ApiError as err:
        if err.status.code == 404:
            return False
        raise
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _ensure_namespace(client: Client, name: str, labels: dict[str, str] | None = None) -> None:
    try:
        client.create(Namespace(metadata=ObjectMeta(name=name, labels=labels)))
    except ApiError as err:
        if err.status.code != 409:
            raise


def scope(client: Client, namespace: str) -> None:
    """Put `namespace` (created if missing) in Gatekeeper's scope."""
    _ensure_namespace(client, namespace, {SCOPE_LABEL: "yes"})
    client.patch(Namespace, namespace, {"metadata": {"labels": {SCOPE_LABEL: "yes"}}})


# --- agreement -------------------------------------------------------------------------------------


def _live_verdict(client: Client, obj: dict[str, Any]) -> bool:
    try:
        client.create(from_dict(copy.deepcopy(obj)), dry_run=True)
    except ApiError as err:
        if err.status.code not in (400, 403, 422) or "aidp:" not in (err.status.message or ""):
            raise
        return False
    return True


def add_policy(client: Client, policy: dict[str, Any], *, vap: bool) -> None:
    """Create an AIDataPolicy for Gatekeeper: its webhook reads it from data.inventory; its VAP
    path needs a constraint carrying a copy (`vap`)."""
    try:
        client.create(from_dict(copy.deepcopy(policy)))
    except ApiError as err:
        if err.status.code != 409:
            raise
    if vap:
        client.apply(from_dict(cel_constraint(policy)), force=True)


def agreement(client: Client, *, vap: bool = False, timeout: float = 90.0) -> int:
    """Gatekeeper's live verdict (its webhook, or with `vap` its generated ValidatingAdmissionPolicy)
    on every checked workload of the examples is aidp's; returns how many objects agree, raises
    GatekeeperError listing every one that does not."""
    prefix = VAP_PREFIX if vap else PREFIX
    expected = expected_verdicts(prefix)
    if not expected or False not in expected.values() or True not in expected.values():
        raise GatekeeperError(f"the examples give no allowed and denied workloads: {expected}")
    workloads: dict[tuple[str, str, str], dict[str, Any]] = {}
    for manifests in example_sets():
        for m in (renamed(m, prefix) for m in manifests):
            key = (
                m.get("kind", ""),
                m.get("metadata", {}).get("namespace", ""),
                m["metadata"].get("name", ""),
            )
            if key in expected:
                workloads[key] = m
                continue
            if m.get("kind") not in ("Namespace", "ServiceAccount", "AIDataPolicy"):
                continue
            if m["kind"] == "Namespace":
                _ensure_namespace(client, m["metadata"]["name"], m["metadata"].get("labels"))
                continue
            if vap:
                _ensure_namespace(client, m["metadata"]["namespace"])
            else:
                scope(client, m["metadata"]["namespace"])
            if m["kind"] == "AIDataPolicy":
                add_policy(client, m, vap=vap)
                continue
            try:
                client.create(from_dict(m))
            except ApiError as err:
                if err.status.code != 409:
                    raise
    # Gatekeeper replicates the policies asynchronously: the verdicts settle within `timeout`
    deadline = time.monotonic() + timeout
    while True:
        live = {key: _live_verdict(client, obj) for key, obj in sorted(workloads.items())}
        wrong = sorted(k for k in expected if live.get(k) != expected[k])
        if not wrong:
            return len(live)
        if time.monotonic() > deadline:
            lines = [
                f"  {kind} {ns}/{name}: aidp {'ALLOWED' if expected[(kind, ns, name)] else 'DENIED'}, "
                f"Gatekeeper {'ALLOWED' if live.get((kind, ns, name)) else 'DENIED'}"
                for kind, ns, name in wrong
            ]
            what = "Gatekeeper's ValidatingAdmissionPolicy" if vap else "the Gatekeeper webhook"
            raise GatekeeperError(f"{what} disagrees with aidp:\n" + "\n".join(lines))
        time.sleep(0.5)
