"""The local control plane: etcd + kube-apiserver + kube-controller-manager as real processes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from aidp import pki
from aidp.devcluster import kubeconfig
from aidp.devcluster.procs import (
    ComponentError,
    Process,
    free_port,
    https_context,
    pid_alive,
    wait_http_ok,
)
from aidp.paths import testbin_dir

HOST = "127.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
# with a node (aidp.devcluster.node): the node's bridge address, where pods reach the API server
NODE_ADDRESS = "198.18.0.1"
APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")


class ControlPlaneError(ComponentError):
    """The local control plane could not be started or used."""


def require_binaries(bin_dir: Path, names: tuple[str, ...]) -> None:
    missing = [n for n in names if not (bin_dir / n).is_file()]
    if missing:
        raise ControlPlaneError(
            f"missing test binaries {', '.join(missing)} in {bin_dir}: run `make testbin` first "
            "(it builds etcd, kube-apiserver, kube-controller-manager, kubectl, opa and helm from "
            "the Go module proxy into a per-user cache)"
        )


@dataclass
class ControlPlane:
    """A real Kubernetes control plane on loopback ports, rooted in `state_dir`.

    The directory keeps the PKI, etcd's data, the kubeconfig, component logs and `state.json`
    (ports and process ids), so a later process (`aidp dev down`) can find and stop it, and a
    restarted component comes back on the same port with the same data.
    """

    state_dir: Path
    bin_dir: Path = field(default_factory=testbin_dir)
    controller_manager: bool = True
    # a node joins (`aidp dev up --node`): the API server reaches kubelets (logs, exec) at their
    # InternalIP with a client certificate, and authorizes kubelets with the Node authorizer
    node: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, Process] = field(default_factory=dict)

    # ---- layout --------------------------------------------------------------------------
    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{HOST}:{self.ports['kube-apiserver']}"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    def _p(self, name: str) -> Path:
        return self.pki_dir / name

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> ControlPlane:
        names = COMPONENTS if self.controller_manager else COMPONENTS[:2]
        require_binaries(self.bin_dir, names)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._load_ports()
        for name in ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager"):
            self.ports.setdefault(name, free_port())
        self._ensure_pki()
        if self.node:
            self._ensure_kubelet_client()
        try:
            for name in names:
                self.start_component(name)
        except BaseException:
            self.stop()
            raise
        return self

    def start_component(self, name: str) -> None:
        argv = {
            "etcd": self._etcd_argv,
            "kube-apiserver": self._apiserver_argv,
            "kube-controller-manager": self._kcm_argv,
        }[name]()
        proc = Process(name, argv, self.log_dir / f"{name}.log")
        proc.start()
        self.procs[name] = proc
        self.save_state()
        self._wait_healthy(name, proc)

    def kill_component(self, name: str) -> None:
        """SIGKILL one component (fault injection); `start_component` brings it back."""
        self.procs[name].kill()

    def stop(self) -> None:
        """Stop every component, newest first, and verify that none is left running."""
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        left = [f"{n} (pid {p.pid})" for n, p in self.procs.items() if p.alive()]
        self.procs.clear()
        self.save_state()
        if left:
            raise ControlPlaneError(f"processes survived stop: {', '.join(left)}")

    def healthy(self) -> bool:
        try:
            ctx = https_context(self.ca_file, self._p("admin.crt"), self._p("admin.key"))
            wait_http_ok(self.procs["kube-apiserver"], f"{self.server}/readyz", ctx, timeout=2)
        except (ComponentError, KeyError, OSError):
            return False
        return True

    # ---- persistence for `aidp dev` ----------------------------------------------------
    def save_state(self) -> None:
        state = {
            "ports": self.ports,
            "pids": {n: p.pid for n, p in self.procs.items() if p.pid},
            "kubeconfig": str(self.kubeconfig),
        }
        (self.state_dir / "controlplane.json").write_text(json.dumps(state, indent=2))

    def _load_ports(self) -> None:
        path = self.state_dir / "controlplane.json"
        if path.is_file():
            self.ports.update(json.loads(path.read_text()).get("ports", {}))

    @classmethod
    def attach(cls, state_dir: Path, bin_dir: Path | None = None) -> ControlPlane:
        """The control plane recorded in `state_dir` by another process (for `aidp dev`)."""
        cp = cls(state_dir, bin_dir or testbin_dir())
        path = state_dir / "controlplane.json"
        if path.is_file():
            state = json.loads(path.read_text())
            cp.ports.update(state.get("ports", {}))
            for name, pid in state.get("pids", {}).items():
                if pid_alive(pid):
                    proc = Process(name, [], cp.log_dir / f"{name}.log")
                    proc.pid = pid
                    cp.procs[name] = proc
        return cp

    # ---- PKI ---------------------------------------------------------------------------
    def _ensure_pki(self) -> None:
        if (self.pki_dir / "done").is_file():
            return
        d = self.pki_dir
        ca = pki.new_ca("aidp-dev-ca")
        ca.write(d, "ca")
        loopback = ("127.0.0.1",)
        pki.issue(
            ca, "etcd", dns_names=("localhost",), ip_addresses=loopback, server=True, client=True
        ).write(d, "etcd-server")
        pki.issue(ca, "kube-apiserver-etcd-client", client=True).write(d, "etcd-client")
        pki.issue(
            ca, "kube-apiserver", dns_names=APISERVER_DNS, ip_addresses=("127.0.0.1", "10.0.0.1"), server=True
        ).write(d, "apiserver")
        admin = pki.issue(ca, "aidp-dev-admin", organizations=("system:masters",), client=True)
        admin.write(d, "admin")
        kcm = pki.issue(ca, "system:kube-controller-manager", client=True)
        kcm.write(d, "kcm-client")
        pki.issue(
            ca, "kube-controller-manager", dns_names=("localhost",), ip_addresses=loopback, server=True
        ).write(d, "kcm-serving")
        sa = pki.new_key()
        (d / "sa.key").write_bytes(pki.key_pem(sa))
        (d / "sa.pub").write_bytes(pki.public_key_pem(sa))
        # the kubeconfigs embed the certificates, so they are self-contained
        server = f"https://{HOST}:{self.ports['kube-apiserver']}"
        kubeconfig.write(
            self.kubeconfig,
            kubeconfig.render(
                server,
                ca.cert_pem,
                user="aidp-dev-admin",
                client_cert_pem=admin.cert_pem,
                client_key_pem=admin.key_pem,
            ),
        )
        kubeconfig.write(
            d / "kcm.kubeconfig",
            kubeconfig.render(
                server,
                ca.cert_pem,
                user="system:kube-controller-manager",
                client_cert_pem=kcm.cert_pem,
                client_key_pem=kcm.key_pem,
            ),
        )
        (d / "done").write_text("ok\n")

    def _ensure_kubelet_client(self) -> None:
        """A node's additions: the kubelet client certificate, and the node address in the serving
        certificate (pods reach the API server there through the `kubernetes` Service)."""
        ca = pki.load(self._p("ca.crt"), self._p("ca.key"))
        if not self._p("kubelet-client.crt").is_file():
            pki.issue(
                ca, "kube-apiserver-kubelet-client", organizations=("system:masters",), client=True
            ).write(self.pki_dir, "kubelet-client")
        if not (self.pki_dir / "apiserver-node").is_file():
            ips = ("127.0.0.1", "10.0.0.1", NODE_ADDRESS)
            pki.issue(ca, "kube-apiserver", dns_names=APISERVER_DNS, ip_addresses=ips, server=True).write(
                self.pki_dir, "apiserver"
            )
            (self.pki_dir / "apiserver-node").write_text("ok\n")

    # ---- command lines ------------------------------------------------------------------
    def _etcd_argv(self) -> list[str]:
        p, port, peer = self._p, self.ports["etcd"], self.ports["etcd-peer"]
        return [
            str(self.bin_dir / "etcd"),
            "--name=aidp-dev",
            f"--data-dir={self.state_dir / 'etcd-data'}",
            f"--listen-client-urls=https://{HOST}:{port}",
            f"--advertise-client-urls=https://{HOST}:{port}",
            f"--listen-peer-urls=http://{HOST}:{peer}",
            f"--initial-advertise-peer-urls=http://{HOST}:{peer}",
            f"--initial-cluster=aidp-dev=http://{HOST}:{peer}",
            f"--cert-file={p('etcd-server.crt')}",
            f"--key-file={p('etcd-server.key')}",
            f"--trusted-ca-file={p('ca.crt')}",
            "--client-cert-auth=true",
            "--unsafe-no-fsync=true",  # throwaway data on a test machine: speed over durability
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        p = self._p
        return [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=https://{HOST}:{self.ports['etcd']}",
            f"--etcd-cafile={p('ca.crt')}",
            f"--etcd-certfile={p('etcd-client.crt')}",
            f"--etcd-keyfile={p('etcd-client.key')}",
            # with a node: on every address (pods come from the bridge), published as the node's
            # (the API server publishes no loopback endpoint for the `kubernetes` Service)
            f"--bind-address={'0.0.0.0' if self.node else HOST}",  # noqa: S104 - the node's bridge
            f"--advertise-address={NODE_ADDRESS if self.node else HOST}",
            f"--secure-port={self.ports['kube-apiserver']}",
            f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            f"--tls-cert-file={p('apiserver.crt')}",
            f"--tls-private-key-file={p('apiserver.key')}",
            f"--client-ca-file={p('ca.crt')}",
            *(() if self.node else ("--authorization-mode=RBAC",)),
            "--anonymous-auth=false",
            f"--service-account-key-file={p('sa.pub')}",
            f"--service-account-signing-key-file={p('sa.key')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
            *self._apiserver_node_argv(),
        ]

    def _apiserver_node_argv(self) -> list[str]:
        if not self.node:
            return []
        p = self._p
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={p('kubelet-client.crt')}",
            f"--kubelet-client-key={p('kubelet-client.key')}",
            f"--kubelet-certificate-authority={p('ca.crt')}",
        ]

    def _kcm_argv(self) -> list[str]:
        p = self._p
        kc = p("kcm.kubeconfig")
        return [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--bind-address={HOST}",
            f"--secure-port={self.ports['kube-controller-manager']}",
            f"--tls-cert-file={p('kcm-serving.crt')}",
            f"--tls-private-key-file={p('kcm-serving.key')}",
            f"--service-account-private-key-file={p('sa.key')}",
            f"--root-ca-file={p('ca.crt')}",
            f"--cluster-signing-cert-file={p('ca.crt')}",
            f"--cluster-signing-key-file={p('ca.key')}",
            "--use-service-account-credentials=true",  # each controller its own RBAC identity
            "--leader-elect=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--concurrent-gc-syncs=5",
            "--profiling=false",
            "--v=1",
        ]

    # ---- health ------------------------------------------------------------------------
    def _wait_healthy(self, name: str, proc: Process) -> None:
        p = self._p
        if name == "etcd":
            ctx = https_context(p("ca.crt"), p("etcd-client.crt"), p("etcd-client.key"))
            wait_http_ok(
                proc,
                f"https://{HOST}:{self.ports['etcd']}/health",
                ctx,
                accept=lambda s, b: s == 200 and b'"health":"true"' in b,
            )
        elif name == "kube-apiserver":
            ctx = https_context(p("ca.crt"), p("admin.crt"), p("admin.key"))
            wait_http_ok(proc, f"{self.server}/readyz", ctx, timeout=120)
        else:
            ctx = https_context(p("ca.crt"))
            wait_http_ok(proc, f"https://{HOST}:{self.ports[name]}/healthz", ctx, timeout=60)
            # the garbage collector and the namespace controller need the API discovery; the
            # default service account of `default` shows the controllers are really running
            self._wait_default_service_account(proc)

    def _wait_default_service_account(self, proc: Process, timeout: float = 60.0) -> None:
        ctx = https_context(self.ca_file, self._p("admin.crt"), self._p("admin.key"))
        wait_http_ok(
            proc, f"{self.server}/api/v1/namespaces/default/serviceaccounts/default", ctx, timeout=timeout
        )
