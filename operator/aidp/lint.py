"""`aidp check` as a linter: manifests validated as the API server would, every error at once.

- Reading: YAML (or JSON) files are composed into nodes that keep their line numbers, so every
  finding names `file:line`; values are typed in YAML's words (an unquoted `true` is "the boolean
  true", not Python's `True`).
- Custom resources of aidp's CRDs (AIDataPolicy, and any other kind the packaged `crds/` define)
  are validated against the CRD's own OpenAPI v3 schema, as the API server does with strict field
  validation: unknown fields (with a did-you-mean), types, required fields, enums, lengths,
  patterns, ranges, list sizes and `x-kubernetes-list-type: set`; then, with the CRD's defaults
  applied, the CRD's CEL rules (`x-kubernetes-validations`), evaluated by cel-python with the
  Kubernetes string extensions the rules use (`trim`, `substring`, ...).
- Duplicate keys in a mapping are refused (the API server's strict decoding does the same).
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from aidp import paths
from aidp.catalog import crd as catalog_crd
from aidp.model import CEL_WHITESPACE, PolicyError, split_api_version
from aidp.render import ManifestError, read_entries

PathT = tuple[str | int, ...]

# The fields of metav1.ObjectMeta (strict decoding refuses any other).
OBJECT_META_FIELDS: Final = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
DNS_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --- paths, positions and YAML's words -----------------------------------------------------------


def path_text(path: Sequence[str | int]) -> str:
    """("spec", "endpoints", 0, "host") -> "spec.endpoints[0].host"."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", step):
            out += f".{step}" if out else step
        else:
            out += f'["{step}"]'
    return out


def parse_path(text: str) -> PathT:
    """The inverse of path_text (for the paths PolicyError names)."""
    steps: list[str | int] = []
    for name, index, quoted in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\["([^"]*)"\]', text):
        steps.append(name or (int(index) if index else quoted))
    return tuple(steps)


