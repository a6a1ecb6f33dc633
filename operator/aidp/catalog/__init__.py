"""The provider catalog: which AI providers a policy may name, their hosts, and the facts a record needs.

The catalog is data (`providers.yaml` beside this module, shipped in the package), overridable with
`--provider-catalog FILE` or, for the operator, a ConfigMap (`from_configmap`, `ConfigMapRef`;
aidp.controller.catalogwatch applies its changes while it runs). `load` / `parse` validate a file
completely and raise `CatalogError`, whose message names the file, the line and the field; nothing
is half-loaded. The process uses one catalog at a time: `current()` (the built-in one unless `use`
installed another).

Readers: the policy parser (`spec.provider`, `spec.dataResidency`, the provider's endpoints), the
egress backends (`Provider.all_hosts`: every host a namespace's pods are cut from), the audit's
shadow-AI detector (`Catalog.detector`), the CRD generator (`aidp.catalog.crd`) and the docs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
import yaml

from aidp.contract import DEFAULT_PORT, HOST_RE

BUILTIN_FILE: Final = Path(__file__).with_name("providers.yaml")
UNVERIFIED: Final = "unverified"
ZDR_AVAILABILITY: Final = ("self-serve", "on-approval", "not-guaranteed", UNVERIFIED)
TRAINING_VALUES: Final = ("no", "yes", "free-tier", UNVERIFIED)

_NAME_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_GLOB_RE: Final = re.compile(r"^[A-Za-z_*][A-Za-z0-9_*]*$")
_ENV_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_GLOB_RE: Final = re.compile(
    r"^[a-z0-9*]([-a-z0-9*]{0,61}[a-z0-9*])?(\.[a-z0-9*]([-a-z0-9*]{0,61}[a-z0-9*])?)+$"
)
_SOURCE_RE: Final = re.compile(r"^https?://[^\s/]+\.[^\s]+$")


class CatalogError(ValueError):
    """A provider catalog file that cannot be used; the message names the file, line and field."""

    def __init__(self, source: str, line: int | None, field: str, problem: str) -> None:
        self.source = source
        self.line = line
        self.field = field
        self.problem = problem
        where = f"{source}:{line}" if line else source
        super().__init__(f"provider catalog {where}: {field + ': ' if field else ''}{problem}")


# --- the catalog as the program uses it ------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = DEFAULT_PORT

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}


@dataclass(frozen=True)
class Fact:
    """One fact about a provider, with its public source (a URL) or `unverified`."""

    value: str
    source: str
    note: str = ""
    days: int | None = None  # apiRetention: the number of days, when one number says it
    available: str | None = None  # zeroDataRetention: one of ZDR_AVAILABILITY

    @property
    def verified(self) -> bool:
        return self.source != UNVERIFIED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "source": self.source}
        if self.note:
            out["note"] = self.note
        if self.days is not None:
            out["days"] = self.days
        if self.available is not None:
            out["available"] = self.available
        return out


@dataclass(frozen=True)
class Facts:
    legal_entity: Fact
    processor_terms: Fact
    api_retention: Fact
    zero_data_retention: Fact
    trains_on_api_data: Fact

    def items(self) -> list[tuple[str, Fact]]:
        """(name in the file, fact), in the file's order."""
        return [
            ("legalEntity", self.legal_entity),
            ("processorTerms", self.processor_terms),
            ("apiRetention", self.api_retention),
            ("zeroDataRetention", self.zero_data_retention),
            ("trainsOnApiData", self.trains_on_api_data),
        ]


@dataclass(frozen=True)
class Detection:
    """What the shadow-AI detector looks for: env-name globs, credential env names, host globs."""

    env: tuple[str, ...] = ()
    credential_env: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Country:
    """Where data is processed: a country (or the European Union), and whether it is in the EEA."""

    name: str
    eea: bool


