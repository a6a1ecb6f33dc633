"""np-guard's network-config-analyzer (`nca`) as an independent reachability oracle.

`analyse` exports the cluster's Namespaces, Pods and every NetworkPolicy from the API server into
YAML files, runs `nca --connectivity` (from `.venv-nca`, `make venv-nca`) on them with the
`txt_no_fw_rules` output (one line per connected pair: `src => dst : connections`, a pair that is
not listed has no connection) and parses that answer into a `Connectivity` to ask questions of.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client
from lightkube.resources.core_v1 import Namespace, Pod
from lightkube.resources.networking_v1 import NetworkPolicy

REPO_ROOT = Path(__file__).resolve().parents[2]
NCA = REPO_ROOT / ".venv-nca" / "bin" / "nca"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_POD = re.compile(r"^(?P<ns>[a-z0-9-]+)/(?P<name>[a-z0-9.-]+)(\[\w+\])?$")  # ns/name, maybe [Pod]
_FIELD_START = re.compile(r",(?=[a-z_]+:)")  # a comma that starts the next `dimension:values`


class NcaError(AssertionError):
    """nca could not be run, reported a problem, or answered in an unexpected form."""


@dataclass(frozen=True)
class Connections:
    """nca's text for the connections of one pair, e.g. `All connections` or
    `{protocols:TCP,dst_ports:443}` or `All but {protocols:UDP}`."""

    text: str

    def allows(self, protocol: str, port: int) -> bool:
        text = self.text.strip()
        if text == "All connections":
            return True
        if text == "No connections":
            return False
        if text.startswith("All but "):
            return not _in_cubes(text[len("All but ") :], protocol, port)
        return _in_cubes(text, protocol, port)


def _in_cubes(text: str, protocol: str, port: int) -> bool:
    if not text.startswith("{"):  # only destination ports, every protocol
        return _in_ports(text, port)
    cubes = re.findall(r"\{([^{}]*)\}", text)
    if ",".join(f"{{{c}}}" for c in cubes) != text:
        raise NcaError(f"cannot parse nca connections {text!r}")
    return any(_in_cube(c, protocol, port) for c in cubes)


def _in_cube(body: str, protocol: str, port: int) -> bool:
    for part in _FIELD_START.split(body):
        key, sep, value = part.partition(":")
        if not sep:
            raise NcaError(f"cannot parse nca connections {{{body}}}")
        if key == "protocols":
            ok = _in_protocols(value, protocol)
        elif key == "dst_ports":
            ok = _in_ports(value, port)
        else:  # NetworkPolicy has no source ports, ICMP or L7 dimensions
            raise NcaError(f"unexpected dimension {key!r} in nca connections {{{body}}}")
        if not ok:
            return False
    return True


def _in_protocols(value: str, protocol: str) -> bool:
    value = value.strip()
    if value == "*":
        return True
    negate = value.startswith("all but ")
    names = {n.strip().upper() for n in value.removeprefix("all but ").split(",")}
    return (protocol.upper() in names) != negate


def _in_ports(value: str, port: int) -> bool:
    for item in value.split(","):
        lo, _, hi = item.strip().partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


@dataclass(frozen=True)
class AddressRange:
    first: IPAddress
    last: IPAddress

    def __contains__(self, address: object) -> bool:
        return (
            isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and address.version == self.first.version
            and self.first <= address <= self.last
        )


def _address_ranges(text: str) -> list[AddressRange] | None:
    """`203.0.113.10-203.0.113.11`, `2001:db8::10`, a CIDR or a comma-separated list of those;
    None when `text` is not addresses (a pod)."""
    ranges = []
    for item in text.split(","):
        first, dash, last = item.strip().partition("-")
        try:
            if dash:
                ranges.append(AddressRange(ipaddress.ip_address(first), ipaddress.ip_address(last)))
            else:
                net = ipaddress.ip_network(first, strict=False)
                ranges.append(AddressRange(net[0], net[-1]))
        except ValueError:
            return None
    return ranges


@dataclass
class Connectivity:
    """nca's connectivity map: pod -> pod and pod -> external address ranges."""

    output: str
    pods: dict[tuple[str, str], Connections] = field(default_factory=dict)  # ("ns/name", "ns/name")
    external: dict[str, list[tuple[AddressRange, Connections]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, output: str) -> Connectivity:
        conn = cls(output)
        for line in output.splitlines():
            if " => " not in line:
                continue
            src, _, rest = line.partition(" => ")
            dst, sep, text = rest.partition(" : ")
            if not sep:
                raise NcaError(f"cannot parse nca line {line!r}")
            src, dst = src.strip(), dst.strip()
            if _address_ranges(src) is not None:
                continue  # from outside into the cluster: ingress from external addresses, not asked here
            src_pod = _POD.match(src)
            if src_pod is None:
                raise NcaError(f"cannot parse the source of nca line {line!r}")
            source = f"{src_pod['ns']}/{src_pod['name']}"
            ranges = _address_ranges(dst)
            if ranges is not None:
                conn.external.setdefault(source, []).extend((r, Connections(text)) for r in ranges)
                continue
            dst_pod = _POD.match(dst)
            if dst_pod is None:
                raise NcaError(f"cannot parse the destination of nca line {line!r}")
            conn.pods[(source, f"{dst_pod['ns']}/{dst_pod['name']}")] = Connections(text)
        if not conn.pods and not conn.external:
            raise NcaError(f"nca reported no connections at all:\n{output}")
        return conn

    def to_address(self, pod: str, address: str) -> Connections | None:
        """The connections `pod` ("ns/name") may open to `address`; None when it cannot reach it."""
        ip = ipaddress.ip_address(address)
        found = [c for r, c in self.external.get(pod, []) if ip in r]
        if len(found) > 1:
            raise NcaError(f"nca listed {address} twice for {pod}: {found}")
        return found[0] if found else None

    def to_pod(self, pod: str, other: str) -> Connections | None:
        return self.pods.get((pod, other))

    def reaches(self, pod: str, target: str, protocol: str = "TCP", port: int = 443) -> bool:
        """`target` is an address or a pod ("ns/name")."""
        found = self.to_pod(pod, target) if "/" in target else self.to_address(pod, target)
        return found is not None and found.allows(protocol, port)


# ---- exporting the cluster and running nca ---------------------------------------------------


def _clean(obj: Any, api_version: str, kind: str) -> dict[str, Any]:
    d: dict[str, Any] = obj.to_dict()
    d["apiVersion"], d["kind"] = api_version, kind
    d.get("metadata", {}).pop("managedFields", None)
    return d


def export(client: Client, directory: Path, namespaces: Iterable[str] = ()) -> dict[str, Path]:
    """Namespaces, Pods and NetworkPolicies, one List file each: of the whole cluster, or of
    `namespaces` only (other tests' namespaces, possibly half deleted, would only add noise)."""
    keep = set(namespaces)
    directory.mkdir(parents=True, exist_ok=True)
    kinds: list[tuple[str, Any, str, str]] = [
        ("namespaces", Namespace, "v1", "Namespace"),
        ("pods", Pod, "v1", "Pod"),
        ("networkpolicies", NetworkPolicy, "networking.k8s.io/v1", "NetworkPolicy"),
    ]
    files = {}
    for name, res, api_version, kind in kinds:
        items = [
            _clean(o, api_version, kind)
            for o in client.list(res, **({} if res is Namespace else {"namespace": "*"}))
            if not keep or (o.metadata.name if res is Namespace else o.metadata.namespace) in keep
        ]
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
        files[name] = path
    return files


def run(files: dict[str, Path], namespaces: Iterable[str] = ()) -> subprocess.CompletedProcess[str]:
    if not NCA.is_file():
        raise NcaError(f"{NCA} is missing: run `make venv-nca`")
    argv = [
        str(NCA),
        "--connectivity",
        str(files["networkpolicies"]),
        "--ns_list",
        str(files["namespaces"]),
        "--pod_list",
        str(files["pods"]),
        "--output_format",
        "txt_no_fw_rules",
        "--output_endpoints",
        "pods",
    ]
    if namespaces:
        argv += ["--namespace_subset", ",".join(sorted(namespaces))]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def answer(proc: subprocess.CompletedProcess[str]) -> Connectivity:
    """nca's parsed answer; NcaError when it failed or reported any problem."""
    problems = [  # nca reports parse errors and skipped resources on lines of their own, and exits 0
        line
        for line in (proc.stdout + "\n" + proc.stderr).splitlines()
        if " => " not in line and re.search(r"error|warning", line, re.I)
    ]
    if proc.returncode != 0 or problems:
        raise NcaError(
            f"nca exited {proc.returncode} ({' '.join(proc.args)}); "
            f"problems: {problems}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return Connectivity.parse(proc.stdout)


def analyse(client: Client, directory: Path, namespaces: Iterable[str] = ()) -> Connectivity:
    """Export the cluster, run nca on it and parse its answer (kept beside the exported files)."""
    files = export(client, directory, namespaces)
    proc = run(files, namespaces)
    (directory / "nca.out").write_text(proc.stdout)
    (directory / "nca.err").write_text(proc.stderr)
    return answer(proc)
