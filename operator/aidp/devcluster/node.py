"""A real node for the local control plane (`aidp dev up --node`, the `node` tests).

Beside the control plane of `cluster.py` it runs, as processes on this machine:

- containerd (Debian's) with runc and the CNI bridge plugin: the pod network `POD_CIDR` on the
  bridge `BRIDGE`, whose address `NODE_IP` is the node's InternalIP and the cluster DNS address;
- kubelet (cgroupfs, serving certificate from the dev CA, so `kubectl logs`/`exec` work),
  kube-scheduler and kube-proxy (iptables);
- CoreDNS on `NODE_IP:53`: the cluster zone from the API, the provider hosts of the egress
  addresses file, and nothing else (no forwarder: no query leaves the machine);
- kube-router's NetworkPolicy controller (iptables + ipset) as the CNI's policy enforcer;
- the provider stand-in (`provider.py`): TLS servers in the network namespace `PROVIDER_NETNS` on
  the addresses the addresses file gives the catalog hosts, on `CDN_EDGE` (a second edge of
  api.openai.com that the file does not list) and on `OUTSIDE_ADDRESS` (a host that is no
  provider).

Every address is a documentation (RFC 5737) or benchmarking (RFC 2544) address on an interface this
module creates (the start refuses when the machine already uses one of those ranges); a guard
chain in the mangle table drops whatever the pods or the provider namespace would send to any
other interface, so no packet of the test bed leaves the machine. `teardown` removes every process,
mount, network namespace, link, iptables chain, ipset and cgroup that `start` made; `leftovers`
lists what is still there (empty after a teardown).

One node per machine (the bridge, the namespace and the chains have fixed names): a second start
from another state directory is refused while the first runs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aidp import pki
from aidp.devcluster import kubeconfig
from aidp.devcluster.cluster import NODE_ADDRESS, ControlPlane, ControlPlaneError
from aidp.devcluster.procs import Process, free_port, https_context, pid_alive, wait_http_ok
from aidp.paths import testbin_dir

NODE_NAME = "aidp-node"
# 198.18.0.0/15 is reserved for benchmarking (RFC 2544) and never routed; TEST-NET-1 (192.0.2.0/24) is
# not used because some machines (this workplace's) number their own uplink from it
POD_CIDR = "198.18.0.0/24"
NODE_IP = NODE_ADDRESS
BRIDGE = "aidp0"
PROVIDER_NETNS = "aidp-provider"
PROVIDER_LINK = "aidp-prov"  # host end of the veth pair; `prov0` inside the namespace
PROVIDER_NETS = ("203.0.113.0/24", "198.51.100.0/24")  # TEST-NET-3 (providers), TEST-NET-2 (others)
CDN_EDGE = "203.0.113.12"  # serves api.openai.com, not in the addresses file
OUTSIDE_HOST = "outside.aidp.test"
OUTSIDE_ADDRESS = "198.51.100.10"
GUARD_CHAIN = "AIDP-NODE-GUARD"
# containerd (and what it starts: CNI plugins, shims) runs with this group: the chain PULL_CHAIN
# rejects that group's packets to anything but loopback, so an image the node does not have is
# never pulled from a registry (images come from `make images` only)
PULL_GUARD_GID = 64999
PULL_CHAIN = "AIDP-NODE-NO-PULL"
CNI_BIN = Path("/usr/lib/cni")
LOCK = Path("/run/aidp-node.owner")
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "coredns", "kube-router")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "iptables", "ipset", "setpriv")
IMAGES = ("pause", "probe", "opa", "aidp")
PROBE_IMAGE = "aidp.local/probe:dev"
COMPONENTS = ("containerd", "provider", "coredns", "kube-scheduler", "kubelet", "kube-proxy", "kube-router")
SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}
CHAIN_PREFIXES = ("KUBE-", "AIDP-NODE-")
IPSET_PREFIXES = ("KUBE-", "kube-router", "inet6:KUBE-", "inet6:kube-router")
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle", "raw")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


class NodeError(ControlPlaneError):
    """The node could not be started, or the machine cannot run one."""


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, **ENV}
    )
    if check and res.returncode != 0:
        raise NodeError(
            f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}"
        )
    return res


def _which(name: str) -> str | None:
    return shutil.which(name, path=ENV["PATH"])


def missing_prerequisites(bin_dir: Path | None = None, images_dir: Path | None = None) -> list[str]:
    """Why this machine cannot run the node right now (empty when it can)."""
    bin_dir = bin_dir or testbin_dir()
    images_dir = images_dir or bin_dir.parent / "images"
    why: list[str] = []
    if os.geteuid() != 0:
        why.append("it needs root (network namespaces, iptables, containerd)")
    tools = [t for t in HOST_TOOLS if _which(t) is None]
    if tools or not (CNI_BIN / "bridge").is_file():
        why.append(
            f"Debian packages missing ({', '.join(tools) or 'CNI plugins'}): run `make node-deps` as root"
        )
    bins = [b for b in NODE_BINARIES if not (bin_dir / b).is_file()]
    if bins:
        why.append(f"binaries missing in {bin_dir} ({', '.join(bins)}): run `make testbin`")
    images = [i for i in IMAGES if not (images_dir / f"{i}.tar").is_file()]
    if images:
        why.append(f"images missing in {images_dir} ({', '.join(images)}): run `make images`")
    return why


def _hosts(addresses_file: Path) -> dict[str, list[str]]:
    """Host -> IPv4 addresses from the egress addresses file's `static:` section."""
    doc = yaml.safe_load(addresses_file.read_text()) or {}
    out: dict[str, list[str]] = {}
    for host, addrs in (doc.get("static") or {}).items():
        v4 = [str(a) for a in addrs or [] if ipaddress.ip_address(str(a)).version == 4]
        if v4:
            out[str(host)] = v4
    return out