@dataclass(frozen=True)
class Provider:
    """A catalog entry: the provider's endpoints, its data-residency regions and their endpoints."""

    name: str
    display_name: str
    endpoints: tuple[Endpoint, ...]
    residency: tuple[tuple[str, tuple[Endpoint, ...]], ...]
    detection: Detection
    facts: Facts
    endpoints_note: str = ""
    residency_source: str = ""
    residency_note: str = ""
    global_country: Country | None = None  # where `endpoints` (no region) process the data

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(region for region, _ in self.residency)

    def endpoints_for(self, residency: str | None = None) -> tuple[Endpoint, ...]:
        """The provider's endpoints; a residency region's endpoints replace them. Unknown region: ()."""
        if residency is None:
            return self.endpoints
        return next((eps for region, eps in self.residency if region == residency), ())

    def endpoint(self, residency: str | None = None) -> Endpoint:
        """The first endpoint (of the region); ValueError when there is none."""
        endpoints = self.endpoints_for(residency)
        if not endpoints:
            raise ValueError(f"provider {self.name} has no endpoint{' in ' + residency if residency else ''}")
        return endpoints[0]

    @property
    def needs_policy_endpoints(self) -> bool:
        """True when the catalog gives no endpoint without a region: a policy must then set
        dataResidency (where the provider has regions) or list spec.endpoints."""
        return not self.endpoints

    @property
    def needs_endpoints_message(self) -> str:
        """What the CRD and the parser say about a policy that names this provider, sets no region
        and lists no endpoint, when `needs_policy_endpoints`."""
        if self.regions:
            return (
                f"provider {self.name} has no global endpoint: set dataResidency to one of its regions "
                "or list the endpoint in endpoints"
            )
        hosts = f" ({', '.join(self.detection.hosts)})" if self.detection.hosts else ""
        return f"provider {self.name} has no fixed endpoint: list its host{hosts} in endpoints"

    def all_hosts(self) -> list[str]:
        """Every host of the provider: its endpoints, then each region's, without duplicates."""
        return list(self._all_hosts)

    @functools.cached_property
    def _all_hosts(self) -> tuple[str, ...]:
        hosts = [e.host for e in self.endpoints]
        hosts.extend(e.host for _, eps in self.residency for e in eps)
        return tuple(dict.fromkeys(hosts))


@dataclass(frozen=True)
class Detector:
    """The catalog's detection lists compiled: env names (anchored), credential env names
    (anchored) and provider hosts (searched in lowercased text, whole DNS names only)."""

    env: re.Pattern[str]
    credential_env: re.Pattern[str]
    host: re.Pattern[str]


_NEVER: Final = "(?!)"


def _env_regex(globs: Sequence[str]) -> str:
    alternatives = [re.escape(g).replace(r"\*", "[A-Z0-9_]*") for g in dict.fromkeys(globs)]
    return "^(?:" + "|".join(alternatives or [_NEVER]) + ")$"


def _host_regex(globs: Sequence[str]) -> str:
    alternatives = [re.escape(g).replace(r"\*", "[a-z0-9-]+") for g in dict.fromkeys(globs)]
    return r"(?<![a-z0-9.-])(" + "|".join(alternatives or [_NEVER]) + r")(?![a-z0-9-])"


@dataclass(frozen=True)
class Catalog:
    providers: Mapping[str, Provider]
    source: str = "<built-in>"
    # region -> the country its data centres are in (residency regions, cloud region names in hosts)
    regions: Mapping[str, Country] = field(default_factory=dict)
    # the file's text it was parsed from (`parse`): what the operator hands its audit process
    text: str = field(default="", repr=False, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.providers)

    def get(self, name: str) -> Provider | None:
        return self.providers.get(name)

    def __getitem__(self, name: str) -> Provider:
        return self.providers[name]

    def __contains__(self, name: object) -> bool:
        return name in self.providers

    def __iter__(self) -> Iterator[Provider]:
        return iter(self.providers.values())

    @functools.cached_property
    def detector(self) -> Detector:
        providers = list(self.providers.values())
        return Detector(
            env=re.compile(_env_regex([g for p in providers for g in p.detection.env])),
            credential_env=re.compile(_env_regex([n for p in providers for n in p.detection.credential_env])),
            host=re.compile(_host_regex([h for p in providers for h in p.detection.hosts])),
        )


