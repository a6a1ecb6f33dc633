"""aidp on the local control plane: operator, OPA and the OPA agent as real processes.

Order of start-up mirrors a cluster: the operator issues the webhook certificate into a Secret and
registers the webhook; the agent writes that certificate for OPA (a Secret volume's job in a
cluster) and loads the durable policy bundle; OPA serves the webhook on a loopback port.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lightkube import codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.core_v1 import ConfigMap, Namespace

from aidp import kube, rbac_roles
from aidp.bundle import REVISION_ANNOTATION
from aidp.config import DEFAULT_NAMESPACE, OperatorConfig
from aidp.devcluster.cluster import ControlPlane, ControlPlaneError
from aidp.devcluster.opa import HOST, OpaServer, new_token
from aidp.devcluster.procs import Process, free_port
from aidp.opa_loader import Replica, revision_of
from aidp.paths import crds_dir

# TEST-NET-3 and documentation IPv6 addresses stand in for the provider's (RFC 5737, RFC 3849)
DEMO_ADDRESSES = """\
# host -> addresses used in place of DNS (edit to move the egress rules; re-read on every sync)
static:
  api.openai.com: [203.0.113.10, 203.0.113.11, "2001:db8::10"]
  us.api.openai.com: [203.0.113.20]
  eu.api.openai.com: [203.0.113.30, "2001:db8::30"]
  au.api.openai.com: [203.0.113.40]
  in.api.openai.com: [203.0.113.50]
  jp.api.openai.com: [203.0.113.60]
  # the other providers of the catalog (aidp/catalog/providers.yaml): every host, 203.0.113.100 up
  # azure-openai: no fixed host (a policy lists its resource host in spec.endpoints)
  # anthropic
  api.anthropic.com: [203.0.113.100]
  # google-gemini
  generativelanguage.googleapis.com: [203.0.113.101]
  us-central1-aiplatform.googleapis.com: [203.0.113.102]
  us-east1-aiplatform.googleapis.com: [203.0.113.103]
  us-east4-aiplatform.googleapis.com: [203.0.113.104]
  us-west1-aiplatform.googleapis.com: [203.0.113.105]
  us-west4-aiplatform.googleapis.com: [203.0.113.106]
  europe-west1-aiplatform.googleapis.com: [203.0.113.107]
  europe-west2-aiplatform.googleapis.com: [203.0.113.108]
  europe-west3-aiplatform.googleapis.com: [203.0.113.109]
  europe-west4-aiplatform.googleapis.com: [203.0.113.110]
  europe-west9-aiplatform.googleapis.com: [203.0.113.111]
  asia-northeast1-aiplatform.googleapis.com: [203.0.113.112]
  asia-southeast1-aiplatform.googleapis.com: [203.0.113.113]
  australia-southeast1-aiplatform.googleapis.com: [203.0.113.114]
  # aws-bedrock
  bedrock-runtime.us-east-1.amazonaws.com: [203.0.113.115]
  bedrock-runtime.us-east-2.amazonaws.com: [203.0.113.116]
  bedrock-runtime.us-west-2.amazonaws.com: [203.0.113.117]
  bedrock-runtime.ca-central-1.amazonaws.com: [203.0.113.118]
  bedrock-runtime.eu-central-1.amazonaws.com: [203.0.113.119]
  bedrock-runtime.eu-west-1.amazonaws.com: [203.0.113.120]
  bedrock-runtime.eu-west-2.amazonaws.com: [203.0.113.121]
  bedrock-runtime.eu-west-3.amazonaws.com: [203.0.113.122]
  bedrock-runtime.ap-northeast-1.amazonaws.com: [203.0.113.123]
  bedrock-runtime.ap-south-1.amazonaws.com: [203.0.113.124]
  bedrock-runtime.ap-southeast-1.amazonaws.com: [203.0.113.125]
  bedrock-runtime.ap-southeast-2.amazonaws.com: [203.0.113.126]
  # mistral
  api.mistral.ai: [203.0.113.127]
  # cohere
  api.cohere.com: [203.0.113.128]
  api.cohere.ai: [203.0.113.129]