def _in_provider_nets(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(n) for n in PROVIDER_NETS)


@dataclass
class Node:
    """The node of `cp`, rooted in `state_dir` (default `<control plane state>/node`)."""

    cp: ControlPlane
    addresses_file: Path
    state_dir: Path | None = None
    bin_dir: Path = field(default_factory=testbin_dir)
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, Process] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state_dir is None:
            self.state_dir = self.cp.state_dir / "node"

    # ---- layout ---------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir

    @property
    def images_dir(self) -> Path:
        return self.bin_dir.parent / "images"

    @property
    def pki_dir(self) -> Path:
        return self.dir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def containerd_sock(self) -> Path:
        return self.dir / "run" / "containerd.sock"

    @property
    def containerd_root(self) -> Path:
        return self.dir / "containerd"

    @property
    def kubelet_root(self) -> Path:
        return self.dir / "kubelet"

    def provider_hosts(self) -> dict[str, list[str]]:
        """Every name the stand-in serves and its addresses (the file's, and the outside host)."""
        hosts = {h: a for h, a in _hosts(self.addresses_file).items() if all(map(_in_provider_nets, a))}
        hosts[OUTSIDE_HOST] = [OUTSIDE_ADDRESS]
        return hosts

    def provider_addresses(self) -> list[str]:
        addrs = {a for v in self.provider_hosts().values() for a in v} | {CDN_EDGE}
        return sorted(addrs, key=ipaddress.ip_address)

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self, *, timeout: float = 120.0) -> Node:
        why = missing_prerequisites(self.bin_dir, self.images_dir)
        if why:
            raise NodeError("the node cannot start: " + "; ".join(why))
        previous = self._take_lock()
        clash = _ranges_in_use()
        if clash:
            raise NodeError(f"the node's address ranges are in use on this machine: {'; '.join(clash)}")
        t0 = time.monotonic()
        try:
            # whatever an earlier node left behind: its own state directory's, then the machine's
            # (the fixed names: bridge, namespace, chains, ipsets, cgroups) whoever made them
            if previous is not None:
                teardown(previous, quiet=True)
            teardown(self.dir, quiet=True)
            self._take_lock()
            self.dir.mkdir(parents=True, exist_ok=True)
            for name in (
                "kubelet",
                "kubelet-healthz",
                "kube-scheduler",
                "kube-proxy-healthz",
                "kube-proxy-metrics",
                "coredns-health",
                "coredns-ready",
                "kube-router-health",
                "containerd-stream",
            ):
                while name not in self.ports:  # each its own (free_port releases what it found)
                    port = free_port()
                    if port not in self.ports.values():
                        self.ports[name] = port
            self._save()
            self._ensure_pki()
            self._step("network", self._network)
            self._step(
                "containerd",
                lambda: self._start("containerd", self._containerd_argv(), self._wait_containerd),
            )
            self._step("images", self._import_images)
            self._step(
                "provider", lambda: self._start("provider", self._provider_argv(), self._wait_provider)
            )
            self._step("coredns", lambda: self._start("coredns", self._coredns_argv(), self._wait_coredns))
            self._step(
                "kube-scheduler",
                lambda: self._start("kube-scheduler", self._scheduler_argv(), self._wait_scheduler),
            )
            self._step("kubelet", lambda: self._start("kubelet", self._kubelet_argv(), self._wait_kubelet))
            self._step("node-ready", lambda: self._wait_node_ready(timeout))
            self._step(
                "kube-proxy",
                lambda: self._start("kube-proxy", self._kube_proxy_argv(), self._wait_kube_proxy),
            )
            self._step(
                "kube-router",
                lambda: self._start("kube-router", self._kube_router_argv(), self._wait_kube_router),
            )
        except BaseException:
            self.stop_processes()
            raise
        self.timings["total"] = round(time.monotonic() - t0, 2)
        self._save()
        return self

    def _step(self, name: str, fn: Callable[[], object]) -> None:
        t = time.monotonic()
        fn()
        self.timings[name] = round(time.monotonic() - t, 2)

    def _start(self, name: str, argv: list[str], wait: Callable[[Process], None]) -> None:
        proc = Process(name, argv, self.log_dir / f"{name}.log", env=ENV)
        proc.start()
        self.procs[name] = proc
        self._save()
        wait(proc)

    def stop_processes(self) -> None:
        for name in reversed(list(self.procs)):
            self.procs[name].stop()

    def restart(self, name: str, *, kill: bool = False) -> None:
        """Stop one component (SIGKILL with `kill`, as a crash) and start it again, health-checked
        (fault injection: the kubelet or the enforcer restarted)."""
        starts: dict[str, tuple[Callable[[], list[str]], Callable[[Process], None]]] = {
            "kubelet": (self._kubelet_argv, self._wait_kubelet),
            "kube-router": (self._kube_router_argv, self._wait_kube_router),
            "kube-proxy": (self._kube_proxy_argv, self._wait_kube_proxy),
            "coredns": (self._coredns_argv, self._wait_coredns),
        }
        argv, wait = starts[name]
        proc = self.procs[name]
        if kill:
            proc.kill()
        else:
            proc.stop()
        self._start(name, argv(), wait)

    def healthy(self) -> bool:
        state = _load(self.dir)
        pids = state.get("pids", {})
        return (
            set(pids) == set(COMPONENTS)
            and all(pid_alive(int(p)) for p in pids.values())
            and self.node_ready()
        )

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        state = {
            "ports": self.ports,
            "pids": {n: p.pid for n, p in self.procs.items() if p.pid},
            "timings": self.timings,
            "kubeconfig": str(self.cp.kubeconfig),
            "bin_dir": str(self.bin_dir),
        }
        (self.dir / "node.json").write_text(json.dumps(state, indent=2))

    def _take_lock(self) -> Path | None:
        """Own the machine's node; returns the state directory of an earlier node whose processes
        are gone (killed without a teardown), whose leftovers the start removes."""
        previous: Path | None = None
        with contextlib.suppress(OSError):
            owner = Path(LOCK.read_text().strip())
            if owner != self.dir:
                if _alive_pids(owner):
                    raise NodeError(
                        f"a node test bed already runs from {owner.parent}: stop it first "
                        f"(`aidp dev down --state-dir {owner.parent}`); one node per machine"
                    )
                previous = owner
        LOCK.write_text(f"{self.dir}\n")
        return previous

    # ---- PKI and kubeconfigs -------------------------------------------------------------
    def _ensure_pki(self) -> None:
        d = self.pki_dir
        if (d / "done").is_file():
            return
        ca = pki.load(self.cp.pki_dir / "ca.crt", self.cp.pki_dir / "ca.key")
        (d / "ca.crt").parent.mkdir(parents=True, exist_ok=True)
        (d / "ca.crt").write_bytes(ca.cert_pem)
        pki.issue(
            ca,
            NODE_NAME,
            dns_names=(NODE_NAME, "localhost"),
            ip_addresses=(NODE_IP, "127.0.0.1"),
            server=True,
        ).write(d, "kubelet-serving")
        pki.issue(
            ca, "kube-scheduler", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True
        ).write(d, "scheduler-serving")
        names = tuple(self.provider_hosts())
        pki.issue(
            ca,
            "provider-stand-in",
            dns_names=names,
            ip_addresses=tuple(self.provider_addresses()),
            server=True,
        ).write(d, "provider")
        clients = {
            "kubelet": (f"system:node:{NODE_NAME}", ("system:nodes",)),
            "kube-scheduler": ("system:kube-scheduler", ()),
            "kube-proxy": ("system:kube-proxy", ()),
            # the enforcer and cluster DNS read pods, namespaces, policies and services cluster-wide
            "kube-router": ("aidp-node:kube-router", ("system:masters",)),
            "coredns": ("aidp-node:coredns", ("system:masters",)),
        }
        for name, (cn, orgs) in clients.items():
            pair = pki.issue(ca, cn, organizations=orgs, client=True)
            kubeconfig.write(
                d / f"{name}.kubeconfig",
                kubeconfig.render(
                    self.cp.server,
                    ca.cert_pem,
                    user=cn,
                    client_cert_pem=pair.cert_pem,
                    client_key_pem=pair.key_pem,
                ),
            )
        (d / "done").write_text("ok\n")

    # ---- network --------------------------------------------------------------------------
    def _network(self) -> None:
        saved = {}
        for key, value in SYSCTLS.items():
            path = Path("/proc/sys") / key
            saved[key] = path.read_text().strip()
            path.write_text(value)
        (self.dir / "sysctl.json").write_text(json.dumps(saved))
        # the bridge exists before the first pod: the node's address is on it from the start
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # the provider namespace, reached through a veth pair
        _run("ip", "netns", "add", PROVIDER_NETNS)
        _run(
            "ip",
            "link",
            "add",
            PROVIDER_LINK,
            "type",
            "veth",
            "peer",
            "name",
            "prov0",
            "netns",
            PROVIDER_NETNS,
        )
        nets = [ipaddress.ip_network(n) for n in PROVIDER_NETS]
        for net in nets:
            _run("ip", "addr", "add", f"{next(net.hosts())}/{net.prefixlen}", "dev", PROVIDER_LINK)
        _run("ip", "link", "set", PROVIDER_LINK, "up")
        ns = ("ip", "-n", PROVIDER_NETNS)
        for addr in self.provider_addresses():
            net = next(n for n in nets if ipaddress.ip_address(addr) in n)
            _run(*ns, "addr", "add", f"{addr}/{net.prefixlen}", "dev", "prov0")
        _run(*ns, "link", "set", "lo", "up")
        _run(*ns, "link", "set", "prov0", "up")
        _run(*ns, "route", "add", "default", "via", str(next(nets[0].hosts())))
        # the guard: what the pods or the stand-in forward goes to the bridge or the stand-in only
        _run("iptables", "-t", "mangle", "-N", GUARD_CHAIN)
        _run("iptables", "-t", "mangle", "-A", GUARD_CHAIN, "-o", BRIDGE, "-j", "RETURN")
        _run("iptables", "-t", "mangle", "-A", GUARD_CHAIN, "-o", PROVIDER_LINK, "-j", "RETURN")
        _run("iptables", "-t", "mangle", "-A", GUARD_CHAIN, "-j", "DROP")
        for link in (BRIDGE, PROVIDER_LINK):
            _run("iptables", "-t", "mangle", "-I", "FORWARD", "1", "-i", link, "-j", GUARD_CHAIN)
        for cmd in IPTABLES:
            _run(cmd, "-N", PULL_CHAIN)
            _run(cmd, "-A", PULL_CHAIN, "-o", "lo", "-j", "RETURN")
            _run(cmd, "-A", PULL_CHAIN, "-j", "REJECT")
            _run(
                cmd, "-I", "OUTPUT", "1", "-m", "owner", "--gid-owner", str(PULL_GUARD_GID), "-j", PULL_CHAIN
            )
        # CNI: the bridge plugin with host-local addresses kept in the state directory
        conf = {
            "cniVersion": "1.0.0",
            "name": "aidp-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni-ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.dir / "cni").mkdir(parents=True, exist_ok=True)
        (self.dir / "cni" / "10-aidp.conflist").write_text(json.dumps(conf, indent=2))
        (self.dir / "resolv.conf").write_text(f"nameserver {NODE_IP}\n")

    # ---- containerd -----------------------------------------------------------------------
    def _containerd_argv(self) -> list[str]:
        root, sock = self.containerd_root, self.containerd_sock
        sock.parent.mkdir(parents=True, exist_ok=True)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"

[{cri}]
  sandbox_image = "aidp.local/pause:dev"
  # this machine lacks CAP_SYS_RESOURCE: runc may only raise oom_score_adj
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  # the stream server (kubectl exec, logs) on a port of ours: by default it takes a random one,
  # which once was the port chosen for kube-proxy's healthz before kube-proxy started
  stream_server_address = "127.0.0.1"
  stream_server_port = "{self.ports["containerd-stream"]}"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{_which("runc")}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.dir / "cni"}"
    max_conf_num = 1