# --- the file's schema -----------------------------------------------------------------------------


class _Struct(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    pass


class _Fact(_Struct, kw_only=True):
    value: str
    source: str
    note: str = ""


class _RetentionFact(_Fact, kw_only=True):
    days: Annotated[int, msgspec.Meta(ge=0)] | None = None


class _ZdrFact(_Fact, kw_only=True):
    available: Literal["self-serve", "on-approval", "not-guaranteed", "unverified"]


class _TrainingFact(_Fact, kw_only=True):
    value: Literal["no", "yes", "free-tier", "unverified"]


class _Facts(_Struct, kw_only=True):
    legal_entity: _Fact
    processor_terms: _Fact
    api_retention: _RetentionFact
    zero_data_retention: _ZdrFact
    trains_on_api_data: _TrainingFact


class _Detection(_Struct, kw_only=True):
    env: list[str] = []
    credential_env: list[str] = []
    hosts: list[str] = []
    note: str = ""


class _Country(_Struct, kw_only=True):
    country: str
    eea: bool


class _Provider(_Struct, kw_only=True):
    name: str
    display_name: str = ""
    endpoints: list[str]
    global_country: _Country | None = None
    endpoints_note: str = ""
    residency: dict[str, list[str]] = {}
    residency_source: str = ""
    residency_note: str = ""
    detection: _Detection
    facts: _Facts


class _File(_Struct, kw_only=True):
    regions: dict[str, Any] | None = None  # region -> _Country (checked per region); left out: built-in
    providers: Annotated[list[_Provider], msgspec.Meta(min_length=1)]


# --- loading ---------------------------------------------------------------------------------------


@dataclass
class _Lines:
    """Where each part of the YAML document is, for error messages."""

    root: yaml.Node | None
    source: str

    def node(self, path: Sequence[str | int]) -> yaml.Node | None:
        node = self.root
        for part in path:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                return node
            if node is None:
                return None
        return node

    def key_line(self, path: Sequence[str | int], key: str) -> int | None:
        node = self.node(path)
        if isinstance(node, yaml.MappingNode):
            for k, _ in node.value:
                if getattr(k, "value", None) == key:
                    return int(k.start_mark.line) + 1
        return self.line(path)

    def line(self, path: Sequence[str | int]) -> int | None:
        node = self.node(path)
        if node is None:
            node = self.node(path[:-1]) if path else None
        return int(node.start_mark.line) + 1 if node is not None else None

    def error(self, path: Sequence[str | int], problem: str, *, key: str | None = None) -> CatalogError:
        line = self.key_line(path, key) if key is not None else self.line(path)
        where = _dotted([*path, key] if key is not None else path)
        return CatalogError(self.source, line, where, problem)


def _dotted(path: Sequence[str | int | None]) -> str:
    out = ""
    for part in path:
        if part is None:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_PATH_RE: Final = re.compile(r"\[(\d+)\]|\.([^.\[]+)")
_MSGSPEC_AT: Final = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD_IN_PROBLEM: Final = re.compile(r"(?:unknown|required) field `([^`]+)`")


def _split_path(text: str) -> list[str | int]:
    return [int(i) if i else key for i, key in _PATH_RE.findall(text)]


def _duplicate_keys(node: yaml.Node | None, path: list[str | int], lines: _Lines) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = str(getattr(k, "value", ""))
            if key in seen:
                raise CatalogError(
                    lines.source, int(k.start_mark.line) + 1, _dotted([*path, key]), "duplicate key"
                )
            seen.add(key)
            _duplicate_keys(v, [*path, key], lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, [*path, i], lines)


def parse(text: str, source: str = "<string>") -> Catalog:
    """A catalog from the text of a providers file; raises CatalogError (file, line, field)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        raise CatalogError(source, line, "", f"invalid YAML: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise CatalogError(source, None, "", f"invalid YAML: {err}") from None
    lines = _Lines(root, source)
    _duplicate_keys(root, [], lines)
    if data is None:
        raise CatalogError(source, None, "", "is empty; expected a mapping with `providers`")
    try:
        parsed = msgspec.convert(data, _File, strict=True)
    except msgspec.ValidationError as err:
        raise _invalid(err, lines, []) from None
    return replace(_build(parsed, lines), text=text)


def _invalid(err: msgspec.ValidationError, lines: _Lines, at: list[str | int]) -> CatalogError:
    """A msgspec validation error of the part at `at` as a CatalogError with its line and field."""
    m = _MSGSPEC_AT.match(str(err))
    problem = m.group("problem") if m else str(err)
    path = [*at, *(_split_path(m.group("path") or "") if m else [])]
    named = _FIELD_IN_PROBLEM.search(problem)
    if named and "unknown field" in problem:
        return lines.error(path, problem, key=named.group(1))
    if named:  # a required field is missing: the line of the mapping that lacks it
        return CatalogError(lines.source, lines.line(path), _dotted([*path, named.group(1)]), problem)
    return lines.error(path, problem)


def _endpoint(text: str, path: list[str | int], lines: _Lines) -> Endpoint:
    host, sep, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not HOST_RE.match(host):
        raise lines.error(
            path, f"invalid host {host!r}: a lowercase DNS name with at least one dot (no scheme or path)"
        )
    port = DEFAULT_PORT
    if sep:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise lines.error(path, f"invalid port {port_text!r}: an integer from 1 to 65535")
        port = int(port_text)
    return Endpoint(host, port)


def _endpoints(items: list[str], path: list[str | int], lines: _Lines) -> tuple[Endpoint, ...]:
    out: list[Endpoint] = []
    for i, text in enumerate(items):
        endpoint = _endpoint(text, [*path, i], lines)
        if endpoint in out:
            raise lines.error([*path, i], f"duplicate endpoint {text!r}")
        out.append(endpoint)
    return tuple(out)


def _check_source(value: str, path: list[str | int], lines: _Lines) -> None:
    if value != UNVERIFIED and not _SOURCE_RE.match(value):
        raise lines.error(path, f"must be a public URL (https://...) or {UNVERIFIED!r}, got {value!r}")


def _fact(raw: _Fact, path: list[str | int], lines: _Lines) -> Fact:
    if not raw.value.strip():
        raise lines.error([*path, "value"], "must not be empty")
    _check_source(raw.source, [*path, "source"], lines)
    return Fact(
        value=raw.value,
        source=raw.source,
        note=raw.note,
        days=raw.days if isinstance(raw, _RetentionFact) else None,
        available=raw.available if isinstance(raw, _ZdrFact) else None,
    )


def _globs(
    values: list[str], pattern: re.Pattern[str], hint: str, path: list[str | int], lines: _Lines
) -> tuple[str, ...]:
    for i, value in enumerate(values):
        if not pattern.match(value) or value.strip("*.") == "":
            raise lines.error([*path, i], f"invalid value {value!r}: {hint}")
    return tuple(values)


def _country(raw: _Country, path: list[str | int], lines: _Lines) -> Country:
    if not raw.country.strip():
        raise lines.error([*path, "country"], "must not be empty")
    return Country(raw.country, raw.eea)


def _regions(parsed: _File, lines: _Lines) -> dict[str, Country]:
    if parsed.regions is None:
        if lines.source == str(BUILTIN_FILE):
            raise CatalogError(lines.source, None, "regions", "the built-in catalog must list the regions")
        return dict(builtin().regions)
    out: dict[str, Country] = {}
    for region, raw in parsed.regions.items():
        if not _NAME_RE.match(region):
            raise lines.error(
                ["regions"], f"invalid region {region!r}: lowercase letters, digits and '-'", key=region
            )
        try:
            country = msgspec.convert(raw, _Country, strict=True)
        except msgspec.ValidationError as err:
            raise _invalid(err, lines, ["regions", region]) from None
        out[region] = _country(country, ["regions", region], lines)
    return out


def _build(parsed: _File, lines: _Lines) -> Catalog:
    regions = _regions(parsed, lines)
    providers: dict[str, Provider] = {}
    for i, raw in enumerate(parsed.providers):
        at: list[str | int] = ["providers", i]
        if not _NAME_RE.match(raw.name):
            raise lines.error(
                [*at, "name"], f"invalid name {raw.name!r}: lowercase letters, digits and '-' (at most 63)"
            )
        if raw.name in providers:
            raise lines.error([*at, "name"], f"duplicate provider {raw.name!r}")
        residency: list[tuple[str, tuple[Endpoint, ...]]] = []
        for region, hosts in raw.residency.items():
            if not _NAME_RE.match(region):
                raise lines.error(
                    [*at, "residency"],
                    f"invalid region {region!r}: lowercase letters, digits and '-'",
                    key=region,
                )
            if not hosts:
                raise lines.error([*at, "residency", region], "must list at least one endpoint")
            residency.append((region, _endpoints(hosts, [*at, "residency", region], lines)))
        if raw.residency_source:
            _check_source(raw.residency_source, [*at, "residencySource"], lines)
        det = raw.detection
        dpath: list[str | int] = [*at, "detection"]
        detection = Detection(
            env=_globs(
                det.env, _ENV_GLOB_RE, "an env name; `*` matches any characters", [*dpath, "env"], lines
            ),
            credential_env=_globs(
                det.credential_env,
                _ENV_NAME_RE,
                "an env name (no wildcard)",
                [*dpath, "credentialEnv"],
                lines,
            ),
            hosts=_globs(
                det.hosts,
                _HOST_GLOB_RE,
                "a lowercase DNS name with at least one dot; `*` matches part of one label",
                [*dpath, "hosts"],
                lines,
            ),
            note=det.note,
        )
        fpath: list[str | int] = [*at, "facts"]
        f = raw.facts
        providers[raw.name] = Provider(
            name=raw.name,
            display_name=raw.display_name or raw.name,
            endpoints=_endpoints(raw.endpoints, [*at, "endpoints"], lines),
            residency=tuple(residency),
            detection=detection,
            facts=Facts(
                legal_entity=_fact(f.legal_entity, [*fpath, "legalEntity"], lines),
                processor_terms=_fact(f.processor_terms, [*fpath, "processorTerms"], lines),
                api_retention=_fact(f.api_retention, [*fpath, "apiRetention"], lines),
                zero_data_retention=_fact(f.zero_data_retention, [*fpath, "zeroDataRetention"], lines),
                trains_on_api_data=_fact(f.trains_on_api_data, [*fpath, "trainsOnApiData"], lines),
            ),
            endpoints_note=raw.endpoints_note,
            residency_source=raw.residency_source,
            residency_note=raw.residency_note,
            global_country=(
                _country(raw.global_country, [*at, "globalCountry"], lines) if raw.global_country else None
            ),
        )
    return Catalog(providers, lines.source, regions)


def load(path: str | Path) -> Catalog:
    """The catalog in a file; raises CatalogError (unreadable file, or file, line and field)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogError(str(path), None, "", f"cannot be read: {err}") from None
    return parse(text, str(path))


@functools.cache
def builtin() -> Catalog:
    """The catalog shipped in the package."""
    return load(BUILTIN_FILE)


@dataclass
class _Active:
    catalog: Catalog | None = field(default=None)


_ACTIVE: Final = _Active()


def current() -> Catalog:
    """The catalog this process uses: the one `use` installed, else the built-in one."""
    return _ACTIVE.catalog or builtin()


def use(catalog: Catalog | None) -> None:
    """Make `catalog` the process's catalog (None: back to the built-in one). Readers look it up on
    every call: the operator installs a changed ConfigMap catalog while it runs."""
    _ACTIVE.catalog = catalog


class CurrentPattern:
    """One of the current catalog's detector patterns (`env`, `credential_env` or `host`), looked
    up on every call, so that a catalog installed at start with `use` is the one the audit uses."""

    def __init__(self, which: Literal["env", "credential_env", "host"]) -> None:
        self.which = which

    def _pattern(self) -> re.Pattern[str]:
        pattern: re.Pattern[str] = getattr(current().detector, self.which)
        return pattern

    def match(self, text: str) -> re.Match[str] | None:
        return self._pattern().match(text)

    def search(self, text: str) -> re.Match[str] | None:
        return self._pattern().search(text)


DETECT_ENV: Final = CurrentPattern("env")
DETECT_CREDENTIAL_ENV: Final = CurrentPattern("credential_env")
DETECT_HOST: Final = CurrentPattern("host")


def use_file(path: str | Path | None) -> Catalog:
    """Load and use the catalog in `path` (None: the built-in one); raises CatalogError."""
    use(load(path) if path is not None else None)
    return current()


# --- a catalog in a ConfigMap ----------------------------------------------------------------------

CONFIGMAP_KEY: Final = "providers.yaml"
_K8S_NAME_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_CM_KEY_RE: Final = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


@dataclass(frozen=True)
class ConfigMapRef:
    """`NAMESPACE/NAME[:KEY]`: the ConfigMap (and its key, `providers.yaml` by default) that holds
    a catalog file (`aidp run --provider-catalog-configmap`)."""

    namespace: str
    name: str
    key: str = CONFIGMAP_KEY

    @classmethod
    def parse(cls, text: str) -> ConfigMapRef:
        """From `NAMESPACE/NAME[:KEY]`; ValueError saying what is wrong."""
        ref, colon, key = text.partition(":")
        namespace, slash, name = ref.partition("/")
        if not slash or not _NAME_RE.match(namespace) or not _K8S_NAME_RE.match(name):
            raise ValueError(
                f"{text!r}: expected NAMESPACE/NAME[:KEY] (a namespace and a ConfigMap name, e.g. "
                f"aidp-system/aidp-providers; KEY defaults to {CONFIGMAP_KEY})"
            )
        if colon and not _CM_KEY_RE.match(key):
            raise ValueError(f"{text!r}: the key {key!r} is not a ConfigMap key ([-._a-zA-Z0-9]+)")
        return cls(namespace, name, key or CONFIGMAP_KEY)

    @property
    def source(self) -> str:
        """How error messages name the catalog: `ConfigMap NS/NAME key KEY`."""
        return f"ConfigMap {self.namespace}/{self.name} key {self.key}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.key}"


def from_configmap(data: object, ref: ConfigMapRef) -> Catalog:
    """The catalog in a ConfigMap's `data` (None or anything odd: refused); raises CatalogError
    naming the ConfigMap and key, and for the file's content its line and field."""
    if data is not None and not isinstance(data, Mapping):
        raise CatalogError(
            ref.source, None, "", f"the ConfigMap's data is not a mapping but {type(data).__name__}"
        )
    text = (data or {}).get(ref.key)
    if text is None:
        keys = ", ".join(sorted(str(k) for k in data or {})) or "none"
        raise CatalogError(ref.source, None, "", f"the ConfigMap has no key {ref.key} (its keys: {keys})")
    if not isinstance(text, str):
        raise CatalogError(ref.source, None, "", f"the key's value is not text but {type(text).__name__}")
    return parse(text, ref.source)