"""


def _aidp(*args: str) -> list[str]:
    return [sys.executable, "-m", "aidp.cli.main", *args]


@dataclass
class AidpStack:
    cp: ControlPlane
    state_dir: Path
    namespace: str = DEFAULT_NAMESPACE
    operator_args: tuple[str, ...] = ()
    opa_port: int = 0
    opa_diagnostic_port: int = 0
    operator: Process | None = None
    agent: Process | None = None
    opa: OpaServer | None = None
    metrics_port: int = 0
    config: OperatorConfig = field(default_factory=OperatorConfig)

    @property
    def token_file(self) -> Path:
        return self.state_dir / "opa" / "token"

    @property
    def addresses_file(self) -> Path:
        """Static provider addresses for the egress rules (this machine has no route to the real ones)."""
        return self.state_dir / "egress-addresses.yaml"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "opa" / "tls"

    @property
    def opa_url(self) -> str:
        return f"https://{HOST}:{self.opa_port}"

    def _prepare(self) -> None:
        (self.state_dir / "opa").mkdir(parents=True, exist_ok=True)
        if not self.token_file.is_file():
            self.token_file.touch(mode=0o600)
            self.token_file.write_text(new_token())
        ports = self.state_dir / "ports.json"
        saved = json.loads(ports.read_text()) if ports.is_file() else {}
        self.opa_port = self.opa_port or saved.get("opa") or free_port()
        self.opa_diagnostic_port = self.opa_diagnostic_port or saved.get("opa-diagnostic") or free_port()
        ports.write_text(json.dumps({"opa": self.opa_port, "opa-diagnostic": self.opa_diagnostic_port}))
        if not self.addresses_file.is_file():
            self.addresses_file.write_text(DEMO_ADDRESSES)

    def install(self) -> None:
        client = kube.client(self.cp.kubeconfig)
        kube.install_crds(client, crds_dir())
        # the chart's roles (who may approve AI use: docs/security.md), identical objects
        kube.apply_all(client, [codecs.from_dict(role) for role in rbac_roles.cluster_roles()])
        try:
            client.create(Namespace(metadata=ObjectMeta(name=self.namespace)))
        except ApiError as err:
            if err.status.code != 409:
                raise

    def start(self, *, timeout: float = 60.0) -> AidpStack:
        self._prepare()
        self.install()
        self.start_operator()
        self.start_agent()
        self.wait_for(
            lambda: (self.tls_dir / "tls.crt").is_file(), timeout, "webhook certificate from the operator"
        )
        self.start_opa()
        self.wait_for(self.enforcing, timeout, "OPA to hold the durable bundle")
        return self

    # ---- components ------------------------------------------------------------------------
    def _common_args(self) -> list[str]:
        """The arguments `aidp run` and `aidp opa-agent` share: cluster, namespace, OPA."""
        return [
            "--kubeconfig",
            str(self.cp.kubeconfig),
            "--namespace",
            self.namespace,
            "--opa-url",
            self.opa_url,
            "--opa-token-file",
            str(self.token_file),
        ]

    def start_operator(self, *extra: str, name: str = "aidp-operator") -> Process:
        argv = _aidp(
            "run",
            *self._common_args(),
            "--webhook-url",
            f"{self.opa_url}/",
            "--webhook-ip",
            HOST,
            "--opa-check-seconds",
            "0.5",
            "--egress-addresses-file",
            str(self.addresses_file),
            *self.operator_args,
            *extra,
        )
        proc = Process(name, argv, self.state_dir / "logs" / f"{name}.log")
        proc.start()
        if name == "aidp-operator":
            self.operator = proc
        return proc

    def start_agent(self) -> Process:
        argv = _aidp(
            "opa-agent",
            *self._common_args(),
            "--tls-dir",
            str(self.tls_dir),
            "--interval",
            "0.2",
        )
        self.agent = Process("aidp-opa-agent", argv, self.state_dir / "logs" / "aidp-opa-agent.log")
        self.agent.start()
        return self.agent

    def start_opa(self) -> OpaServer:
        self.opa = OpaServer(
            self.state_dir / "opa",
            self.token_file.read_text().strip(),
            cert_file=self.tls_dir / "tls.crt",
            key_file=self.tls_dir / "tls.key",
            ca_file=self.tls_dir / "ca.crt",
            port=self.opa_port,
            diagnostic_port=self.opa_diagnostic_port,
        )
        return self.opa.start()

    def stop(self) -> None:
        for proc in (self.opa.proc if self.opa else None, self.agent, self.operator):
            if proc is not None:
                proc.stop()

    def processes(self) -> dict[str, Process]:
        procs = {
            "aidp-operator": self.operator,
            "aidp-opa-agent": self.agent,
            "opa": self.opa.proc if self.opa else None,
        }
        return {k: v for k, v in procs.items() if v is not None}

    # ---- state -------------------------------------------------------------------------------
    def replica(self) -> Replica:
        return Replica(self.opa_url, self.token_file.read_text().strip(), self.tls_dir / "ca.crt")

    def durable_revision(self) -> str | None:
        client = kube.client(self.cp.kubeconfig)
        try:
            cm = client.get(ConfigMap, self.config.bundle_configmap, namespace=self.namespace)
        except ApiError:
            return None
        return (cm.metadata.annotations or {}).get(REVISION_ANNOTATION) if cm.metadata else None

    def opa_revision(self) -> str | None:
        return revision_of(self.replica())

    @property
    def admission_engine(self) -> str:
        """The operator's --admission-engine (its flag, else AIDP_ADMISSION_ENGINE, else opa)."""
        args = list(self.operator_args)
        if "--admission-engine" in args[:-1]:
            return args[args.index("--admission-engine") + 1]
        return os.environ.get("AIDP_ADMISSION_ENGINE") or "opa"

    def enforcing(self) -> bool:
        """OPA holds the durable bundle and the webhook (or, with the vap engine, the
        ValidatingAdmissionPolicy objects) is in place."""
        client = kube.client(self.cp.kubeconfig)
        try:
            if self.admission_engine == "vap":
                from lightkube.resources.admissionregistration_v1 import ValidatingAdmissionPolicyBinding

                client.get(ValidatingAdmissionPolicyBinding, "aidp-workloads-deny")
            else:
                client.get(ValidatingWebhookConfiguration, self.config.webhook_name)
        except ApiError:
            return False
        durable = self.durable_revision()
        return durable is not None and self.opa_revision() == durable

    def wait_for(self, check: object, timeout: float, what: str) -> None:
        import time

        assert callable(check)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in (self.operator, self.agent):
                if proc is not None and not proc.alive():
                    raise proc.failure(f"exited while waiting for {what}")
            if check():
                return
            time.sleep(0.1)
        logs = "\n".join(f"{p.name}: {p.log}" for p in self.processes().values())
        raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}; logs:\n{logs}")