def _child(node: yaml.Node | None, step: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    """(key node, value node) of one step below node."""
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        for key, value in reversed(node.value):  # the last duplicate wins, as in the loaded value
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        item = node.value[step]
        return item, item
    return None, None


@dataclass(frozen=True)
class Manifest:
    """One object of the input, with where it came from (its YAML node, when read from YAML)."""

    obj: dict[str, Any]
    file: str
    node: yaml.Node | None = None
    number: int = 0  # 1-based, across the whole input

    def node_at(self, path: Sequence[str | int], *, key: bool = False) -> yaml.Node | None:
        """The node at path (its key's node with key=True), or None."""
        node, key_node = self.node, self.node
        for step in path:
            key_node, node = _child(node, step)
            if node is None:
                return None
        return key_node if key else node

    def line(self, path: Sequence[str | int] = (), *, key: bool = False) -> int | None:
        """1-based line of path, else of its closest ancestor that exists."""
        if self.node is None:
            return None
        for depth in range(len(path), -1, -1):
            node = self.node_at(path[:depth], key=key and depth == len(path))
            if node is not None:
                return int(node.start_mark.line) + 1
        return None  # pragma: no cover - the root always exists

    def at(self, path: Sequence[str | int] = (), *, key: bool = False) -> str:
        """`file:line` of path (`file` alone, or `object #N`, without positions)."""
        line = self.line(path, key=key)
        if line is not None:
            return f"{self.file}:{line}"
        return f"{self.file} (object #{self.number})" if self.number else self.file

    @property
    def subject(self) -> str:
        """How findings name the object: "AIDataPolicy support/x", "Deployment bot"."""
        meta = self.obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        name = meta.get("name") or meta.get("generateName")
        name = name if isinstance(name, str) and name else "<unnamed>"
        namespace = meta.get("namespace")
        kind = self.obj.get("kind")
        kind = kind if isinstance(kind, str) and kind else "object"
        return f"{kind} {namespace}/{name}" if isinstance(namespace, str) and namespace else f"{kind} {name}"

    def words(self, path: Sequence[str | int], value: object) -> str:
        """The value at path in YAML's words."""
        node = self.node_at(path)
        if isinstance(node, yaml.ScalarNode):
            text = node.value
            if node.tag.endswith(":bool"):
                return f"the boolean {text}"
            if node.tag.endswith(":int"):
                return f"the integer {text}"
            if node.tag.endswith(":float"):
                return f"the number {text}"
            if node.tag.endswith(":null"):
                return "null"
        return yaml_words(value)

    def quote_hint(self, path: Sequence[str | int]) -> str:
        """` (quote it: "30")` for a plain scalar that YAML did not read as a string."""
        node = self.node_at(path)
        if isinstance(node, yaml.ScalarNode) and not node.tag.endswith(":str") and not node.style:
            return f' (quote it in YAML: "{node.value}")'
        return ""


def yaml_words(value: object) -> str:
    """A loaded value in YAML's words (true, not True)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__  # pragma: no cover - YAML gives nothing else


@dataclass(frozen=True)
class Finding:
    """One problem of the input: where, in which object, what."""

    where: str
    subject: str
    message: str
    line: int = field(default=0, compare=False)  # for sorting the findings of one object

    def __str__(self) -> str:
        return f"{self.where}: {self.subject}: {self.message}"


# --- reading -------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates and times as strings, as the Kubernetes API machinery does."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _expand(
    obj: object, node: yaml.Node | None, source: str
) -> Iterator[tuple[dict[str, Any], yaml.Node | None]]:
    if not isinstance(obj, dict):
        raise ManifestError(f"{source}: expected a Kubernetes object (a mapping), got {yaml_words(obj)}")
    kind = obj.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list):
        _, items = _child(node, "items")
        for i, item in enumerate(obj["items"]):
            item_node = items.value[i] if isinstance(items, yaml.SequenceNode) else None
            yield from _expand(item, item_node, source)
        return
    yield obj, node


def parse_text(text: str, source: str, first_number: int = 1) -> list[Manifest]:
    """The objects of one YAML or JSON stream, with their nodes (empty documents skipped, Lists
    expanded)."""
    out: list[Manifest] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node said there is one
                continue
            obj = loader.construct_document(node)
            if obj is None:
                continue
            for item, item_node in _expand(obj, node, source):
                out.append(Manifest(item, source, item_node, first_number + len(out)))
    except yaml.YAMLError as err:
        raise ManifestError(f"{source}: invalid YAML: {err}") from None
    finally:
        loader.dispose()
    return out


def load_files(entries: Iterable[str | Path]) -> list[Manifest]:
    """Every object in the given files and directories, in order; `-` reads standard input."""
    out: list[Manifest] = []
    for source, text in read_entries(entries):
        out += parse_text(text, source, len(out) + 1)
    return out


def from_objects(objects: Iterable[Mapping[str, Any] | Manifest], source: str = "<input>") -> list[Manifest]:
    """Manifests for plain objects (positions are `object #N`); Manifests are kept as they are."""
    out: list[Manifest] = []
    for i, obj in enumerate(objects):
        out.append(obj if isinstance(obj, Manifest) else Manifest(dict(obj), source, None, i + 1))
    return out


def duplicate_keys(manifest: Manifest) -> list[Finding]:
    """Keys that appear twice in one mapping (strict decoding refuses them; YAML keeps the last)."""
    found: list[Finding] = []

    def walk(node: yaml.Node, path: PathT) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is None:
                    continue
                if name in seen:
                    where = f"{manifest.file}:{key.start_mark.line + 1}"
                    found.append(
                        Finding(
                            where,
                            manifest.subject,
                            f'duplicate field "{path_text((*path, name))}"',
                            key.start_mark.line + 1,
                        )
                    )
                seen.add(name)
                walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if manifest.node is not None:
        walk(manifest.node, ())
    return found


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`; did you mean "x"?` for the closest candidate, or ""."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f'; did you mean "{close[0]}"?' if close else ""


# --- the CRDs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrdKind:
    """One kind defined by a packaged CRD: its served versions' schemas."""

    group: str
    kind: str
    namespaced: bool
    schemas: Mapping[str, Mapping[str, Any]]  # served version -> openAPIV3Schema


@functools.cache
def crd_kinds(crds_dir: Path | None = None) -> dict[tuple[str, str], CrdKind]:
    """(group, kind) -> CrdKind for every CRD in crds_dir (default: the packaged `crds/`)."""
    root = crds_dir or paths.crds_dir()
    kinds: dict[tuple[str, str], CrdKind] = {}
    for file in sorted(root.glob("*.yaml")):
        # the provider enum and rules as the current provider catalog (--provider-catalog) has them
        for doc in yaml.safe_load_all(catalog_crd.for_current_catalog(file.read_text(encoding="utf-8"))):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            schemas = {
                v["name"]: v["schema"]["openAPIV3Schema"] for v in spec["versions"] if v.get("served", True)
            }
            key = (spec["group"], spec["names"]["kind"])
            kinds[key] = CrdKind(spec["group"], spec["names"]["kind"], spec["scope"] == "Namespaced", schemas)
    return kinds


def crd_kind_of(obj: Mapping[str, Any], crds_dir: Path | None = None) -> CrdKind | None:
    """The packaged CRD kind of obj (any version of its group), or None."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    return crd_kinds(crds_dir).get((split_api_version(api_version)[0], kind))


def cel_rules(schema: Mapping[str, Any], path: PathT = ()) -> Iterator[tuple[PathT, Mapping[str, Any]]]:
    """Every x-kubernetes-validations rule of a schema, with the schema path it sits at ("*" for
    list items and map values)."""
    for rule in schema.get("x-kubernetes-validations") or ():
        yield path, rule
    for name, sub in (schema.get("properties") or {}).items():
        yield from cel_rules(sub, (*path, name))
    if isinstance(schema.get("items"), Mapping):
        yield from cel_rules(schema["items"], (*path, "*"))
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from cel_rules(schema["additionalProperties"], (*path, "*"))


# --- CEL -----------------------------------------------------------------------------------------


def _cel_functions() -> dict[str, Callable[..., Any]]:
    """The Kubernetes CEL string extensions (cel-go ext.Strings) that the CRD rules may call."""
    from celpy import celtypes

    def trim(s: Any) -> Any:
        return celtypes.StringType(str(s).strip(CEL_WHITESPACE))

    def substring(s: Any, start: Any, end: Any = None) -> Any:
        text = str(s)
        stop = len(text) if end is None else int(end)
        if not 0 <= int(start) <= stop <= len(text):
            raise ValueError(f"substring({start}, {stop}) out of range for a string of length {len(text)}")
        return celtypes.StringType(text[int(start) : stop])

    def lower_ascii(s: Any) -> Any:
        return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in str(s)))

    def upper_ascii(s: Any) -> Any:
        return celtypes.StringType("".join(c.upper() if c.isascii() else c for c in str(s)))

    def index_of(s: Any, sub: Any) -> Any:
        return celtypes.IntType(str(s).find(str(sub)))

    def split(s: Any, sep: Any) -> Any:
        return celtypes.ListType([celtypes.StringType(p) for p in str(s).split(str(sep))])

    def join(items: Any, sep: Any = "") -> Any:
        return celtypes.StringType(str(sep).join(str(i) for i in items))

    return {
        "trim": trim,
        "substring": substring,
        "lowerAscii": lower_ascii,
        "upperAscii": upper_ascii,
        "indexOf": index_of,
        "split": split,
        "join": join,
    }


@functools.cache
def _cel_program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule), functions=_cel_functions())


def evaluate_cel(rule: str, value: object) -> bool | str:
    """True when `rule` holds for self=value, False when it fails; a string explains a rule that
    could not be evaluated."""
    from celpy import celtypes
    from celpy.adapter import json_to_cel
    from celpy.evaluation import CELEvalError

    try:
        result = _cel_program(rule).evaluate({"self": json_to_cel(value)})  # type: ignore[arg-type]
    except Exception as err:  # celpy raises its own errors and Python's
        return f"{type(err).__name__}: {err}"
    if isinstance(result, CELEvalError):
        return f"CELEvalError: {result.args[0] if result.args else result}"
    if not isinstance(result, celtypes.BoolType):
        return f"the rule returned {result!r}, not a boolean"
    return bool(result)


# --- schema validation ---------------------------------------------------------------------------

_TYPE_WORDS: Final = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "a list",
}


def _has_type(value: object, type_: str) -> bool:
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ == "object":
        return isinstance(value, Mapping)
    if type_ == "array":
        return isinstance(value, list)
    return True


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.;])\s", " ".join(text.split()), maxsplit=1)[0].rstrip(".;")


@dataclass
class Validator:
    manifest: Manifest
    findings: list[Finding] = field(default_factory=list)
    invalid: list[PathT] = field(default_factory=list)

    def error(
        self, path: PathT, message: str, *, key: bool = False, bare: bool = False, at: PathT | None = None
    ) -> None:
        """A finding at path (its key's line with key=True, or the line of `at`); `bare` messages
        name the field themselves."""
        self.invalid.append(path)
        where_path = path if at is None else at
        where = self.manifest.at(where_path, key=key)
        text = f"{path_text(path)}: {message}" if path and not bare else message
        line = self.manifest.line(where_path, key=key) or 0
        self.findings.append(Finding(where, self.manifest.subject, text, line))

    def unknown(self, path: PathT, known: Iterable[str]) -> None:
        self.error(
            path,
            f'unknown field "{path_text(path)}"{did_you_mean(str(path[-1]), known)}',
            key=True,
            bare=True,
        )

    def visit(self, value: object, schema: Mapping[str, Any], path: PathT) -> None:
        type_ = schema.get("type")
        if isinstance(type_, str) and not _has_type(value, type_):
            hint = self.manifest.quote_hint(path) if type_ == "string" else ""
            self.error(
                path, f"must be {_TYPE_WORDS.get(type_, type_)}, got {self.manifest.words(path, value)}{hint}"
            )
            return
        if "enum" in schema and value not in schema["enum"]:
            allowed = ", ".join(f'"{e}"' for e in schema["enum"])
            several = len(schema["enum"]) > 1
            mean = did_you_mean(value, map(str, schema["enum"])) if isinstance(value, str) and several else ""
            self.error(
                path, f"unsupported value {self._shown(path, value)}; supported values: {allowed}{mean}"
            )
        if isinstance(value, str):
            self._string(value, schema, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._number(value, schema, path)
        elif isinstance(value, list):
            self._array(value, schema, path)
        elif isinstance(value, Mapping):
            self._object(value, schema, path)

    def _shown(self, path: PathT, value: object) -> str:
        return f'"{value}"' if isinstance(value, str) else self.manifest.words(path, value)

    def _string(self, value: str, schema: Mapping[str, Any], path: PathT) -> None:
        if "minLength" in schema and len(value) < schema["minLength"]:
            need = schema["minLength"]
            self.error(path, f"must be at least {need} character{'s' if need != 1 else ''} long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            self.error(path, f"must be at most {schema['maxLength']} characters long, got {len(value)}")
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            about = f" ({_first_sentence(schema['description'])})" if schema.get("description") else ""
            self.error(path, f'invalid value "{value}": must match {pattern}{about}')

    def _number(self, value: float, schema: Mapping[str, Any], path: PathT) -> None:
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                self.error(path, f"must be between {low} and {high}, got {value}")
            elif low is not None:
                self.error(path, f"must be at least {low}, got {value}")
            else:
                self.error(path, f"must be at most {high}, got {value}")

    def _array(self, value: list[Any], schema: Mapping[str, Any], path: PathT) -> None:
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.error(path, f"must have at most {schema['maxItems']} items, got {len(value)}")
        if "minItems" in schema and len(value) < schema["minItems"]:
            self.error(path, f"must have at least {schema['minItems']} items, got {len(value)}")
        items = schema.get("items")
        for i, item in enumerate(value):
            if isinstance(items, Mapping):
                self.visit(item, items, (*path, i))
        if schema.get("x-kubernetes-list-type") == "set":
            seen: list[object] = []
            for i, item in enumerate(value):
                if item in seen:
                    self.error((*path, i), f"duplicate value {self._shown((*path, i), item)}")
                seen.append(item)

    def _object(self, value: Mapping[Any, Any], schema: Mapping[str, Any], path: PathT) -> None:
        props: Mapping[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        free = schema.get("x-kubernetes-preserve-unknown-fields") is True
        for key, item in value.items():
            sub = (*path, str(key))
            if key in props:
                if item is not None:  # null is pruned (then defaulted) by the API server
                    self.visit(item, props[key], sub)
            elif isinstance(extra, Mapping):
                if item is not None:
                    self.visit(item, extra, sub)
            elif not free and props:
                self.unknown(sub, props)
        for name in schema.get("required") or ():
            if value.get(name) is None:
                self.error((*path, name), "is required", at=path, key=True)
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            self.error(path, f"must have at most {schema['maxProperties']} entries, got {len(value)}")


def apply_defaults(value: object, schema: Mapping[str, Any]) -> object:
    """value with the schema's defaults applied (and nulls pruned), as the API server stores it."""
    if isinstance(value, Mapping):
        props: Mapping[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                continue
            sub = props.get(key) or (extra if isinstance(extra, Mapping) else None)
            out[key] = apply_defaults(item, sub) if sub else copy.deepcopy(item)
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = apply_defaults(copy.deepcopy(sub["default"]), sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def _clean(path: PathT, invalid: Sequence[PathT]) -> bool:
    return not any(bad[: len(path)] == path for bad in invalid)


def _check_cel(validator: Validator, value: object, schema: Mapping[str, Any], path: PathT) -> None:
    """The CEL rules of schema and below, on the defaulted value, where the schema found no error."""
    if not _clean(path, validator.invalid):
        if isinstance(value, Mapping):
            for key, sub in (schema.get("properties") or {}).items():
                if value.get(key) is not None:
                    _check_cel(validator, value[key], sub, (*path, key))
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for i, item in enumerate(value):
                _check_cel(validator, item, schema["items"], (*path, i))
        return
    for rule in schema.get("x-kubernetes-validations") or ():
        text = rule.get("rule", "")
        if "oldSelf" in text:
            continue  # transition rules do not apply to a create
        verdict = evaluate_cel(text, value)
        if verdict is True:
            continue
        if verdict is False:
            message = rule.get("message") or f"failed rule: {' '.join(text.split())}"
        else:
            message = f"cannot evaluate the rule {' '.join(text.split())}: {verdict}"
        validator.error(path, message)
    if isinstance(value, Mapping):
        props: Mapping[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, Mapping) else None)
            if sub:
                _check_cel(validator, item, sub, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _check_cel(validator, item, schema["items"], (*path, i))


def _string_map(validator: Validator, value: object, path: PathT) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        validator.error(path, f"must be a map of strings, got {validator.manifest.words(path, value)}")
        return
    for key, item in value.items():
        if not isinstance(item, str):
            sub = (*path, str(key))
            words = validator.manifest.words(sub, item)
            validator.error(sub, f"must be a string, got {words}{validator.manifest.quote_hint(sub)}")


def check_metadata(validator: Validator, meta: object, *, custom: bool) -> None:
    """metadata as metav1.ObjectMeta: known fields, a name, string labels and annotations."""
    path: PathT = ("metadata",)
    if meta is None:
        validator.error(path, "is required (with metadata.name)")
        return
    if not isinstance(meta, Mapping):
        validator.error(path, f"must be an object, got {validator.manifest.words(path, meta)}")
        return
    for key in meta:
        if key not in OBJECT_META_FIELDS:
            validator.unknown((*path, str(key)), OBJECT_META_FIELDS)
    name, generate = meta.get("name"), meta.get("generateName")
    if not name and not generate:
        validator.error((*path, "name"), "is required (or metadata.generateName)")
    for key in ("name", "generateName", "namespace"):
        item = meta.get(key)
        if item is not None and not isinstance(item, str):
            sub = (*path, key)
            words = validator.manifest.words(sub, item) + validator.manifest.quote_hint(sub)
            validator.error(sub, f"must be a string, got {words}")
    if custom and isinstance(name, str) and name and (len(name) > 253 or not DNS_SUBDOMAIN.match(name)):
        validator.error(
            (*path, "name"),
            f'invalid name "{name}": must be a lowercase DNS subdomain '
            '(a-z, 0-9, "-" and ".", at most 253 characters)',
        )
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and namespace and (len(namespace) > 63 or not DNS_LABEL.match(namespace)):
        validator.error((*path, "namespace"), f'invalid namespace "{namespace}": a lowercase DNS label')
    _string_map(validator, meta.get("labels"), (*path, "labels"))
    _string_map(validator, meta.get("annotations"), (*path, "annotations"))


def lint_custom_resource(manifest: Manifest, crd: CrdKind) -> list[Finding]:
    """Every error the API server (strict field validation, then the CRD's CEL rules) would report
    for creating this object."""
    obj = manifest.obj
    validator = Validator(manifest)
    _, version = split_api_version(str(obj.get("apiVersion")))
    schema = crd.schemas.get(version)
    if schema is None:
        served = ", ".join(sorted(crd.schemas))
        validator.error(
            ("apiVersion",), f'version "{version}" of {crd.group}/{crd.kind} is not served; served: {served}'
        )
        return validator.findings
    check_metadata(validator, obj.get("metadata"), custom=True)
    # metadata is checked above (as ObjectMeta); status is not part of a create (the status
    # subresource resets it), so neither is validated against the schema here
    body = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in ("metadata", "status")}
    body_schema = {**schema, "properties": props}
    validator.visit(body, body_schema, ())
    _check_cel(validator, apply_defaults(body, body_schema), body_schema, ())
    return validator.findings


def policy_error_finding(manifest: Manifest, err: PolicyError) -> Finding:
    """A PolicyError of the model, placed at the line of the field it names."""
    path = parse_path(err.path) if err.path else ()
    text = f"{err.path}: {err.problem}" if err.path else err.problem
    return Finding(manifest.at(path), manifest.subject, text)


# --- workloads -----------------------------------------------------------------------------------


def lint_workload(manifest: Manifest, template_path: Sequence[str]) -> list[Finding]:
    """What admission needs of a workload: a name, string labels and annotations, a pod template."""
    validator = Validator(manifest)
    obj = manifest.obj
    check_metadata(validator, obj.get("metadata"), custom=False)
    template: object = obj
    for depth, key in enumerate(template_path):
        template = template.get(key) if isinstance(template, Mapping) else None
        if not isinstance(template, Mapping):
            path = tuple(template_path[: depth + 1])
            got = "" if template is None else f", got {manifest.words(path, template)}"
            validator.error(
                path, f"is required and must be an object{got}", at=path[:-1], key=bool(path[:-1])
            )
            return validator.findings
    if template_path and isinstance(template, Mapping):
        path = (*template_path, "metadata")
        tmeta = template.get("metadata")
        if tmeta is not None and not isinstance(tmeta, Mapping):
            validator.error(path, f"must be an object, got {manifest.words(path, tmeta)}")
        elif isinstance(tmeta, Mapping):
            _string_map(validator, tmeta.get("labels"), (*path, "labels"))
            _string_map(validator, tmeta.get("annotations"), (*path, "annotations"))
    return validator.findings
