"""Provider addresses for the IP-based backends: DNS, static overrides, extra CIDRs, last good set.

- Static overrides (`--egress-addresses-file`, YAML `{host: [address or CIDR, ...]}`) replace DNS
  for their hosts; the file is re-read on every refresh, so editing it moves the rules.
- Extra CIDRs (`extra:` in the same file, `{host: [CIDR, ...]}`) are added to what DNS returns.
- DNS answers (IPv4 and IPv6) are refreshed every `refresh_seconds`. When a lookup fails, the last
  good set is kept and reported as stale; a host never resolved has no addresses (reported).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aidp.egress.model import AddressBook, as_cidr

Lookup = Callable[[str], list[str]]


def dns_lookup(host: str) -> list[str]:
    """IPv4 and IPv6 addresses of `host` from the system resolver."""
    infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class HostState:
    cidrs: tuple[str, ...]
    source: str  # static | dns | none
    resolved_at: dt.datetime | None = None
    error: str | None = None  # the last lookup failed (cidrs are the last good set, if any)


@dataclass(frozen=True)
class Snapshot:
    hosts: Mapping[str, HostState]

    @property
    def book(self) -> AddressBook:
        return AddressBook({h: s.cidrs for h, s in self.hosts.items()})

    def problems(self, hosts: Iterable[str]) -> list[str]:
        out = []
        for host in hosts:
            st = self.hosts.get(host)
            if st is None or not st.cidrs:
                out.append(f"no addresses known for {host}" + (f" ({st.error})" if st and st.error else ""))
            elif st.error:
                when = st.resolved_at.strftime("%Y-%m-%dT%H:%M:%SZ") if st.resolved_at else "earlier"
                out.append(
                    f"DNS lookup of {host} failed ({st.error}); keeping the addresses resolved at {when}"
                )
        return out


def load_overrides(path: Path | None) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(static, extra) from the addresses file; missing file = none."""
    if path is None or not path.is_file():
        return {}, {}
    doc: Any = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping of host -> addresses")

    def table(value: Any) -> dict[str, tuple[str, ...]]:
        if not isinstance(value, dict):
            return {}
        return {str(h).lower(): tuple(sorted({as_cidr(str(a)) for a in v or []})) for h, v in value.items()}

    extra = table(doc.pop("extra", {}))
    return table(doc.get("static", doc)), extra


@dataclass
class Resolver:
    addresses_file: Path | None = None
    refresh_seconds: float = 300.0
    lookup: Lookup = dns_lookup
    timeout: float = 3.0
    _dns: dict[str, HostState] = field(default_factory=dict)
    _checked: dict[str, float] = field(default_factory=dict)

    async def snapshot(self, hosts: Iterable[str], *, force: bool = False) -> Snapshot:
        static, extra = load_overrides(self.addresses_file)
        now = time.monotonic()
        out: dict[str, HostState] = {}
        for host in sorted(set(hosts)):
            if host in static:
                out[host] = HostState(static[host], "static")
                continue
            if force or now - self._checked.get(host, -1e18) >= self.refresh_seconds:
                self._checked[host] = now
                await self._refresh(host)
            state = self._dns.get(host, HostState((), "none", error="not resolved yet"))
            if host in extra:
                state = HostState(
                    tuple(sorted(set(state.cidrs) | set(extra[host]))),
                    state.source,
                    state.resolved_at,
                    state.error,
                )
            out[host] = state
        return Snapshot(out)

    async def _refresh(self, host: str) -> None:
        previous = self._dns.get(host)
        try:
            addresses = await asyncio.wait_for(asyncio.to_thread(self.lookup, host), self.timeout)
            cidrs = tuple(sorted({as_cidr(a) for a in addresses}))
            if not cidrs:
                raise OSError("no addresses in the answer")
            self._dns[host] = HostState(cidrs, "dns", dt.datetime.now(dt.UTC))
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if previous and previous.cidrs:
                self._dns[host] = HostState(previous.cidrs, previous.source, previous.resolved_at, message)
            else:
                self._dns[host] = HostState((), "none", None, message)