"""
        path = self.dir / "containerd.toml"
        path.write_text(config)
        return [
            _which("setpriv") or "setpriv",
            f"--regid={PULL_GUARD_GID}",
            "--clear-groups",
            "--",
            _which("containerd") or "containerd",
            "--config",
            str(path),
            "--log-level",
            "info",
        ]

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run(
            "ctr", "--address", str(self.containerd_sock), "-n", "k8s.io", *args, check=check, timeout=timeout
        )

    def _wait_containerd(self, proc: Process) -> None:
        _wait(
            proc,
            lambda: self.ctr("version", check=False, timeout=5).returncode == 0,
            30,
            "containerd's socket",
        )

    def _import_images(self) -> None:
        for name in IMAGES:
            self.ctr(
                "images", "import", "--base-name", f"aidp.local/{name}", str(self.images_dir / f"{name}.tar")
            )
        listed = self.ctr("images", "ls", "-q").stdout.split()
        missing = [n for n in IMAGES if f"aidp.local/{n}:dev" not in listed]
        if missing:
            raise NodeError(f"images not in containerd after import: {missing} (have {listed})")

    # ---- provider stand-in and DNS ----------------------------------------------------------
    def _provider_argv(self) -> list[str]:
        import sys

        listen = [f"--listen={a}:443" for a in self.provider_addresses()]
        return [
            _which("ip") or "ip", "netns", "exec", PROVIDER_NETNS,
            sys.executable, "-m", "aidp.devcluster.provider",
            f"--cert={self.pki_dir / 'provider.crt'}", f"--key={self.pki_dir / 'provider.key'}", *listen,
        ]  # fmt: skip

    def _wait_provider(self, proc: Process) -> None:
        ctx = https_context(self.pki_dir / "ca.crt")
        ctx.check_hostname = False

        def answers() -> bool:
            for addr in self.provider_addresses():
                try:
                    with socket.create_connection((addr, 443), timeout=1) as s, ctx.wrap_socket(s):
                        pass
                except (OSError, ssl.SSLError):
                    return False
            return True

        _wait(proc, answers, 30, "the provider stand-in on every address")

    def _coredns_argv(self) -> list[str]:
        hosts = "".join(f"{a} {h}\n" for h, addrs in self.provider_hosts().items() for a in addrs)
        (self.dir / "provider.hosts").write_text(hosts)
        corefile = f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{self.ports["coredns-health"]}
    ready 127.0.0.1:{self.ports["coredns-ready"]}
    hosts {self.dir / "provider.hosts"} {{
        ttl 5
        fallthrough
    }}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self.pki_dir / "coredns.kubeconfig"}
        pods insecure
        ttl 5
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""
        (self.dir / "Corefile").write_text(corefile)
        return [str(self.bin_dir / "coredns"), "-conf", str(self.dir / "Corefile")]

    def _wait_coredns(self, proc: Process) -> None:
        wait_http_ok(proc, f"http://127.0.0.1:{self.ports['coredns-ready']}/ready", None, timeout=60)

    # ---- Kubernetes node components ---------------------------------------------------------
    def _scheduler_argv(self) -> list[str]:
        kc, p = self.pki_dir / "kube-scheduler.kubeconfig", self.pki_dir
        return [
            str(self.bin_dir / "kube-scheduler"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['kube-scheduler']}",
            f"--tls-cert-file={p / 'scheduler-serving.crt'}",
            f"--tls-private-key-file={p / 'scheduler-serving.key'}",
            "--leader-elect=false",
            "--v=1",
        ]

    def _wait_scheduler(self, proc: Process) -> None:
        ctx = https_context(self.pki_dir / "ca.crt")
        wait_http_ok(proc, f"https://127.0.0.1:{self.ports['kube-scheduler']}/healthz", ctx, timeout=60)

    def _kubelet_argv(self) -> list[str]:
        p = self.pki_dir
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["kubelet-healthz"],
            "tlsCertFile": str(p / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(p / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True, "cacheTTL": "10s"},
                "x509": {"clientCAFile": str(p / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_sock}",
            "clusterDomain": "cluster.local",
            "clusterDNS": [NODE_IP],
            "resolvConf": str(self.dir / "resolv.conf"),
            "maxPods": 50,
            "podCIDR": POD_CIDR,
            "serializeImagePulls": False,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "shutdownGracePeriod": "0s",
        }
        path = self.dir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [
            str(self.bin_dir / "kubelet"),
            f"--config={path}",
            f"--kubeconfig={p / 'kubelet.kubeconfig'}",
            f"--root-dir={self.kubelet_root}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ]

    def _wait_kubelet(self, proc: Process) -> None:
        wait_http_ok(proc, f"http://127.0.0.1:{self.ports['kubelet-healthz']}/healthz", None, timeout=60)

    def node_object(self) -> dict[str, Any] | None:
        res = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def node_ready(self) -> bool:
        node = self.node_object()
        conds = (node or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def _wait_node_ready(self, timeout: float) -> None:
        kubelet = self.procs["kubelet"]
        _wait(kubelet, self.node_ready, timeout, f"node {NODE_NAME} Ready")
        node = self.node_object() or {}
        if not node.get("spec", {}).get("podCIDR"):
            # what the controller manager's node IPAM would do: kube-router reads the node's range
            patch = {"spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}}
            self.kubectl("patch", "node", NODE_NAME, "--type=merge", "-p", json.dumps(patch))

    def _kube_proxy_argv(self) -> list[str]:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.pki_dir / "kube-proxy.kubeconfig")},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": f"127.0.0.1:{self.ports['kube-proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['kube-proxy-metrics']}",
            # 0: leave the conntrack sysctls as they are (the machine may not allow changing them)
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "0s"},
            "nodePortAddresses": [f"{NODE_IP}/32"],
        }
        path = self.dir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [str(self.bin_dir / "kube-proxy"), f"--config={path}", "--v=1"]

    def _wait_kube_proxy(self, proc: Process) -> None:
        wait_http_ok(proc, f"http://127.0.0.1:{self.ports['kube-proxy-healthz']}/healthz", None, timeout=60)

    def _kube_router_argv(self) -> list[str]:
        return [
            str(self.bin_dir / "kube-router"),
            f"--kubeconfig={self.pki_dir / 'kube-router.kubeconfig'}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--run-loadbalancer=false",
            "--enable-cni=false",
            "--enable-ipv4=true",
            "--enable-ipv6=false",
            f"--hostname-override={NODE_NAME}",
            f"--health-port={self.ports['kube-router-health']}",
            "--metrics-port=0",
            "--v=1",
        ]

    def _wait_kube_router(self, proc: Process) -> None:
        wait_http_ok(proc, f"http://127.0.0.1:{self.ports['kube-router-health']}/healthz", None, timeout=60)

        def chains() -> bool:
            return "KUBE-ROUTER-FORWARD" in _run("iptables", "-S", check=False).stdout

        _wait(proc, chains, 60, "kube-router's NetworkPolicy chains")

    # ---- helpers for tests and the demo -----------------------------------------------------
    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            str(self.bin_dir / "kubectl"),
            "--kubeconfig",
            str(self.cp.kubeconfig),
            *args,
            check=check,
            timeout=timeout,
        )


# ---- state, waiting, teardown ------------------------------------------------------------------
def _load(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "node.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def _alive_pids(state_dir: Path) -> list[int]:
    return [int(p) for p in _load(state_dir).get("pids", {}).values() if pid_alive(int(p))]


def _wait(proc: Process, check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if not proc.alive():
            raise proc.failure(f"exited while waiting for {what}")
        if check():
            return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise proc.failure(f"timed out after {timeout:.0f}s waiting for {what}")


def _ranges_in_use() -> list[str]:
    """Addresses or routes of this machine (outside the node's own links) in the node's ranges."""
    ours = [ipaddress.ip_network(n) for n in (POD_CIDR, *PROVIDER_NETS)]
    clash = []
    for line in _run("ip", "-o", "-4", "addr", "show", check=False).stdout.splitlines():
        parts = line.split()
        if parts[1] in (BRIDGE, PROVIDER_LINK):
            continue
        net = ipaddress.ip_interface(parts[3]).network
        clash += [f"{parts[3]} on {parts[1]}" for o in ours if net.overlaps(o)]
    for line in _run("ip", "-4", "route", "show", check=False).stdout.splitlines():
        parts = line.split()
        if not parts or parts[0] == "default" or "dev" not in parts:
            continue
        dev = parts[parts.index("dev") + 1]
        if dev in (BRIDGE, PROVIDER_LINK):
            continue
        net = ipaddress.ip_network(parts[0], strict=False)
        clash += [f"route {parts[0]} via {dev}" for o in ours if net.overlaps(o)]
    return sorted(set(clash))


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _shims(sock: Path) -> list[int]:
    """The runc shims that the node's containerd started (they run detached from it)."""
    out = []
    for pid in _all_pids():
        argv = _cmdline(pid)
        if argv and argv[0].endswith("containerd-shim-runc-v2") and str(sock) in argv and pid_alive(pid):
            out.append(pid)
    return out


def _cgroup_dirs() -> list[Path]:
    """The kubelet's cgroups (`kubepods` under each v1 hierarchy and the unified one), deepest first."""
    root = Path("/sys/fs/cgroup")
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for hierarchy in root.iterdir():
            top = hierarchy / "kubepods"
            if top.is_dir():
                found += [Path(d) for d, _s, _f in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for d in _cgroup_dirs():
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
    return {p for p in pids if pid_alive(p)}


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                out.append(point)
    return out


def _chains() -> list[tuple[str, str, str]]:
    """(command, table, chain) for every chain of the node's components."""
    out = []
    for cmd in IPTABLES:
        if _which(cmd) is None:
            continue
        for table in TABLES:
            res = _run(cmd, "-t", table, "-S", check=False)
            for line in res.stdout.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "-N" and parts[1].startswith(CHAIN_PREFIXES):
                    out.append((cmd, table, parts[1]))
    return out


def _ipsets() -> list[str]:
    if _which("ipset") is None:
        return []
    res = _run("ipset", "list", "-n", check=False)
    return [n for n in res.stdout.split() if n.startswith(IPSET_PREFIXES)]


def _links() -> list[str]:
    res = _run("ip", "-o", "link", "show", check=False)
    names = []
    for line in res.stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name in (BRIDGE, PROVIDER_LINK) or f"master {BRIDGE} " in line:
            names.append(name)
    return names


def _netns() -> list[str]:
    res = _run("ip", "netns", "list", check=False)
    return [
        line.split()[0]
        for line in res.stdout.splitlines()
        if line.split() and line.split()[0] == PROVIDER_NETNS
    ]


def leftovers(state_dir: Path) -> list[str]:
    """What of a node is still on this machine: empty after `teardown`."""
    state = _load(state_dir)
    left = [f"process {n} (pid {p})" for n, p in state.get("pids", {}).items() if pid_alive(int(p))]
    left += [f"containerd shim (pid {p})" for p in _shims(state_dir / "run" / "containerd.sock")]
    left += [f"pod process (pid {p})" for p in sorted(_cgroup_pids())]
    left += [f"mount {m}" for m in _mounts_under(state_dir)] if state_dir.exists() else []
    left += [f"network namespace {n}" for n in _netns()]
    left += [f"link {n}" for n in _links()]
    left += [f"{cmd} chain {table}/{chain}" for cmd, table, chain in _chains()]
    left += [f"ipset {n}" for n in _ipsets()]
    left += [f"cgroup {d}" for d in _cgroup_dirs()]
    return left


def _drop_chains() -> None:
    for cmd in IPTABLES:
        if _which(cmd) is None:
            continue
        for table in TABLES:
            res = _run(cmd, "-t", table, "-S", check=False)
            for line in res.stdout.splitlines():
                parts = shlex.split(line)
                # jumps from the built-in chains into ours
                into_ours = any(p.startswith(CHAIN_PREFIXES) for p in parts[2:])
                if parts[:1] == ["-A"] and not parts[1].startswith(CHAIN_PREFIXES) and into_ours:
                    _run(cmd, "-t", table, "-D", *parts[1:], check=False)
            ours = [c for c_cmd, t, c in _chains() if c_cmd == cmd and t == table]
            for chain in ours:
                _run(cmd, "-t", table, "-F", chain, check=False)
            for chain in ours:
                _run(cmd, "-t", table, "-X", chain, check=False)


def teardown(state_dir: Path, *, quiet: bool = False) -> list[str]:
    """Stop the node recorded in `state_dir` and remove all it made; returns what was stopped.

    Safe to run at any point of a start that failed, and more than once. Raises NodeError when
    something could not be removed (unless `quiet`).
    """
    state = _load(state_dir)
    stopped: list[str] = []
    pids = {n: int(p) for n, p in state.get("pids", {}).items()}
    order = list(reversed(COMPONENTS))
    # the kubelet first, so that it restarts nothing; containerd last
    for name in sorted(pids, key=lambda n: order.index(n) if n in order else -1):
        if name == "containerd":
            continue
        if _stop_pid(name, pids[name], state_dir):
            stopped.append(name)
    # the pods' processes, then the shims that hold them, then containerd
    for _ in range(3):
        victims = _cgroup_pids()
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _until(lambda: not _cgroup_pids(), 10)
    sock = state_dir / "run" / "containerd.sock"
    for pid in _shims(sock):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _until(lambda: not _shims(sock), 10)
    if "containerd" in pids and _stop_pid("containerd", pids["containerd"], state_dir):
        stopped.append("containerd")
    bin_dir = Path(state.get("bin_dir") or testbin_dir())
    # the components' own clean-up of their rules, then whatever is left of them
    if (bin_dir / "kube-proxy").is_file() and _chains():
        _run(str(bin_dir / "kube-proxy"), "--cleanup", "--v=0", check=False)
    if (bin_dir / "kube-router").is_file() and (_ipsets() or _chains()):
        _run(str(bin_dir / "kube-router"), "--cleanup-config", check=False)
    _drop_chains()
    for name in _ipsets():
        _run("ipset", "destroy", name, check=False)
    # mounts (overlay snapshots, shm, netns, volumes) under the state directory, deepest first
    for point in sorted(_mounts_under(state_dir), key=len, reverse=True) if state_dir.exists() else []:
        _run("umount", "-l", point, check=False)
    for netns in _netns():
        _run("ip", "netns", "delete", netns, check=False)
    for link in _links():
        if link in (BRIDGE, PROVIDER_LINK):
            _run("ip", "link", "delete", link, check=False)
    _until(lambda: not _links(), 10)
    for d in _cgroup_dirs():
        with contextlib.suppress(OSError):
            d.rmdir()
    saved = state_dir / "sysctl.json"
    if saved.is_file():
        for key, value in json.loads(saved.read_text()).items():
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / key).write_text(value)
        saved.unlink()
    for d in (state_dir / "containerd", state_dir / "kubelet", state_dir / "run", state_dir / "cni-ipam"):
        if d.exists() and not _mounts_under(d):
            shutil.rmtree(d, ignore_errors=True)
    if state:
        state["pids"] = {}
        (state_dir / "node.json").write_text(json.dumps(state, indent=2))
    with contextlib.suppress(OSError):
        if Path(LOCK.read_text().strip()) == state_dir:
            LOCK.unlink()
    left = leftovers(state_dir)
    if left and not quiet:
        raise NodeError(f"the node teardown left: {'; '.join(left)}")
    return stopped


def _stop_pid(name: str, pid: int, state_dir: Path) -> bool:
    if not pid_alive(pid):
        return False
    proc = Process(name, [], state_dir / "logs" / f"{name}.log")
    proc.pid = pid
    proc.stop()
    return True


def _until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()
